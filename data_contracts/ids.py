"""Working with id columns, which are categoricals of text (see `schemas.MAX_ID_LENGTH`)."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def id_codes(keys: pd.Series, ids: pd.Index) -> np.ndarray:
    """Position in `ids` of each key (-1 where it is missing or unknown), hashing each
    distinct key once when the keys are a categorical, in Arrow when they are Arrow text."""
    if isinstance(keys.dtype, pd.CategoricalDtype):
        codes = keys.cat.codes.to_numpy()
        at = ids.get_indexer(keys.cat.categories)
        found = np.full(len(keys), -1, dtype=np.intp)
        present = codes >= 0
        found[present] = at[codes[present]]
        return found
    if isinstance(keys.dtype, pd.StringDtype) and keys.dtype.storage == "pyarrow":
        # Arrow text (offers' and events' own ids): hashed in Arrow, no Python string per key
        at = pc.index_in(pa.array(keys.array), value_set=_arrow_text(ids))
        return np.asarray(at.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.intp)
    return np.asarray(ids.get_indexer(pd.Index(keys.to_numpy())))


def _arrow_text(ids: pd.Index) -> pa.Array:
    if isinstance(ids.dtype, pd.StringDtype) and ids.dtype.storage == "pyarrow":
        return pa.array(ids.array)
    return pa.array(np.asarray(ids, dtype=object), type=pa.string(), from_pandas=True)


def lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """`values` (indexed by id) of each key, NaN or NaT where a key is unknown: values keep
    their own dtype (integers become floats), unlike a categorical's `map`, which returns a
    categorical."""
    positions = id_codes(keys, pd.Index(values.index))
    return pd.Series(values.array.take(positions, allow_fill=True), index=keys.index)


def id_positions(keys: pd.Series, ids: pd.Series) -> np.ndarray:
    """Row position in the column `ids` (each id once) of each key, -1 where it is missing or
    unknown. Categoricals of the same categories (a table and its parent, as validation leaves
    them, or as read from files written together) are matched by their codes alone; other
    categoricals hash each distinct id once."""
    if not (
        isinstance(keys.dtype, pd.CategoricalDtype) and isinstance(ids.dtype, pd.CategoricalDtype)
    ):
        return id_codes(keys, pd.Index(ids.to_numpy()))
    categories = ids.cat.categories
    id_code = ids.cat.codes.to_numpy()
    row_of_category = np.full(len(categories), -1, dtype=np.intp)
    present = np.flatnonzero(id_code >= 0)
    row_of_category[id_code[present]] = present
    key_categories = keys.cat.categories
    if key_categories is not categories and not key_categories.equals(categories):
        row_of_category = _taken(row_of_category, categories.get_indexer(key_categories))
    return _taken(row_of_category, keys.cat.codes.to_numpy())


def _taken(values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """values[at], -1 where `at` is -1: one gather, from `values` with -1 appended (so -1
    picks it), in 32 bits when that holds every position."""
    kind = np.int32 if len(values) < 2**31 else np.intp
    return np.append(values, -1).astype(kind)[at]


def share_categories(keys: pd.Series, ids: pd.Series) -> pd.Series:
    """Categorical `keys` holding the categories of the categorical `ids` (one copy of each id
    in memory); keys not among them become missing. Equal categories (files written
    together) are taken over as they are, without hashing an id."""
    categories = ids.cat.categories
    if keys.cat.categories is categories:
        return keys
    if keys.cat.categories.equals(categories):
        dtype = cast(pd.CategoricalDtype, ids.dtype)
        shared = pd.Categorical.from_codes(keys.cat.codes.to_numpy(), dtype=dtype)
        return pd.Series(shared, index=keys.index, name=keys.name)
    return keys.cat.set_categories(categories)
