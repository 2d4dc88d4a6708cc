"""The contract reference, generated from the pandera models and the vocabularies (pure).

`cobranza contracts` prints it; the README carries the same text, and a test keeps the two
equal, so the documentation of every column is the code that checks it.
"""

from __future__ import annotations

import inspect
from typing import Any

from data_contracts.schemas import AUDIT_ONLY_COLUMNS, CONTRACTS, OPTIONAL_TABLES
from data_contracts.vocabulary import (
    CHANNELS,
    CONVERSATION_OUTCOMES,
    NOT_REACHED_OUTCOMES,
    OUTCOMES,
    OUTCOMES_BY_CHANNEL,
    RESPONSE_OUTCOMES,
    TELEPHONE_CONVERSATIONS,
    iana_timezones,
)

_TYPE_NAMES = {
    "int64": "integer",
    "Int64": "integer",
    "float64": "number",
    "category": "text",
    "string": "text",
    "boolean": "true / false",
    "datetime64[us, UTC]": "timestamp (UTC)",
}
_BOUNDS = {
    "greater_than": ">",
    "greater_than_or_equal_to": "≥",
    "less_than": "<",
    "less_than_or_equal_to": "≤",
}
_LONG_LIST = 20


def _allowed(checks: list[Any]) -> str:
    """The allowed values of a column, in words, from its pandera checks."""
    parts = []
    for check in checks:
        stats = check.statistics or {}
        if check.name == "isin":
            values = list(stats["allowed_values"])
            if set(values) == iana_timezones():
                parts.append("an IANA time zone name")
            elif len(values) > _LONG_LIST:
                parts.append(f"one of {len(values)} values")
            else:
                parts.append(", ".join(f"`{value}`" for value in values))
        elif check.name == "str_matches":
            parts.append(f"matches `{stats['pattern']}`")
        elif check.name in _BOUNDS:
            bound = next(iter(stats.values()))
            parts.append(f"{_BOUNDS[check.name]} {bound:g}")
        else:
            parts.append(f"`{check.name}`")
    return "; ".join(parts)


def contract_reference(tables: list[str] | None = None) -> dict[str, Any]:
    """Every table's columns (type, nullable, audit-only, allowed values, meaning) and row
    checks, and the outcome vocabularies, as plain data."""
    chosen = tables or list(CONTRACTS)
    reference: dict[str, Any] = {"tables": {}}
    for table in chosen:
        model = CONTRACTS[table]
        schema = model.to_schema()
        columns = [
            {
                "name": name,
                "type": _TYPE_NAMES.get(str(column.dtype), str(column.dtype)),
                "dtype": str(column.dtype),
                "nullable": bool(column.nullable),
                "audit_only": name in AUDIT_ONLY_COLUMNS.get(table, ()),
                "allowed": _allowed(column.checks),
                "description": column.description or "",
            }
            for name, column in schema.columns.items()
        ]
        reference["tables"][table] = {
            "description": " ".join(inspect.cleandoc(model.__doc__ or "").split()),
            "optional": table in OPTIONAL_TABLES,
            "columns": columns,
            "row_checks": {check.name: check.error or "" for check in schema.checks},
        }
    reference["outcomes"] = [
        {
            "outcome": outcome,
            "channels": [c for c in CHANNELS if outcome in OUTCOMES_BY_CHANNEL[c]],
            "right_party_contact": outcome in RESPONSE_OUTCOMES,
            "conversation": outcome in CONVERSATION_OUTCOMES,
            "telephone_conversation": outcome in TELEPHONE_CONVERSATIONS,
            "reached": outcome not in NOT_REACHED_OUTCOMES,
        }
        for outcome in OUTCOMES
    ]
    return reference


def _cell(text: str) -> str:
    return text.replace("|", "\\|") or "-"


def _table_markdown(name: str, table: dict[str, Any]) -> list[str]:
    optional = " (optional: a portfolio may leave it out)" if table["optional"] else ""
    lines = [f"#### `{name}`{optional}", "", table["description"], ""]
    lines += ["| column | type | nullable | allowed values | meaning |", "|---|---|---|---|---|"]
    for column in table["columns"]:
        nullable = "yes" if column["nullable"] else "no"
        if column["audit_only"]:
            nullable += ", audit-only"
        lines.append(
            f"| `{column['name']}` | {column['type']} | {nullable} | "
            f"{_cell(column['allowed'])} | {_cell(column['description'])} |"
        )
    if table["row_checks"]:
        lines += [
            "",
            "Row checks, each with what breaks it: "
            + "; ".join(f"`{check}` ({error})" for check, error in table["row_checks"].items())
            + ".",
        ]
    return [*lines, ""]


def _outcomes_markdown(outcomes: list[dict[str, Any]]) -> list[str]:
    def mark(value: bool) -> str:
        return "yes" if value else "-"

    lines = [
        "#### Contact outcomes",
        "",
        "What each `contacts.outcome` counts as in the features, the labels and the KPIs "
        "(`data_contracts/vocabulary.py`).",
        "",
        "| outcome | channels | right-party contact | conversation | telephone conversation "
        "(on a call) | got through |",
        "|---|---|---|---|---|---|",
    ]
    for row in outcomes:
        lines.append(
            f"| `{row['outcome']}` | {', '.join(row['channels'])} | "
            f"{mark(row['right_party_contact'])} | {mark(row['conversation'])} | "
            f"{mark(row['telephone_conversation'])} | {mark(row['reached'])} |"
        )
    quiet = [r["outcome"] for r in outcomes if r["reached"] and not r["right_party_contact"]]
    lines += [
        "",
        "A right-party contact means the debtor was reached and engaged (a conversation, a "
        "reply, a click). Outcomes that got through without engagement ("
        + ", ".join(f"`{outcome}`" for outcome in quiet)
        + ") are not right-party contacts: an `opened` email is not engagement. A telephone "
        "conversation is a conversation outcome on a call; no call follows one for "
        "`conversation_gap_days` (`data_contracts/contact_rules.yaml`).",
        "",
    ]
    return lines


def contracts_markdown(tables: list[str] | None = None) -> str:
    """The reference as markdown: a table per contract table, then the outcome vocabulary
    (with the contacts table)."""
    reference = contract_reference(tables)
    lines = [
        "Every column must be present in its file (extra columns are allowed and carried "
        "along); *nullable* says whether a value may be missing. An invalid value in an "
        "audit-only column is set to null and counted; any other invalid value quarantines "
        "its row.",
        "",
    ]
    for name, table in reference["tables"].items():
        lines += _table_markdown(name, table)
    if tables is None or "contacts" in tables:
        lines += _outcomes_markdown(reference["outcomes"])
    return "\n".join(lines).rstrip() + "\n"
