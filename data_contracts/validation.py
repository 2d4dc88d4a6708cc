"""Validate a portfolio's tables: valid rows go on, every invalid row is quarantined with why.

`validate_tables` is pure: frames in, a `ValidationResult` out. For every table,
input rows = valid rows + quarantined rows. A row is checked, in order, for:

1. `<column>:type`: a value that cannot be read as its column's type;
2. `<column>:missing_value`: a null where the contract requires a value;
3. referential integrity: `unknown_<parent>` when the parent id does not exist at all,
   `<parent>_quarantined` when the parent row exists but was itself quarantined;
4. the table's pandera contract (ranges, allowed values, order of timestamps in the row),
   with the check's name as the rule;
5. `duplicate_id`: the id was already used by an earlier valid row (the first one is kept);
6. `before_account_opened`: an event dated before its account was opened
   (`before_account_placed` for account events: before it was placed with us);
   `offer_of_other_account`: a contact or promise citing another account's offer;
   `after_data_end`: an event dated after the end of the data, when that end is known.

Not every bad value costs its row. An audit-only column (`AUDIT_ONLY_COLUMNS`: `age_band`,
`gender`) is read by nothing but the fairness audit, so a value in one that is unreadable or
outside the contract is set to null and counted (`audit_value_invalid`, with the first rows and
values); the debtor and its accounts stay valid. With contact rules given, breaches of them in
the contact history (outside the allowed local hours, over the 7-day call limit) are counted as
compliance warnings; the contacts stay valid too.

Reasons name the column and the rule, never a value (the value is in the quarantined row, and
quarantine files are kept with the portfolio). The report holds counts, rules and row numbers,
and of the data only rejected audit categories and local contact times, so it can be logged.
Work is vectorized: a file whose every row is bad costs about as much as a clean one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd
import pandera.pandas as pa

from data_contracts.breaches import contact_rule_breaches, local_time_text
from data_contracts.coerce import ContractError, coerce_ids, coerce_to_contract, finalize_dtypes
from data_contracts.contact_rules import ContactRules
from data_contracts.ids import id_codes, share_categories
from data_contracts.schemas import (
    AUDIT_ONLY_COLUMNS,
    CONTRACTS,
    ID_COLUMNS,
    MAX_ID_LENGTH,
    OPTIONAL_TABLES,
    contract_columns,
    empty_table,
    id_columns,
)

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
    "account_events": [("account_id", "accounts")],
}
_EVENT_TIME: dict[str, str] = {
    "offers": "offered_at",
    "payments": "paid_at",
    "promises": "made_at",
    "contacts": "attempted_at",
    "statements": "statement_at",
    "account_events": "occurred_at",
}
_PARENT_TABLES = frozenset(parent for parents in _PARENTS.values() for _, parent in parents)
_NOT_BEFORE_PLACED: frozenset[str] = frozenset({"account_events"})
"""Tables of what happens to an account in our hands: not before it was placed with us."""
_SINGULAR = {"debtors": "debtor", "accounts": "account", "offers": "offer"}


FIRST_ROWS = 5
"""How many offending rows a notice lists (row numbers, never ids)."""


@dataclass(frozen=True)
class Notice:
    """Valid rows worth knowing about: an audit-only value set to null (`audit_value_invalid`),
    or a breach of a contact rule in the history (a compliance warning). The rows stay valid."""

    rule: str
    rows: int
    first_rows: tuple[dict[str, object], ...]
    """The first few rows: `row` (position in the input file) and what the rule saw there."""
    column: str | None = None

    def as_dict(self) -> dict[str, object]:
        column = {"column": self.column} if self.column is not None else {}
        return {"rule": self.rule, **column, "rows": self.rows, "first_rows": list(self.first_rows)}


@dataclass(frozen=True)
class TableReport:
    """Counts for one table: rows in, rows valid, rows quarantined, rows per broken rule, and
    notices about valid rows (values nulled, compliance warnings)."""

    table: str
    input_rows: int
    valid_rows: int
    quarantined_rows: int
    rows_per_rule: dict[str, int] = field(default_factory=dict)
    first_row_per_rule: dict[str, int] = field(default_factory=dict)
    nulled: tuple[Notice, ...] = ()
    warnings: tuple[Notice, ...] = ()

    @property
    def reconciles(self) -> bool:
        nulled_rows_valid = all(notice.rows <= self.valid_rows for notice in self.nulled)
        return self.input_rows == self.valid_rows + self.quarantined_rows and nulled_rows_valid


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
    def nulled_values(self) -> int:
        return sum(n.rows for report in self.reports.values() for n in report.nulled)

    @property
    def compliance_warnings(self) -> int:
        return sum(n.rows for report in self.reports.values() for n in report.warnings)

    @property
    def reconciles(self) -> bool:
        return all(report.reconciles for report in self.reports.values())

    def summary(self) -> dict[str, object]:
        """A JSON-ready report: counts, rule names and row numbers; of the data itself only
        the rejected categories of audit-only columns and the local times of warnings."""
        return {
            "reconciles": self.reconciles,
            "quarantined_rows": self.quarantined_rows,
            "nulled_values": self.nulled_values,
            "compliance_warnings": self.compliance_warnings,
            "tables": {
                name: {
                    "input_rows": report.input_rows,
                    "valid_rows": report.valid_rows,
                    "quarantined_rows": report.quarantined_rows,
                    "rows_per_rule": report.rows_per_rule,
                    "first_row_per_rule": report.first_row_per_rule,
                    "nulled_values": [notice.as_dict() for notice in report.nulled],
                    "compliance_warnings": [notice.as_dict() for notice in report.warnings],
                }
                for name, report in self.reports.items()
            },
        }


@dataclass(frozen=True)
class _Found:
    """Rows (positions) that broke one rule, with the readable reason."""

    rows: np.ndarray
    rule: str
    reason: str


def _found(rows: np.ndarray, rule: str, reason: str) -> list[_Found]:
    return [_Found(np.asarray(rows, dtype=np.int64), rule, reason)] if len(rows) else []


def _renumbered(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows indexed 0..n-1, without copying the data (tables can be large)."""
    if isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0 and frame.index.step == 1:
        return frame
    shallow = frame.copy(deep=False)
    shallow.index = pd.RangeIndex(len(frame))
    return shallow


AUDIT_VALUE_INVALID = "audit_value_invalid"


def null_invalid_audit_values(
    table: str, coerced: pd.DataFrame, unreadable: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Audit-only values that are unreadable or break their column's checks, set to null.

    Args:
        table: The contract's name.
        coerced, unreadable: What `coerce_to_contract` returned for the table.

    Returns:
        The frame with those values null (a new frame; the input is not changed) and, per
        audit-only column with such values, a boolean mask of the rows nulled.
    """
    columns = CONTRACTS[table].to_schema().columns
    nulled: dict[str, np.ndarray] = {}
    for name in AUDIT_ONLY_COLUMNS.get(table, ()):
        values = coerced[name].reset_index(drop=True)
        bad = unreadable[name].to_numpy().copy()
        for check in columns[name].checks:
            # pandera leaves nulls out of a check's output: they pass (the column is nullable)
            passed = check(values).check_output.reindex(values.index, fill_value=True)
            bad |= ~passed.to_numpy(dtype=bool)
        if bad.any():
            nulled[name] = bad
    if not nulled:
        return coerced, nulled
    fixed = {name: _null_where(coerced[name], bad) for name, bad in nulled.items()}
    return coerced.assign(**fixed), nulled


def _null_where(values: pd.Series, bad: np.ndarray) -> pd.Series:
    masked = values.mask(bad)
    if isinstance(masked.dtype, pd.CategoricalDtype):
        return masked.cat.remove_unused_categories()
    return masked


def _nulled_notices(
    raw: pd.DataFrame, nulled: dict[str, np.ndarray], ok: np.ndarray
) -> tuple[Notice, ...]:
    """One notice per audit-only column with values nulled in rows that stayed valid, with the
    first rows and their raw values (categories, not identifiers; cut at 40 characters)."""
    notices = []
    for name, bad in nulled.items():
        rows = np.flatnonzero(bad & ok)
        if not len(rows):
            continue
        first = [
            {"row": int(row), "value": _shown(raw[name].iloc[row])} for row in rows[:FIRST_ROWS]
        ]
        notices.append(Notice(AUDIT_VALUE_INVALID, len(rows), tuple(first), column=name))
    return tuple(notices)


def _shown(value: object) -> str:
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _compliance_notices(
    coerced: pd.DataFrame, ok: np.ndarray, valid: dict[str, pd.DataFrame], rules: ContactRules
) -> tuple[Notice, ...]:
    """Compliance warnings on the valid contacts: one notice per contact rule broken."""
    columns = ["account_id", "channel", "direction", "attempted_at"]
    contacts = coerced[columns][ok].assign(row=np.flatnonzero(ok))
    found = contact_rule_breaches(contacts, valid["accounts"], valid["debtors"], rules)
    notices = []
    for rule, rows in found.items():
        first = []
        for item in rows.head(FIRST_ROWS).to_dict("records"):
            shown: dict[str, object] = {
                "row": int(item["row"]),
                "local_time": local_time_text(item["local_time"], item["utc_offset"]),
                "jurisdiction": item["jurisdiction"],
            }
            if "calls_in_7_days" in item:
                shown["calls_in_7_days"] = int(item["calls_in_7_days"])
            first.append(shown)
        notices.append(Notice(rule, len(rows), tuple(first)))
    return tuple(notices)


def _check_types(unreadable: pd.DataFrame, table: str) -> list[_Found]:
    dtypes = {name: str(col.dtype) for name, col in CONTRACTS[table].to_schema().columns.items()}
    found: list[_Found] = []
    ids = set(id_columns(table))
    for column in unreadable.columns:
        rows = np.flatnonzero(unreadable[column].to_numpy())
        reason = f"{column}: value cannot be read as {dtypes[column]}"
        if column in ids:
            reason = (
                f"{column}: not an id (text of 1 to {MAX_ID_LENGTH} characters, no spaces around)"
            )
        found += _found(rows, f"{column}:type", reason)
    return found


def _check_missing(coerced: pd.DataFrame, unreadable: pd.DataFrame, table: str) -> list[_Found]:
    found: list[_Found] = []
    for name, column in CONTRACTS[table].to_schema().columns.items():
        if column.nullable:
            continue
        missing = coerced[name].isna().to_numpy() & ~unreadable[name].to_numpy()
        found += _found(
            np.flatnonzero(missing), f"{name}:missing_value", f"{name}: value is required"
        )
    return found


def _short_check(check: str) -> str:
    """`isin([...])` -> `isin`: a rule name stays short; ranges keep their bound."""
    name, _, _ = check.partition("(")
    return name if name in ("isin", "str_matches", "notin") else check


@cache
def _checked_schema(table: str) -> pa.DataFrameSchema:
    """The contract's schema, less the dtype of its categorical id columns: `coerce_id` made
    them categoricals of text already, and pandera's check of a categorical's dtype rebuilds
    and re-verifies its categories (seconds for a few million ids)."""
    schema = CONTRACTS[table].to_schema()
    columns = contract_columns(table)
    categorical_ids = [name for name in id_columns(table) if columns[name] == "category"]
    return schema.update_columns({name: {"dtype": None} for name in categorical_ids})


def _check_contract(clean: pd.DataFrame, table: str) -> list[_Found]:
    """Run the pandera model on rows free of type and missing-value problems."""
    schema = _checked_schema(table)
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
    found: list[_Found] = []
    positions = clean.index.to_numpy()
    for message, group in cases[row_level].groupby("check", sort=False, observed=True):
        rows = np.unique(positions[group["index"].astype(np.int64).to_numpy()])
        found += _found(rows, str(row_checks[message]), str(message))
    column_cases = cases[~row_level]
    for (column, check), group in column_cases.groupby(
        ["column", "check"], sort=False, observed=True
    ):
        rows = positions[group["index"].astype(np.int64).to_numpy()]
        found += _found(rows, f"{column}:{_short_check(str(check))}", f"{column} fails {check}")
    return found


def _check_duplicates(
    frame: pd.DataFrame, ok: np.ndarray, table: str, raw: pd.DataFrame
) -> list[_Found]:
    id_column = ID_COLUMNS[table]
    ids = frame[id_column]
    if pd.api.types.is_integer_dtype(raw[id_column].dtype):
        ids = raw[id_column]  # the same duplicates as their decimal text, without hashing text
    duplicated = np.zeros(len(frame), dtype=bool)
    kept = ids[ok]
    if pd.api.types.is_integer_dtype(kept.dtype) and _increasing(kept.to_numpy(dtype=np.int64)):
        return []  # numbered in order (the common export): no two alike
    if isinstance(kept.dtype, pd.StringDtype):
        kept = pd.Series(pd.factorize(kept)[0])  # Arrow text is hashed in Arrow
    duplicated[ok] = kept.duplicated(keep="first").to_numpy()
    reason = f"{id_column} already used by an earlier row (the first one is kept)"
    return _found(np.flatnonzero(duplicated), "duplicate_id", reason)


def _parent_rows(
    frame: pd.DataFrame, table: str, valid: dict[str, pd.DataFrame]
) -> dict[str, np.ndarray]:
    """Each reference's row in its valid parent (-1: missing, unknown or quarantined), found
    once per reference and shared by the checks that need it."""
    return {
        key: id_codes(frame[key], pd.Index(valid[parent][ID_COLUMNS[parent]]))
        for key, parent in _PARENTS[table]
    }


def _increasing(values: np.ndarray) -> bool:
    return bool(len(values) < 2 or (values[1:] > values[:-1]).all())


def _check_parents(
    frame: pd.DataFrame,
    ok: np.ndarray,
    table: str,
    parent_rows: dict[str, np.ndarray],
    raw_ids: Mapping[str, Callable[[], pd.Index]],
) -> list[_Found]:
    found: list[_Found] = []
    for key, parent in _PARENTS[table]:
        keys = frame[key]
        present = keys.notna().to_numpy()
        rows = np.flatnonzero(ok & present & (parent_rows[key] < 0))
        if not len(rows):
            continue
        seen = id_codes(keys.iloc[rows], raw_ids[parent]()) >= 0
        noun = _SINGULAR[parent]
        found += _found(rows[seen], f"{noun}_quarantined", f"{key}: that {noun} was quarantined")
        found += _found(rows[~seen], f"unknown_{noun}", f"{key}: no such {noun}")
    return found


def _check_event_order(
    frame: pd.DataFrame,
    ok: np.ndarray,
    table: str,
    valid: dict[str, pd.DataFrame],
    parent_rows: dict[str, np.ndarray],
    data_end: pd.Timestamp | None,
) -> list[_Found]:
    found: list[_Found] = []
    if data_end is not None:
        columns = [_EVENT_TIME[table]] if table in _EVENT_TIME else []
        if table == "accounts":
            columns = ["placed_at", "opened_at"]
        for column in columns:
            late = (frame[column] > data_end).fillna(False).to_numpy() & ok
            found += _found(
                np.flatnonzero(late), "after_data_end", f"{column} is after the end of the data"
            )
    if table not in _EVENT_TIME:
        return found
    column = _EVENT_TIME[table]
    since, rule = "opened_at", "before_account_opened"
    if table in _NOT_BEFORE_PLACED:
        since, rule = "placed_at", "before_account_placed"
    started = valid["accounts"][since].array.take(parent_rows["account_id"], allow_fill=True)
    before = (frame[column] < started).fillna(False).to_numpy() & ok
    found += _found(np.flatnonzero(before), rule, f"{column} is before the account's {since}")
    if table in ("contacts", "promises"):
        offers = valid["offers"]  # their account ids hold the accounts' categories
        offer_row = parent_rows["offer_id"]
        cited = np.flatnonzero(offer_row >= 0)
        offer_account = offers["account_id"].cat.codes.to_numpy()[offer_row[cited]]
        own_account = id_codes(frame["account_id"], offers["account_id"].cat.categories)[cited]
        other = np.zeros(len(frame), dtype=bool)
        other[cited] = offer_account != own_account
        found += _found(
            np.flatnonzero(other & ok),
            "offer_of_other_account",
            "offer_id belongs to another account",
        )
    return found


def layout_problems(columns: Mapping[str, Sequence[str]], where: str = "") -> list[str]:
    """Every missing table and every missing or reserved column of every table, at once.

    Args:
        columns: Table name -> its column names, for each table that is present.
        where: The folder the tables come from, named in each message (`DIR/<table>.parquet`).

    Returns:
        One message per file with a problem, naming the file and every column concerned.
        Optional tables (statements) may be absent; extra columns are allowed.
    """
    problems: list[str] = []
    for table in CONTRACTS:
        file = f"{where.rstrip('/')}/{table}.parquet" if where else f"{table}.parquet"
        if table not in columns:
            if table not in OPTIONAL_TABLES:
                problems.append(f"{file}: file not found (every portfolio needs {table}.parquet)")
            continue
        problems += _column_problems(table, columns[table], file)
    return problems


def _column_problems(table: str, columns: Sequence[str], file: str) -> list[str]:
    """The contract columns a table lacks, and the quarantine's reserved names it uses."""
    present = set(columns)
    problems = []
    missing = [name for name in CONTRACTS[table].to_schema().columns if name not in present]
    if missing:
        problems.append(f"{file}: missing column(s) {', '.join(missing)}")
    reserved = [name for name in (ROW_COLUMN, RULES_COLUMN, REASONS_COLUMN) if name in present]
    if reserved:
        names = ", ".join(reserved)
        problems.append(f"{file}: column name(s) reserved for the quarantine: {names}")
    return problems


def _quarantine(
    raw: pd.DataFrame, found: list[_Found]
) -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """Quarantined rows (raw values, source row, rules, reasons) and counts per rule.

    Vectorized: rows that broke one rule take its name directly; only rows that broke
    several need their names joined.
    """
    if not found:
        empty = raw.iloc[:0].copy()
        empty[ROW_COLUMN] = np.array([], np.int64)
        empty[RULES_COLUMN] = pd.Series([], dtype=str)
        empty[REASONS_COLUMN] = pd.Series([], dtype=str)
        return empty, {}, {}
    labels = list(dict.fromkeys((f.rule, f.reason) for f in found))
    label_of = {label: code for code, label in enumerate(labels)}
    rows = np.concatenate([f.rows for f in found])
    codes = np.concatenate([np.full(len(f.rows), label_of[(f.rule, f.reason)]) for f in found])
    order = np.lexsort((codes, rows))
    rows, codes = rows[order], codes[order]
    distinct = np.r_[True, (rows[1:] != rows[:-1]) | (codes[1:] != codes[:-1])][: len(rows)]
    rows, codes = rows[distinct], codes[distinct]

    rule_names = sorted({rule for rule, _ in labels})
    rule_code = np.array([rule_names.index(rule) for rule, _ in labels])[codes]
    stride = int(rows.max()) + 1 if len(rows) else 1
    pairs = np.unique(rule_code.astype(np.int64) * stride + rows)  # distinct (rule, row)
    pair_rule, pair_row = pairs // stride, pairs % stride
    per_rule = np.bincount(pair_rule, minlength=len(rule_names))
    first = np.full(len(rule_names), np.iinfo(np.int64).max)
    np.minimum.at(first, pair_rule, pair_row)
    rows_per_rule = {name: int(n) for name, n in zip(rule_names, per_rule, strict=True) if n}
    first_row = {name: int(r) for name, r, n in zip(rule_names, first, per_rule, strict=True) if n}

    starts = np.r_[True, rows[1:] != rows[:-1]][: len(rows)]
    unique_rows = rows[starts]
    group = np.cumsum(starts) - 1
    per_row = np.bincount(group)
    rule_text = [rule for rule, _ in labels]
    reason_text = [reason for _, reason in labels]
    rule_codes = codes[starts].copy()
    reason_codes = codes[starts].copy()
    start_of = np.flatnonzero(starts)
    for index in np.flatnonzero(per_row > 1):
        members = codes[start_of[index] : start_of[index] + per_row[index]]
        joined_rules = "; ".join(dict.fromkeys(labels[c][0] for c in members))
        joined_reasons = "; ".join(dict.fromkeys(labels[c][1] for c in members))
        rule_text.append(joined_rules)
        rule_codes[index] = len(rule_text) - 1
        reason_text.append(joined_reasons)
        reason_codes[index] = len(reason_text) - 1
    if len(unique_rows) == len(raw):  # every row quarantined: no need to copy them
        quarantined = raw.copy(deep=False)
    else:
        quarantined = raw.iloc[unique_rows].reset_index(drop=True)
    quarantined[ROW_COLUMN] = unique_rows
    quarantined[RULES_COLUMN] = _categorical(rule_codes, rule_text)
    quarantined[REASONS_COLUMN] = _categorical(reason_codes, reason_text)
    return quarantined, rows_per_rule, first_row


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _categorical(codes: np.ndarray, texts: list[str]) -> pd.Categorical[str]:
    """Categorical of texts[code], merging equal texts into one category."""
    categories = _unique(texts)
    position = {text: index for index, text in enumerate(categories)}
    remap = np.array([position[text] for text in texts], dtype=np.int64)
    return pd.Categorical.from_codes(remap[codes], categories=pd.Index(categories))


def _shared_ids(valid: pd.DataFrame, table: str, parents: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Valid rows whose references hold their parent's id categories, so that ids compare,
    join and index alike across tables (every valid reference exists in its parent)."""
    shared = {
        key: share_categories(valid[key], parents[parent][ID_COLUMNS[parent]])
        for key, parent in _PARENTS[table]
        if key in valid.columns
        and parent in parents
        and isinstance(valid[key].dtype, pd.CategoricalDtype)  # not Arrow text (offer ids)
    }
    return valid.assign(**shared) if shared else valid


def share_parent_ids(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Tables whose references hold their parent's id categories, as validation leaves them
    (for tables read as stored, each with its own copy of every id it cites)."""
    shared: dict[str, pd.DataFrame] = {}
    for table in CONTRACTS:  # parents first
        if table in tables:
            shared[table] = _shared_ids(tables[table], table, shared)
    return shared


def _existing_ids(table: str, raw_ids: pd.Series) -> Callable[[], pd.Index]:
    """The ids a raw table holds, valid rows or not (to tell a quarantined parent from an
    unknown one), found on the first call: most portfolios never need them."""

    @cache
    def existing() -> pd.Index:
        ids, _ = coerce_ids(table, ID_COLUMNS[table], raw_ids)
        if isinstance(ids.dtype, pd.CategoricalDtype):
            return pd.Index(ids.cat.categories)
        return pd.Index(ids.dropna().unique())

    return existing


def validate_table(
    table: str,
    raw: pd.DataFrame,
    valid_parents: dict[str, pd.DataFrame],
    raw_parent_ids: Mapping[str, Callable[[], pd.Index]],
    data_end: pd.Timestamp | None = None,
    contact_rules: ContactRules | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, TableReport]:
    """Validate one table against its contract and its already validated parents.

    Returns the valid rows (contract dtypes), the quarantined rows (raw values plus
    `source_row`, `quarantine_rules` and `quarantine_reasons`) and the table's report; with
    `contact_rules`, the contacts' report holds the breaches of them as warnings.
    """
    problems = _column_problems(table, list(raw.columns), f"{table}.parquet")
    if problems:
        raise ContractError(*problems)
    raw = _renumbered(raw)
    coerced, unreadable = coerce_to_contract(table, raw)
    coerced, nulled = null_invalid_audit_values(table, coerced, unreadable)
    if nulled:  # nulled values are reported as such, not as unreadable
        unreadable = unreadable.assign(**dict.fromkeys(nulled, False))
    found = _check_types(unreadable, table) + _check_missing(coerced, unreadable, table)
    ok = np.ones(len(raw), dtype=bool)

    def exclude(new: list[_Found]) -> list[_Found]:
        for item in new:
            ok[item.rows] = False
        return new

    exclude(found)
    # parents before the contract: rows of an unknown or quarantined parent skip the costlier
    # pandera checks (a file of orphans costs little)
    parent_rows = _parent_rows(coerced, table, valid_parents)
    found += exclude(_check_parents(coerced, ok, table, parent_rows, raw_parent_ids))
    found += exclude(_check_contract(coerced if ok.all() else coerced[ok], table))
    found += exclude(_check_duplicates(coerced, ok, table, raw))
    found += exclude(_check_event_order(coerced, ok, table, valid_parents, parent_rows, data_end))

    kept = coerced if ok.all() else coerced[ok]
    valid = _shared_ids(_renumbered(finalize_dtypes(table, kept)), table, valid_parents)
    quarantined, rows_per_rule, first_row = _quarantine(raw, found)
    report = TableReport(
        table=table,
        input_rows=len(raw),
        valid_rows=len(valid),
        quarantined_rows=len(quarantined),
        rows_per_rule=rows_per_rule,
        first_row_per_rule=first_row,
        nulled=_nulled_notices(raw, nulled, ok),
        warnings=(
            _compliance_notices(coerced, ok, valid_parents, contact_rules)
            if table == "contacts" and contact_rules is not None
            else ()
        ),
    )
    return valid, quarantined, report


def validate_tables(
    raw_tables: Mapping[str, pd.DataFrame],
    data_end: pd.Timestamp | None = None,
    progress: Callable[[str], None] | None = None,
    on_quarantined: Callable[[str, pd.DataFrame], None] | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    where: str = "",
    contact_rules: ContactRules | None = None,
) -> ValidationResult:
    """Validate every table of a portfolio, parents first, so children of quarantined
    rows are quarantined too (rule `<parent>_quarantined`) rather than silently orphaned.

    Args:
        raw_tables: Table name -> frame as read (may be a lazy mapping that reads on access).
        data_end: End of the data, if known: later events are quarantined (`after_data_end`).
        progress: Called with each table's name before it is validated.
        on_quarantined: If given, receives each table's quarantined rows as soon as they are
            known (to write them), and the result keeps only their counts, not the rows:
            a file full of bad rows then costs no more memory than a clean one.
        columns: Each present table's column names, when known without reading it (a
            folder's parquet schemas); by default taken from the frames.
        where: The folder the tables come from, named in error messages.
        contact_rules: If given, contacts that broke them (outside the allowed local hours,
            over the 7-day call limit) are counted as compliance warnings; they stay valid.

    Raises:
        ContractError: tables or contract columns are missing (all of them, one per line).
    """
    if columns is None:
        columns = {t: list(raw_tables[t].columns) for t in CONTRACTS if t in raw_tables}
    problems = layout_problems(columns, where)
    if problems:
        raise ContractError(*problems)
    valid: dict[str, pd.DataFrame] = {}
    quarantined: dict[str, pd.DataFrame] = {}
    reports: dict[str, TableReport] = {}
    raw_ids: dict[str, Callable[[], pd.Index]] = {}
    for table in CONTRACTS:
        if progress is not None:
            progress(table)
        # a lazy mapping may read each table only now, so one raw table is in memory at a time
        raw = raw_tables[table] if table in raw_tables else empty_table(table)
        valid[table], quarantined[table], reports[table] = validate_table(
            table, raw, valid, raw_ids, data_end, contact_rules
        )
        if on_quarantined is not None:
            on_quarantined(table, quarantined[table])
            quarantined[table] = quarantined[table].iloc[:0]
        if table in _PARENT_TABLES:  # ids that exist, valid or not: found if ever needed
            raw_ids[table] = _existing_ids(table, raw[ID_COLUMNS[table]])
    return ValidationResult(valid=valid, quarantined=quarantined, reports=reports)
