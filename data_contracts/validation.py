"""Validate a portfolio's tables: valid rows go on, every invalid row is quarantined with why.

`validate_tables` is pure: frames in, a `ValidationResult` out. For every table,
input rows = valid rows + quarantined rows. A row is checked, in order, for:

1. `type`: a value that cannot be read as its column's type;
2. `missing_value`: a null where the contract requires a value;
3. the table's pandera contract (ranges, allowed values, order of timestamps in the row),
   with the check's name as the rule;
4. `duplicate_id`: the id was already used by an earlier valid row (the first one is kept);
5. referential integrity: `unknown_<parent>` when the parent id does not exist at all,
   `<parent>_quarantined` when the parent row exists but was itself quarantined;
6. `before_account_opened`: an event dated before its account was opened;
   `offer_of_other_account`: a contact or promise citing another account's offer.

Quarantine reasons may quote the offending value: quarantine files hold portfolio data and
are kept with it. The report holds only counts, rules and row numbers, so it can be logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.pandas as pa

from data_contracts.coerce import coerce_to_contract, finalize_dtypes
from data_contracts.schemas import CONTRACTS, ID_COLUMNS, OPTIONAL_TABLES, empty_table

ROW_COLUMN = "source_row"
RULES_COLUMN = "quarantine_rules"
REASONS_COLUMN = "quarantine_reasons"

# child table -> (foreign key column, parent table)
_PARENTS: dict[str, list[tuple[str, str]]] = {
    "debtors": [],
    "accounts": [("debtor_id", "debtors")],
    "offers": [("account_id", "accounts")],
    "payments": [("account_id", "accounts")],
    "promises": [("account_id", "accounts"), ("offer_id", "offers")],
    "contacts": [("account_id", "accounts"), ("offer_id", "offers")],
    "statements": [("account_id", "accounts")],
}
_EVENT_TIME: dict[str, str] = {
    "offers": "offered_at",
    "payments": "paid_at",
    "promises": "made_at",
    "contacts": "attempted_at",
    "statements": "statement_at",
}
_SINGULAR = {"debtors": "debtor", "accounts": "account", "offers": "offer"}


class ContractError(ValueError):
    """The input cannot be validated at all (missing table, missing column, unreadable file)."""


@dataclass(frozen=True)
class TableReport:
    """Counts for one table: rows in, rows valid, rows quarantined, rows per broken rule."""

    table: str
    input_rows: int
    valid_rows: int
    quarantined_rows: int
    rows_per_rule: dict[str, int] = field(default_factory=dict)
    first_row_per_rule: dict[str, int] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        return self.input_rows == self.valid_rows + self.quarantined_rows


@dataclass(frozen=True)
class ValidationResult:
    """Valid rows and quarantined rows of every table, and the report that counts them."""

    valid: dict[str, pd.DataFrame]
    quarantined: dict[str, pd.DataFrame]
    reports: dict[str, TableReport]

    @property
    def quarantined_rows(self) -> int:
        return sum(report.quarantined_rows for report in self.reports.values())

    @property
    def reconciles(self) -> bool:
        return all(report.reconciles for report in self.reports.values())

    def summary(self) -> dict[str, object]:
        """A JSON-ready report (counts and rule names only, no values from the data)."""
        return {
            "reconciles": self.reconciles,
            "quarantined_rows": self.quarantined_rows,
            "tables": {
                name: {
                    "input_rows": report.input_rows,
                    "valid_rows": report.valid_rows,
                    "quarantined_rows": report.quarantined_rows,
                    "rows_per_rule": report.rows_per_rule,
                    "first_row_per_rule": report.first_row_per_rule,
                }
                for name, report in self.reports.items()
            },
        }


def _violations(rows: np.ndarray, rule: str, reasons: pd.Series | list[str] | str) -> pd.DataFrame:
    """Rows (positions) that broke `rule`, each with a readable reason."""
    if isinstance(reasons, str):
        reasons = [reasons] * len(rows)
    return pd.DataFrame(
        {"row": np.asarray(rows, dtype=np.int64), "rule": rule, "reason": list(reasons)}
    )


def _describe_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_types(coerced: pd.DataFrame, unreadable: pd.DataFrame, table: str) -> list[pd.DataFrame]:
    dtypes = {name: str(col.dtype) for name, col in CONTRACTS[table].to_schema().columns.items()}
    found = []
    for column in unreadable.columns:
        rows = np.flatnonzero(unreadable[column].to_numpy())
        if len(rows):
            found.append(
                _violations(rows, "type", f"{column}: value cannot be read as {dtypes[column]}")
            )
    return found


def _check_missing(
    coerced: pd.DataFrame, unreadable: pd.DataFrame, table: str
) -> list[pd.DataFrame]:
    found = []
    for name, column in CONTRACTS[table].to_schema().columns.items():
        if column.nullable:
            continue
        missing = coerced[name].isna().to_numpy() & ~unreadable[name].to_numpy()
        rows = np.flatnonzero(missing)
        if len(rows):
            found.append(_violations(rows, "missing_value", f"{name}: value is required"))
    return found


def _renumbered(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows indexed 0..n-1, without copying the data (tables can be large)."""
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        return frame
    shallow = frame.copy(deep=False)
    shallow.index = pd.RangeIndex(len(frame))
    return shallow


def _short_check(check: str) -> str:
    """`isin([...])` -> `isin`: a rule name stays short; ranges keep their bound."""
    name, _, _ = check.partition("(")
    return name if name in ("isin", "str_matches", "notin") else check


def _check_contract(clean: pd.DataFrame, table: str) -> list[pd.DataFrame]:
    """Run the pandera model on rows free of type and missing-value problems."""
    model = CONTRACTS[table]
    schema = model.to_schema()
    typed = _renumbered(finalize_dtypes(table, clean))
    try:
        schema.validate(typed, lazy=True, inplace=True)
        return []
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    # pandera reports a row-level (dataframe) check once per column, under its error text
    row_checks = {check.error or check.name: check.name for check in schema.checks}
    row_level = cases["check"].isin(list(row_checks)) & cases["index"].notna()
    column_level = cases[cases["index"].isna()]
    if len(column_level):
        pairs = zip(column_level["column"], column_level["check"], strict=True)
        checks = ", ".join(sorted({f"{column}:{check}" for column, check in pairs}))
        raise ContractError(f"{table}: whole-column check(s) failed: {checks}")
    found = []
    positions = clean.index.to_numpy()
    for message, group in cases[row_level].groupby("check", sort=False):
        rows = np.unique(positions[group["index"].astype(np.int64).to_numpy()])
        found.append(_violations(rows, str(row_checks[message]), str(message)))
    column_cases = cases[~row_level]
    for (column, check), group in column_cases.groupby(["column", "check"], sort=False):
        rows = positions[group["index"].astype(np.int64).to_numpy()]
        reasons = [f"{column}={_describe_value(v)} fails {check}" for v in group["failure_case"]]
        found.append(_violations(rows, f"{column}:{_short_check(str(check))}", reasons))
    return found


def _check_duplicates(frame: pd.DataFrame, ok: np.ndarray, table: str) -> list[pd.DataFrame]:
    id_column = ID_COLUMNS[table]
    ids = frame[id_column]
    duplicated = np.zeros(len(frame), dtype=bool)
    duplicated[ok] = ids[ok].duplicated(keep="first").to_numpy()
    rows = np.flatnonzero(duplicated)
    if not len(rows):
        return []
    first_rows = pd.Series(np.flatnonzero(ok), index=ids[ok].to_numpy()).groupby(level=0).first()
    reasons = [
        f"{id_column} {value} already used by row {first_rows[value]}"
        for value in ids.iloc[rows].to_numpy()
    ]
    return [_violations(rows, "duplicate_id", reasons)]


def _check_parents(
    frame: pd.DataFrame,
    ok: np.ndarray,
    table: str,
    valid: dict[str, pd.DataFrame],
    raw_ids: dict[str, pd.Index],
) -> list[pd.DataFrame]:
    found = []
    for key, parent in _PARENTS[table]:
        keys = frame[key]
        present = keys.notna().to_numpy()
        valid_ids = pd.Index(valid[parent][ID_COLUMNS[parent]])
        known = keys.isin(valid_ids).to_numpy()
        broken = ok & present & ~known
        rows = np.flatnonzero(broken)
        if not len(rows):
            continue
        seen = keys.iloc[rows].isin(raw_ids[parent]).to_numpy()
        noun = _SINGULAR[parent]
        values = keys.iloc[rows].to_numpy()
        if seen.any():
            found.append(
                _violations(
                    rows[seen],
                    f"{noun}_quarantined",
                    [f"{key} {v}: that {noun} was quarantined" for v in values[seen]],
                )
            )
        if (~seen).any():
            found.append(
                _violations(
                    rows[~seen],
                    f"unknown_{noun}",
                    [f"{key} {v}: no such {noun}" for v in values[~seen]],
                )
            )
    return found


def _check_event_order(
    frame: pd.DataFrame, ok: np.ndarray, table: str, valid: dict[str, pd.DataFrame]
) -> list[pd.DataFrame]:
    found: list[pd.DataFrame] = []
    if table not in _EVENT_TIME:
        return found
    accounts = valid["accounts"].set_index("account_id")
    if table in _EVENT_TIME:
        column = _EVENT_TIME[table]
        opened = frame["account_id"].map(accounts["opened_at"])
        before = (frame[column] < opened).fillna(False).to_numpy() & ok
        rows = np.flatnonzero(before)
        if len(rows):
            found.append(
                _violations(
                    rows, "before_account_opened", f"{column} is before the account's opened_at"
                )
            )
    if table in ("contacts", "promises"):
        offers = valid["offers"].set_index("offer_id")["account_id"]
        offer_account = frame["offer_id"].map(offers)
        other = (offer_account.notna() & (offer_account != frame["account_id"])).to_numpy()
        rows = np.flatnonzero(other & ok)
        if len(rows):
            found.append(
                _violations(rows, "offer_of_other_account", "offer_id belongs to another account")
            )
    return found


def _require_columns(table: str, raw: pd.DataFrame) -> None:
    expected = list(CONTRACTS[table].to_schema().columns)
    missing = [name for name in expected if name not in raw.columns]
    if missing:
        raise ContractError(
            f"{table}: missing column(s) {', '.join(missing)}; expected {', '.join(expected)}"
        )


def _quarantine(raw: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    grouped = found.groupby("row", sort=True).agg(
        rules=("rule", lambda r: "; ".join(dict.fromkeys(r))),
        reasons=("reason", lambda r: "; ".join(dict.fromkeys(r))),
    )
    rows = grouped.index.to_numpy()
    quarantined = raw.iloc[rows].reset_index(drop=True)
    return quarantined.assign(
        **{
            ROW_COLUMN: rows,
            RULES_COLUMN: grouped["rules"].to_numpy().astype(str),
            REASONS_COLUMN: grouped["reasons"].to_numpy().astype(str),
        }
    )


def validate_table(
    table: str,
    raw: pd.DataFrame,
    valid_parents: dict[str, pd.DataFrame],
    raw_parent_ids: dict[str, pd.Index],
) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    """Validate one table against its contract and its already validated parents.

    Returns the valid rows (contract dtypes), the quarantined rows (raw values plus
    `source_row`, `quarantine_rules` and `quarantine_reasons`) and the table's report.
    """
    _require_columns(table, raw)
    raw = _renumbered(raw)
    coerced, unreadable = coerce_to_contract(table, raw)
    found = _check_types(coerced, unreadable, table) + _check_missing(coerced, unreadable, table)
    ok = np.ones(len(raw), dtype=bool)
    for violations in found:
        ok[violations["row"].to_numpy()] = False
    contract_found = _check_contract(coerced if ok.all() else coerced[ok], table)
    for violations in contract_found:
        ok[violations["row"].to_numpy()] = False
    found += contract_found
    stages = (
        lambda: _check_duplicates(coerced, ok, table),
        lambda: _check_parents(coerced, ok, table, valid_parents, raw_parent_ids),
        lambda: _check_event_order(coerced, ok, table, valid_parents),
    )
    for stage in stages:
        stage_found = stage()
        for violations in stage_found:
            ok[violations["row"].to_numpy()] = False
        found += stage_found

    violations = (
        pd.concat(found, ignore_index=True)
        if found
        else pd.DataFrame({"row": np.array([], dtype=np.int64), "rule": [], "reason": []})
    )
    kept = coerced if ok.all() else coerced[ok]
    valid = _renumbered(finalize_dtypes(table, kept))
    quarantined = _quarantine(raw, violations)
    per_rule = violations.drop_duplicates(["row", "rule"]).groupby("rule", sort=True)["row"]
    report = TableReport(
        table=table,
        input_rows=len(raw),
        valid_rows=len(valid),
        quarantined_rows=len(quarantined),
        rows_per_rule={str(rule): int(n) for rule, n in per_rule.size().items()},
        first_row_per_rule={str(rule): int(n) for rule, n in per_rule.min().items()},
    )
    return valid, quarantined, report


def validate_tables(raw_tables: Mapping[str, pd.DataFrame]) -> ValidationResult:
    """Validate every table of a portfolio, parents first, so children of quarantined
    rows are quarantined too (rule `<parent>_quarantined`) rather than silently orphaned.

    Raises:
        ContractError: a table or a contract column is missing.
    """
    missing = [t for t in CONTRACTS if t not in raw_tables and t not in OPTIONAL_TABLES]
    if missing:
        raise ContractError(f"missing table(s): {', '.join(missing)}")
    valid: dict[str, pd.DataFrame] = {}
    quarantined: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    raw_ids: dict[str, pd.Index] = {}
    for table in CONTRACTS:
        # a lazy mapping may read each table only now, so one raw table is in memory at a time
        raw = raw_tables[table] if table in raw_tables else empty_table(table)
        valid[table], quarantined[table], reports[table] = validate_table(
            table, raw, valid, raw_ids
        )
        id_column = ID_COLUMNS[table]
        raw_ids[table] = pd.Index(pd.to_numeric(raw[id_column], errors="coerce").dropna())
    return ValidationResult(valid=valid, quarantined=quarantined, reports=reports)
