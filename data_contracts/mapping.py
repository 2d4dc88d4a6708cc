"""A declarative mapping from an agency's own tables to the contract tables (pure).

A mapping file (YAML) names its sources (CSV or parquet files, SQL databases), and for each
contract table where its rows come from and how each contract column is obtained from the
source's columns: a rename, a concatenation, a constant, a value map for enumerations (a
dialer's result codes to contract outcomes), a date-time format, the time zone of naive
timestamps, a factor (cents to units), and defaults for optional columns. `action_probability`
of contacts is either a column or `unknown`. No expression is ever evaluated as code.

The file is validated into pydantic models (`extra="forbid"`), and every error names the file,
the line and the key. Reading sources is I/O and lives in `pipelines.sources`; this module
only checks the mapping and transforms frames.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_contracts.coerce import coerce_to_contract
from data_contracts.schemas import CONTRACTS, contract_columns
from data_contracts.validation import REASONS_COLUMN, ROW_COLUMN, RULES_COLUMN
from data_contracts.vocabulary import iana_timezones

Scalar = str | int | float | bool | None
Path_ = tuple[str | int, ...]
UNKNOWN = "unknown"
REQUIRED_TABLES = ("debtors", "accounts")
"""Tables every mapping must fill; the others may be left out and are then written empty."""
TIMESTAMP, NUMBERS = "datetime64[us, UTC]", ("float64", "int64", "Int64")
_OFFSET = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"


class MappingError(ValueError):
    """The mapping file is invalid, or does not fit its sources; the message names where."""


def _zone(value: str | None) -> str | None:
    if value is not None and value not in iana_timezones():
        raise ValueError(f"{value!r} is not an IANA time zone (such as America/Bogota or UTC)")
    return value


class ColumnRule(BaseModel):
    """How one column is obtained: from exactly one of `column`, `concat` or `value`, then
    optionally mapped (`values`), parsed (`format`, `timezone`) and scaled (`multiply`).
    A plain string in the YAML is a rename: `account_id: acct_no`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str | None = None
    concat: list[str] | None = Field(default=None, min_length=2)
    separator: str = ""
    value: Scalar = None
    values: dict[str, Scalar] | None = None
    unmapped: Literal["keep", "null"] = "keep"
    format: str | None = None
    timezone: str | None = None
    multiply: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _rename(cls, data: Any) -> Any:
        return {"column": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_origin(self) -> ColumnRule:
        given = [name for name in ("column", "concat", "value") if name in self.model_fields_set]
        if len(given) != 1:
            raise ValueError("give exactly one of column, concat or value")
        return self

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value)

    def source_columns(self) -> list[str]:
        return [self.column] if self.column is not None else list(self.concat or [])


class TableMapping(BaseModel):
    """Where one contract table's rows come from and how its columns are obtained."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = None
    file: str | None = None
    table: str | None = None
    query: str | None = None
    timezone: str | None = None
    columns: dict[str, ColumnRule] = {}
    defaults: dict[str, Scalar] = {}
    extra: dict[str, ColumnRule] = {}
    action_probability: Literal["unknown"] | ColumnRule | None = Field(
        default=None, union_mode="left_to_right"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value)

    def rules(self) -> dict[str, ColumnRule]:
        """Every rule of the table: contract columns, action_probability, extra columns."""
        found = dict(self.columns)
        if isinstance(self.action_probability, ColumnRule):
            found["action_probability"] = self.action_probability
        return {**found, **self.extra}

    def source_columns(self) -> list[str]:
        names = (name for rule in self.rules().values() for name in rule.source_columns())
        return list(dict.fromkeys(names))


class Mapping(BaseModel):
    """A whole mapping file: sources, the end of the data and the tables."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="What the data is; the manifest's source.")
    data_end: datetime
    timezone: str = "UTC"
    sources: dict[str, dict[str, Any]] = Field(min_length=1)
    tables: dict[str, TableMapping]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        return _zone(value)

    def source_of(self, table: str) -> str:
        named = self.tables[table].source
        return named if named is not None else next(iter(self.sources))

    def action_probability_known(self) -> bool:
        contacts = self.tables.get("contacts")
        return contacts is not None and isinstance(contacts.action_probability, ColumnRule)


# ----- YAML with line numbers -----------------------------------------------------------
def load_yaml(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    """The YAML document and the line (1-based) of every key and list item in it.

    Mapping keys stay text as written (`no`, `1`), so a value map's keys match the source's
    codes; values are read by YAML's usual rules.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise MappingError(
            f"{file}{where}: not valid YAML ({getattr(error, 'problem', '')})"
        ) from None
    lines: dict[Path_, int] = {}
    return (_build(node, (), lines) if node is not None else None), lines


def _build(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        built = {}
        for key, value in node.value:
            name = str(key.value)
            built[name] = _build(value, (*path, name), lines)
            lines[(*path, name)] = key.start_mark.line + 1
        return built
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node)


def where(path: Iterable[str | int], lines: dict[Path_, int]) -> tuple[int | None, str]:
    """The line and dotted key of a path, skipping steps the YAML does not hold (pydantic
    adds the name of a union member to an error's location)."""
    kept: Path_ = ()
    for step in path:
        if (*kept, step) in lines:
            kept = (*kept, step)
    return lines.get(kept) if kept else None, ".".join(str(step) for step in kept)


def located(file: str, lines: dict[Path_, int], problems: list[tuple[Path_, str]]) -> MappingError:
    """One error listing each problem as `file, line N, key: message`."""
    texts = []
    for path, message in problems:
        line, key = where(path, lines)
        at = f", line {line}" if line else ""
        texts.append(f"{file}{at}{f', {key}' if key else ''}: {message}")
    return MappingError("\n".join(texts))


def parse_mapping(
    text: str, file: str, more: Callable[[Mapping], list[tuple[Path_, str]]] | None = None
) -> tuple[Mapping, dict[Path_, int]]:
    """Validate a mapping file's text: its structure, then its fit to the contracts and what
    `more` finds (the sources' own settings), all reported at once."""
    data, lines = load_yaml(text, file)
    try:
        mapping = Mapping.model_validate(data if data is not None else {})
    except ValidationError as error:
        problems = [(tuple(e["loc"]), _pydantic_message(e)) for e in error.errors()]
        raise located(file, lines, problems) from None
    problems = contract_problems(mapping) + (more(mapping) if more is not None else [])
    if problems:
        raise located(file, lines, problems)
    return mapping, lines


def _pydantic_message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return f"unknown key {error['loc'][-1]!r}"
    if error["type"] == "missing":
        return f"required key {error['loc'][-1]!r} is missing"
    return str(error["msg"]).removeprefix("Value error, ")


# ----- fit to the contracts ---------------------------------------------------------------
def contract_problems(mapping: Mapping) -> list[tuple[Path_, str]]:
    """What the mapping asks that the contracts cannot take, each with its place in the file."""
    problems: list[tuple[Path_, str]] = []
    for table in REQUIRED_TABLES:
        if table not in mapping.tables:
            problems.append((("tables",), f"table {table!r} is required: map it"))
    for table, rules in mapping.tables.items():
        at: Path_ = ("tables", table)
        if table not in CONTRACTS:
            problems.append((at, f"unknown table; contract tables: {', '.join(CONTRACTS)}"))
            continue
        if rules.source is not None and rules.source not in mapping.sources:
            problems.append(((*at, "source"), f"no source named {rules.source!r} in sources"))
        if rules.source is None and len(mapping.sources) > 1:
            problems.append((at, "several sources are declared: name this table's source"))
        problems += _column_problems(table, rules, at)
    return problems


def _column_problems(table: str, rules: TableMapping, at: Path_) -> list[tuple[Path_, str]]:
    dtypes = contract_columns(table)
    nullable = {n: c.nullable for n, c in CONTRACTS[table].to_schema().columns.items()}
    problems: list[tuple[Path_, str]] = []
    for name, rule in rules.columns.items():
        place = (*at, "columns", name)
        if name not in dtypes:
            problems.append((place, f"not a column of {table}; carry it under extra:"))
        elif name == "action_probability":
            problems.append((place, "say it under the table's action_probability: key"))
        else:
            problems += _rule_problems(rule, dtypes[name], place)
    for name in rules.extra:
        if name in dtypes or name in (ROW_COLUMN, RULES_COLUMN, REASONS_COLUMN):
            problems.append(((*at, "extra", name), "an extra column needs a name of its own"))
    for name in rules.defaults:
        if not nullable.get(name, False):
            why = "not a column of the table" if name not in dtypes else "required by the contract"
            problems.append(((*at, "defaults", name), f"{why}: defaults are for optional columns"))
    missing = [
        n
        for n, ok in nullable.items()
        if not ok and n not in rules.columns and n not in rules.defaults
    ]
    if missing:
        hint = "map each under columns: (a constant: `name: {value: ...}`)"
        problems.append(((*at, "columns"), f"required column(s) not mapped: {missing}; {hint}"))
    if table == "contacts" and rules.action_probability is None:
        problems.append(
            (
                at,
                "say how action_probability is obtained: a column, or `unknown` (then "
                "off-policy estimates of new policies are refused)",
            )
        )
    if table != "contacts" and rules.action_probability is not None:
        problems.append(((*at, "action_probability"), "only contacts have action_probability"))
    if isinstance(rules.action_probability, ColumnRule):
        place = (*at, "action_probability")
        problems += _rule_problems(rules.action_probability, dtypes["action_probability"], place)
    return problems


def _rule_problems(rule: ColumnRule, dtype: str, at: Path_) -> list[tuple[Path_, str]]:
    problems: list[tuple[Path_, str]] = []
    if dtype != TIMESTAMP:
        for key in ("format", "timezone"):
            if getattr(rule, key) is not None:
                problems.append(((*at, key), f"only for date-time columns (this one is {dtype})"))
    if rule.multiply is not None and dtype not in NUMBERS:
        problems.append(((*at, "multiply"), f"only for numeric columns (this one is {dtype})"))
    return problems


# ----- transforms (pure) -----------------------------------------------------------------
@dataclass(frozen=True)
class Unmapped:
    """A source value that a value map does not name, and how many rows hold it."""

    table: str
    column: str
    source: str
    value: str
    count: int


def map_table(
    table: str, rules: TableMapping, zone: str, chunks: Iterable[pd.DataFrame]
) -> tuple[pd.DataFrame, list[Unmapped]]:
    """The contract table built from the source's chunks, and the unmapped values counted.

    Values that cannot be read as their column's type are kept as text (so validation
    quarantines the row under `<column>:type` and nothing is lost); columns that read cleanly
    get their contract dtype.
    """
    counts: Counter[tuple[str, str, str]] = Counter()
    frames = [_map_chunk(table, rules, zone, chunk, counts) for chunk in chunks]
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else _map_chunk(
            table, rules, zone, pd.DataFrame({c: [] for c in rules.source_columns()}), counts
        )
    )
    unmapped = [
        Unmapped(table, column, source, value, n)
        for (column, source, value), n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return to_contract_dtypes(table, frame), unmapped


def missing_source_columns(rules: TableMapping, columns: Iterable[str]) -> list[str]:
    present = set(columns)
    return [name for name in rules.source_columns() if name not in present]


def _map_chunk(
    table: str,
    rules: TableMapping,
    zone: str,
    chunk: pd.DataFrame,
    counts: Counter[tuple[str, str, str]],
) -> pd.DataFrame:
    dtypes = contract_columns(table)
    table_zone = rules.timezone or zone
    all_rules = rules.rules()
    out: dict[str, pd.Series] = {}
    for name in [*dtypes, *rules.extra]:
        rule = all_rules.get(name)
        if rule is None:
            default = rules.defaults.get(name)
            out[name] = pd.Series([default] * len(chunk), index=chunk.index, dtype=object)
            continue
        values = _origin(rule, chunk)
        if rule.values is not None:
            values, strays = _value_map(rule, values)
            origin = ",".join(rule.source_columns()) or "value"
            counts.update({(name, origin, value): n for value, n in strays.items()})
        if dtypes.get(name) == TIMESTAMP:
            values = to_utc(values, rule.format, rule.timezone or table_zone)
        if rule.multiply is not None:
            values = _multiply(values, rule.multiply)
        if name in rules.defaults:
            values = values.where(values.notna(), rules.defaults[name])
        out[name] = values
    return pd.DataFrame(out, index=chunk.index)


def _origin(rule: ColumnRule, chunk: pd.DataFrame) -> pd.Series:
    if rule.column is not None:
        return chunk[rule.column]
    if rule.concat is not None:
        parts = [as_text(chunk[name]) for name in rule.concat]
        joined = parts[0]
        for part in parts[1:]:
            joined = joined + rule.separator + part
        return joined.astype(object).where(joined.notna(), None)
    return pd.Series([rule.value] * len(chunk), index=chunk.index, dtype=object)


def as_text(values: pd.Series) -> pd.Series:
    """Values as text the way a person writes them: whole floats without `.0`."""
    if pd.api.types.is_float_dtype(values.dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        finite = numbers[np.isfinite(numbers)]
        if np.array_equal(finite, np.round(finite)) and (np.abs(finite) < 2**53).all():
            return values.astype("Int64").astype("string")
    return values.astype("string")


def _value_map(rule: ColumnRule, values: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Values through the rule's map, and each unmapped value with its count (an unmapped
    value is kept for validation to quarantine, or made null, as the rule says)."""
    table = rule.values or {}
    text = as_text(values)
    known = text.isin(list(table)).to_numpy()
    present = text.notna().to_numpy()
    strays = {str(v): int(n) for v, n in text[present & ~known].value_counts().items()}
    mapped = text.astype(object).map(table)
    fallback = values if rule.unmapped == "keep" else pd.Series(None, index=values.index)
    return mapped.where(known, fallback.astype(object)).astype(object), strays


def _multiply(values: pd.Series, factor: float) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    bad = (values.notna() & numbers.isna()).to_numpy()
    scaled = numbers.astype("float64") * factor
    return scaled.astype(object).where(~bad, values) if bad.any() else scaled


def to_utc(values: pd.Series, fmt: str | None, zone: str) -> pd.Series:
    """Timestamps in UTC: aware values are converted, naive ones read in `zone` (a local time
    that does not exist or is ambiguous there, at a DST change, is left unreadable). Text is
    parsed with `fmt` (strftime codes), ISO 8601 without one. Unreadable values stay as they
    were, so validation quarantines them under `<column>:type`."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return _localize(values, zone)
    if values.dtype == object and values.map(lambda v: isinstance(v, datetime)).all():
        values = values.map(lambda v: v.isoformat() if isinstance(v, datetime) else v)
    text = values.astype("string").str.strip()
    aware = text.str.contains(_OFFSET, regex=True).fillna(False).to_numpy(bool)
    if fmt is not None and "%z" in fmt:
        aware[:] = True
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    how = fmt or "ISO8601"
    if aware.any():
        parsed[aware] = pd.to_datetime(text[aware], format=how, errors="coerce", utc=True)
    if (~aware).any():
        naive = pd.to_datetime(text[~aware], format=how, errors="coerce")
        parsed[~aware] = _localize(naive, zone)
    bad = (text.notna() & parsed.isna()).to_numpy()
    return parsed.astype(object).where(~bad, values) if bad.any() else parsed


def _localize(values: pd.Series, zone: str) -> pd.Series:
    local = values.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    return local.dt.tz_convert("UTC")


def to_contract_dtypes(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Each contract column in its contract dtype where every value reads as that type, else
    as text (timestamps in ISO 8601): the file keeps every value for validation to judge."""
    dtypes = contract_columns(table)
    coerced, unreadable = coerce_to_contract(table, frame)
    columns: dict[str, pd.Series] = {}
    for name in frame.columns:
        if name not in dtypes:
            columns[name] = _storable(frame[name])
        elif unreadable[name].any():
            columns[name] = _storable(frame[name]).astype("string")
        elif dtypes[name] == "int64" and coerced[name].notna().all():
            columns[name] = coerced[name].astype(np.int64)
        else:
            columns[name] = coerced[name]
    return pd.DataFrame(columns, index=frame.index)


def _storable(values: pd.Series) -> pd.Series:
    """A column parquet can hold: mixed objects become text."""
    if values.dtype != object:
        return values
    return values.map(
        lambda v: v.isoformat() if isinstance(v, datetime) else v, na_action="ignore"
    ).astype("string")
