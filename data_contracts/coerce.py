"""Bring a raw table to its contract's dtypes, one value at a time.

A value that cannot be read as its column's type (text in an amount column, a date that is no
date) is not allowed to sink the whole file: it becomes missing, and its row is flagged so the
validator quarantines it under the rule `type`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts.schemas import MAX_ID_LENGTH, ROW_ID_DTYPE, contract_columns, id_columns


class ContractError(ValueError):
    """The input cannot be validated at all (missing table, missing column, unreadable file).

    It may hold several problems found in one pass (every missing file and column of a
    folder), one line each in its message and listed in `problems`.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__("\n".join(problems))
        self.problems: tuple[str, ...] = problems


def _is_present(values: pd.Series) -> np.ndarray:
    return values.notna().to_numpy()


def _coerce_integer(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if values.dtype == np.uint64:  # ids above 2**63 - 1 do not fit the contract's int64
        too_large = values.to_numpy() > np.iinfo(np.int64).max
        fitted = values.where(~too_large, 0).astype(np.int64).astype("Int64")
        return fitted.mask(too_large), too_large
    if pd.api.types.is_integer_dtype(values.dtype):
        # int64 stays int64 (no copy); other integer types become nullable Int64
        same = values if values.dtype == np.int64 else values.astype("Int64")
        return same, np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("Int64"), np.ones(len(values), dtype=bool) & _is_present(values)
    numbers = pd.to_numeric(values, errors="coerce")
    numeric = numbers.to_numpy(dtype="float64", na_value=np.nan)
    whole = np.isfinite(numeric) & (numeric == np.round(numeric)) & (np.abs(numeric) < 2**62)
    bad = _is_present(values) & ~whole
    result = pd.Series(np.where(whole, numeric, np.nan), index=values.index)
    return result.astype("Int64"), bad


def _coerce_float(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if values.dtype == np.float64:
        finite = np.isfinite(values.to_numpy()) | values.isna().to_numpy()
        return values.where(finite) if not finite.all() else values, ~finite
    if pd.api.types.is_bool_dtype(values.dtype):
        result = pd.Series(np.nan, index=values.index, dtype="float64")
        return result, _is_present(values)
    numbers = pd.to_numeric(values, errors="coerce")
    numeric = numbers.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(numeric)
    bad = _is_present(values) & ~finite
    return pd.Series(np.where(finite, numeric, np.nan), index=values.index), bad


def _coerce_timestamp(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if str(values.dtype) == "datetime64[us, UTC]":
        return values, np.zeros(len(values), dtype=bool)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        stamps = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        stamps = values.dt.tz_localize("UTC")  # naive timestamps are read as UTC
    elif pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        stamps = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    else:
        stamps = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    bad = _is_present(values) & ~_is_present(stamps)
    return stamps.astype("datetime64[us, UTC]"), bad


def _coerce_boolean(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("boolean"), np.zeros(len(values), dtype=bool)
    text = values.astype("string").str.strip().str.lower()
    mapping = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    mapped = text.map(mapping)
    bad = _is_present(values) & ~_is_present(mapped)
    return mapped.astype("boolean"), bad


def _coerce_category(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        if pd.api.types.is_string_dtype(values.cat.categories.dtype):
            return values, np.zeros(len(values), dtype=bool)
        values = values.astype(object)
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_float_dtype(values.dtype):
        result = pd.Series(pd.Categorical([None] * len(values)), index=values.index)
        return result, _is_present(values)
    if values.dtype == object:
        is_bytes = np.fromiter(
            (isinstance(v, bytes | bytearray) for v in values), bool, len(values)
        )
        if is_bytes.any():
            decoded = values.map(_decode, na_action="ignore")
            bad = _is_present(values) & decoded.isna().to_numpy()
            return decoded.astype("string").astype("category"), bad
    text = values.astype("string")
    return text.astype("category"), np.zeros(len(values), dtype=bool)


def coerce_id(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Ids as text (a categorical): integers, and whole floats as a CSV with gaps gives
    them, as their decimal text; text kept exactly (leading zeros matter). Unreadable:
    booleans, fractions, bytes that are not UTF-8, empty text, text longer than
    `MAX_ID_LENGTH`, with spaces around it or with control characters. Each distinct value
    is checked once."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        distinct = pd.Series(values.cat.categories.to_numpy(dtype=object))
    else:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        distinct = pd.Series(np.asarray(uniques, dtype=object))
    text, bad_distinct = _checked_ids(distinct)
    present = codes >= 0
    bad = np.zeros(len(values), dtype=bool)
    bad[present] = bad_distinct[codes[present]]
    if (
        isinstance(values.dtype, pd.CategoricalDtype)
        and not bad_distinct.any()
        and pd.Index(text).equals(values.cat.categories)
    ):
        return values, bad  # already ids as text: no copy
    categories = pd.Index(text[~bad_distinct], dtype=object).unique()
    recode = np.full(len(text), -1, dtype=np.int64)
    recode[~bad_distinct] = categories.get_indexer(text[~bad_distinct])
    new_codes = np.full(len(values), -1, dtype=np.int64)
    new_codes[present] = recode[codes[present]]
    result = pd.Categorical.from_codes(new_codes, categories=categories)
    return pd.Series(result, index=values.index), bad


def coerce_row_ids(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """An event table's own ids (one per row, never repeated) as Arrow text: the same rules
    as `coerce_id`, without a Python string per row (tens of millions of contacts)."""
    present = _is_present(values)
    try:
        if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
            values.dtype
        ):
            text = pa.array(values, from_pandas=True).cast(pa.string())
            return _arrow_text(text, values.index), np.zeros(len(values), dtype=bool)
        if pd.api.types.is_string_dtype(values.dtype) or (
            values.dtype == object and pd.api.types.infer_dtype(values) == "string"
        ):
            text = pa.array(values, type=pa.string(), from_pandas=True)
            bad = _arrow_not_ids(text) & present
            text = pc.if_else(pa.array(bad), pa.scalar(None, pa.string()), text)
            return _arrow_text(text, values.index), bad
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeError):
        pass  # mixed values, or text that is not Unicode: one at a time below
    ids, bad = coerce_id(values)
    return ids.astype(ROW_ID_DTYPE), bad


def _arrow_text(text: pa.Array, index: pd.Index) -> pd.Series:
    return pd.Series(pd.arrays.ArrowStringArray(text), index=index)


def _arrow_not_ids(text: pa.Array) -> np.ndarray:
    length = pc.utf8_length(text)
    bad = pc.or_(
        pc.or_(pc.less(length, 1), pc.greater(length, MAX_ID_LENGTH)),
        pc.match_substring_regex(text, _NOT_AN_ID),
    )
    return np.asarray(bad.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


_NOT_AN_ID = r"^\s|\s$|[\x00-\x1f\x7f]"


def _checked_ids(distinct: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct raw id as text (object array) and whether it is unreadable as an id."""
    kind = pd.api.types.infer_dtype(distinct, skipna=False)
    if kind == "string":
        text = distinct
    elif kind == "integer":
        text = distinct.astype(str).astype(object)
    else:
        text = distinct.map(_id_text)  # None where it is no id
    try:
        arrow = pa.array(text.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowException, UnicodeError):  # lone surrogates (bytes read leniently): no id
        text = text.map(_unicode_or_none, na_action="ignore")
        arrow = pa.array(text.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    bad = _arrow_not_ids(arrow) | np.asarray(arrow.is_null().to_numpy(zero_copy_only=False))
    return text.to_numpy(dtype=object), bad


def _unicode_or_none(value: str) -> str | None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def _id_text(value: object) -> str | None:
    """An id's text: text as it is, a whole number as its decimal text, None otherwise."""
    value = _decode(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_) or value is None:
        return None
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return None


def _decode(value: object) -> object:
    """Text from bytes when they are UTF-8, None otherwise (the row goes to quarantine)."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value


def coerce_ids(table: str, column: str, values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """An id column of a contract table as the contract holds it: Arrow text for ids about as
    many as their rows (`ROW_ID_DTYPE`), a categorical of text for ids that repeat."""
    if contract_columns(table)[column] == str(ROW_ID_DTYPE):
        return coerce_row_ids(values)
    return coerce_id(values)


_COERCERS = {
    "int64": _coerce_integer,
    "Int64": _coerce_integer,
    "float64": _coerce_float,
    "datetime64[us, UTC]": _coerce_timestamp,
    "boolean": _coerce_boolean,
    "category": _coerce_category,
}


def coerce_to_contract(table: str, raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cast every contract column of `raw` to its contract dtype.

    Args:
        table: Name of the contract (`accounts`, `payments`, ...).
        raw: The table as read; must hold every contract column.

    Returns:
        The coerced frame (integer columns as nullable `Int64`, so that unreadable values can
        be missing; ids as categoricals of text) and a boolean frame, one column per contract
        column, true where the raw value was present but unreadable as the column's type.
    """
    coerced: dict[str, pd.Series] = {}
    unreadable: dict[str, np.ndarray] = {}
    ids = set(id_columns(table))
    for name, dtype in contract_columns(table).items():
        try:
            if name in ids:
                values, bad = coerce_ids(table, name, raw[name])
            else:
                values, bad = _COERCERS[dtype](raw[name])
        except (TypeError, ValueError, UnicodeError, OverflowError) as error:
            # a column of a storage type we cannot read value by value (binary, nested, ...)
            raise ContractError(
                f"{table}.parquet: column {name} cannot be read as {dtype} ({type(error).__name__})"
            ) from None
        coerced[name] = values
        unreadable[name] = bad
    extra = [column for column in raw.columns if column not in coerced]
    frame = pd.DataFrame(coerced, index=raw.index)
    if extra:
        frame = pd.concat([frame, raw[extra]], axis=1)
    return frame, pd.DataFrame(unreadable, index=raw.index)


def finalize_dtypes(table: str, valid: pd.DataFrame) -> pd.DataFrame:
    """Give valid rows the exact contract dtypes (non-null integer columns back to int64)."""
    casts = {
        name: dtype
        for name, dtype in contract_columns(table).items()
        if dtype == "int64" and valid[name].dtype != np.int64
    }
    return valid.astype(casts) if casts else valid
