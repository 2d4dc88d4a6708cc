"""Working with id columns, which are categoricals of text (see `schemas.MAX_ID_LENGTH`)."""

from __future__ import annotations

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
