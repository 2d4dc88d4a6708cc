"""Bring a raw table to its contract's dtypes, one value at a time.

A value that cannot be read as its column's type (text in an amount column, a date that is no
date) is not allowed to sink the whole file: it becomes missing, and its row is flagged so the
validator quarantines it under the rule `type`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.schemas import contract_columns


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


def _decode(value: object) -> object:
    """Text from bytes when they are UTF-8, None otherwise (the row goes to quarantine)."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value


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
        be missing) and a boolean frame, one column per contract column, true where the raw
        value was present but unreadable as the column's type.
    """
    coerced: dict[str, pd.Series] = {}
    unreadable: dict[str, np.ndarray] = {}
    for name, dtype in contract_columns(table).items():
        try:
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
