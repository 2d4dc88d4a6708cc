"""The Feast feature store of a portfolio: apply, materialize, training sets, online reads.

Layout under a portfolio folder DIR:
- `DIR/features/account/as_of=....parquet`, `DIR/features/debtor/...`: snapshots (offline data);
- `DIR/feature_store/`: `feature_store.yaml`, the registry and the SQLite online store.

The offline store is Feast's DuckDB store (Feast's default file store silently drops entity
rows; DuckDB keeps every row). Training sets default to a direct as-of join over the same
snapshots and TTLs, which measured fastest (see README); both count rows in and out.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts.settings import FeatureStoreSettings, get_settings
from features.catalog import ALL_FEATURES
from features.snapshot import micros
from pipelines import crash_point

SNAPSHOT_FOLDER = "features"
STORE_FOLDER = "feature_store"
PROJECT = "cobranza"
ROW_ID = "__row"


class FeatureStoreError(RuntimeError):
    """The feature store cannot do what was asked (no snapshots, unknown service, lost rows)."""


def snapshot_root(folder: Path) -> Path:
    return Path(folder) / SNAPSHOT_FOLDER


def _quiet_feast() -> None:
    # Feast and its dependencies warn about their own internals at import and on every call;
    # none of these warnings concerns our data.
    for module in ("feast", "ibis", "duckdb", "pyarrow", "typeguard", "dask"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*")


def repo_config(folder: Path, settings: FeatureStoreSettings | None = None) -> Any:
    """Feast `RepoConfig` for a portfolio folder (embedded SQLite online store by default)."""
    _quiet_feast()
    from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
    from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
    from feast.repo_config import RepoConfig

    settings = settings or get_settings().feature_store
    store_dir = Path(folder).resolve() / STORE_FOLDER
    store_dir.mkdir(parents=True, exist_ok=True)
    online: Any
    if settings.online_store == "redis":
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        if settings.redis_connection_string is None:
            raise FeatureStoreError("online_store is redis but no redis_connection_string is set")
        online = RedisOnlineStoreConfig(
            connection_string=settings.redis_connection_string.get_secret_value()
        )
    else:
        online = SqliteOnlineStoreConfig(path=str(store_dir / "online.db"))
    return RepoConfig(
        project=PROJECT,
        registry=str(store_dir / "registry.db"),
        provider="local",
        offline_store=DuckDBOfflineStoreConfig(),
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=str(store_dir),
    )


def write_store_yaml(folder: Path) -> Path:
    """A `feature_store.yaml` so the Feast CLI can inspect the store (`feast -c DIR ...`)."""
    store_dir = Path(folder).resolve() / STORE_FOLDER
    path = store_dir / "feature_store.yaml"
    path.write_text(
        f"project: {PROJECT}\n"
        f"registry: {store_dir / 'registry.db'}\n"
        "provider: local\n"
        "offline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {store_dir / 'online.db'}\n"
        "entity_key_serialization_version: 3\n"
    )
    return path


def open_store(folder: Path) -> Any:
    """The portfolio's `feast.FeatureStore`."""
    from feast import FeatureStore

    return FeatureStore(config=repo_config(folder))


def apply_repository(folder: Path) -> Any:
    """Register entities, sources, views and services (idempotent); returns the store."""
    from features.repo.definitions import feature_repository

    store = open_store(folder)
    store.apply(feature_repository(snapshot_root(folder).resolve()))
    write_store_yaml(folder)
    return store


def _registered_store(folder: Path) -> Any:
    """The store, applying the repository only if the registry does not exist yet."""
    if (Path(folder) / STORE_FOLDER / "registry.db").is_file():
        return open_store(folder)
    return apply_repository(folder)


def snapshot_times(folder: Path, entity: str = "account") -> list[pd.Timestamp]:
    """As-of times of the snapshots on disk, oldest first."""
    root = snapshot_root(folder) / entity
    times = []
    for path in root.glob("as_of=*.parquet"):
        stamp = path.stem.removeprefix("as_of=")
        times.append(pd.Timestamp(stamp.replace("_", ":"), tz="UTC"))
    return sorted(times)


MATERIALIZE_CHUNK_ROWS = 20_000


def materialize_latest(
    folder: Path, progress: Callable[[int, int], None] | None = None
) -> pd.Timestamp:
    """Load the newest snapshot of every view into the online store; returns its as-of time.

    Rows go through Feast's `write_to_online_store` a chunk at a time: Feast's `materialize`
    builds every row of the time range in memory at once, which does not fit for a million
    accounts, while chunks keep memory flat whatever the portfolio size.
    """
    times = snapshot_times(folder)
    if not times:
        raise FeatureStoreError(
            f"{snapshot_root(folder)}: no snapshots (run `cobranza features build`)"
        )
    latest = times[-1]
    store = apply_repository(folder)
    name = "as_of=" + latest.strftime("%Y-%m-%dT%H_%M_%S") + ".parquet"
    views = [("account", "account_features"), ("debtor", "debtor_features")]
    files = [(snapshot_root(folder) / entity / name, view) for entity, view in views]
    total = sum(pq.ParquetFile(path).metadata.num_rows for path, _ in files)
    done = 0
    for path, view in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=MATERIALIZE_CHUNK_ROWS):
            frame = batch.to_pandas()
            with contextlib.redirect_stdout(io.StringIO()):  # Feast prints its own progress
                store.write_to_online_store(view, frame)
            done += len(frame)
            crash_point("after_first_commit")
            if progress is not None:
                progress(done, total)
    return latest


def _service(store: Any, name: str) -> Any:
    try:
        return store.get_feature_service(name)
    except Exception as error:  # Feast raises its own not-found types
        known = sorted(service.name for service in store.list_feature_services())
        raise FeatureStoreError(
            f"unknown feature service {name!r}; known: {', '.join(known)}"
        ) from error


def _views_of(store: Any, service: Any) -> list[tuple[Any, list[str]]]:
    views = []
    for projection in service.feature_view_projections:
        view = store.get_feature_view(projection.name)
        views.append((view, [feature.name for feature in projection.features]))
    return views


def service_inputs(folder: Path, service: str) -> tuple[list[str], list[str]]:
    """The model inputs of a Feast feature service (in its order) and which are categorical."""
    store = _registered_store(folder)
    names = [
        name for _, view_names in _views_of(store, _service(store, service)) for name in view_names
    ]
    kinds = {spec.name: spec.kind for spec in ALL_FEATURES}
    return names, [name for name in names if kinds.get(name) == "string"]


def training_set(
    folder: Path,
    entity_rows: pd.DataFrame,
    service: str = "debtor_scoring_v1",
    engine: str | None = None,
) -> pd.DataFrame:
    """Point-in-time training set: each entity row gets the latest snapshot at or before its
    `event_timestamp` (within the view's TTL); rows without one keep empty features.

    Args:
        folder: Portfolio folder with built snapshots.
        entity_rows: `account_id`, `debtor_id` (as the service needs), `event_timestamp` (UTC)
            and any label columns, which are carried through unchanged.
        service: Feature service name.
        engine: `direct` or `feast`; defaults to the `training_engine` setting.

    Raises:
        FeatureStoreError: unknown service, or a row was lost or duplicated by the join.
    """
    engine = engine or get_settings().feature_store.training_engine
    store = _registered_store(folder)
    feature_service = _service(store, service)
    rows = entity_rows.reset_index(drop=True).assign(**{ROW_ID: np.arange(len(entity_rows))})
    if "event_timestamp" not in rows.columns:
        raise FeatureStoreError("entity rows need an event_timestamp column (UTC)")
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    if engine == "feast":
        joined = store.get_historical_features(entity_df=rows, features=feature_service).to_df()
    elif engine == "direct":
        joined = _direct_join(store, feature_service, rows)
    else:
        raise FeatureStoreError(f"unknown training engine {engine!r} (direct or feast)")
    if len(joined) != len(rows) or not joined[ROW_ID].is_unique:
        raise FeatureStoreError(
            f"the point-in-time join returned {len(joined)} rows for {len(rows)} entity rows"
        )
    if engine == "feast":  # Feast returns rows in its own order
        joined = joined.sort_values(ROW_ID).reset_index(drop=True)
    del joined[ROW_ID]
    return joined


def _direct_join(store: Any, service: Any, rows: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join with Feast's semantics (latest snapshot at or before the row's time,
    within the view's TTL), one snapshot file at a time, in the rows' own order.

    Each snapshot holds every entity placed by its as-of time, so the latest snapshot before a
    row is the only one that can hold its features: rows are assigned to a snapshot by time,
    then looked up by key in that file alone. Memory stays at one snapshot plus the result.
    Integer features come back as floats (empty where no snapshot applies), as from Feast.
    """
    row_times = micros(rows["event_timestamp"].astype("datetime64[us, UTC]"))
    columns: dict[str, np.ndarray] = {}
    for view, names in _views_of(store, service):
        key = view.entity_columns[0].name
        if key not in rows.columns:
            raise FeatureStoreError(f"entity rows need a {key} column for feature view {view.name}")
        folder = Path(view.batch_source.path)
        files = sorted(folder.glob("as_of=*.parquet"), key=_file_time)
        if not files:
            raise FeatureStoreError(f"{folder}: no snapshots (run `cobranza features build`)")
        stamps = np.array([_file_time(file) for file in files], dtype=np.int64)
        chosen = np.searchsorted(stamps, row_times, side="right") - 1
        ttl = int(pd.Timedelta(view.ttl).total_seconds() * 1e6)
        usable = (chosen >= 0) & (row_times - stamps[np.maximum(chosen, 0)] <= ttl)
        schema = pq.read_schema(files[0])
        for name in names:
            kind = schema.field(name).type
            text = (
                pa.types.is_string(kind)
                or pa.types.is_large_string(kind)
                or pa.types.is_dictionary(kind)
            )
            if pa.types.is_timestamp(kind):
                columns[name] = np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[us]")
            else:
                columns[name] = np.full(
                    len(rows), None if text else np.nan, dtype=object if text else float
                )
        keys = rows[key].to_numpy()
        for index in np.unique(chosen[usable]):
            selected = np.flatnonzero(usable & (chosen == index))
            snapshot = pq.read_table(files[index], columns=[key, *names])
            position = pd.Index(snapshot.column(key).to_numpy()).get_indexer(keys[selected])
            found = position >= 0
            targets, sources = selected[found], position[found]
            for name in names:
                values = snapshot.column(name).to_numpy()
                if values.dtype.kind == "M":
                    values = values.astype("datetime64[us]")
                columns[name][targets] = values[sources]
    features = pd.DataFrame(columns, index=rows.index)
    for name, values in columns.items():
        if values.dtype.kind == "M":
            features[name] = features[name].dt.tz_localize("UTC")
    return pd.concat([rows, features], axis=1)


def _file_time(path: Path) -> int:
    stamp = path.stem.removeprefix("as_of=").replace("_", ":")
    return pd.Timestamp(stamp, tz="UTC").value // 1000


class OnlineFeatures:
    """Reads a feature service's latest values from the online store for given entities.

    With the embedded SQLite online store, rows are read straight from Feast's tables through a
    read-only connection and decoded from Feast's value protos: this skips Feast's per-request
    response building, which costs more than the read itself for a hundred features (p99 above
    2 ms at a million accounts). Other online stores go through `get_online_features`. A test
    checks both paths return the same values.
    """

    def __init__(self, folder: Path, service: str = "debtor_scoring_v1") -> None:
        self.store = open_store(folder)
        self.service = _service(self.store, service)
        self._views = [
            (view, view.entity_columns[0].name, names)
            for view, names in _views_of(self.store, self.service)
        ]
        self._connection: sqlite3.Connection | None = None
        online = self.store.config.online_store
        if getattr(online, "type", "") == "sqlite" and Path(online.path).is_file():
            uri = f"file:{Path(online.path).resolve()}?mode=ro"
            self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def get(self, entity_rows: Sequence[dict[str, int]]) -> dict[str, list[Any]]:
        """Column name -> values, one per entity row (None where unknown)."""
        if self._connection is None:
            return self.get_through_feast(entity_rows)
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        result: dict[str, list[Any]] = {}
        for column in entity_rows[0] if entity_rows else ():  # echo the keys, as Feast does
            result[column] = [row[column] for row in entity_rows]
        for view, key, names in self._views:
            ids = [int(row[key]) for row in entity_rows]
            blobs = [
                serialize_entity_key(
                    EntityKey(join_keys=[key], entity_values=[Value(int64_val=value)]),
                    entity_key_serialization_version=3,
                )
                for value in ids
            ]
            table = compute_table_id(self.store.config.project, view)
            marks = ",".join("?" * len(blobs))
            found: dict[bytes, dict[str, bytes]] = {}
            for chunk_start in range(0, len(blobs), 500):  # SQLite's bound-parameter limit
                chunk = blobs[chunk_start : chunk_start + 500]
                marks = ",".join("?" * len(chunk))
                query = (
                    f'SELECT entity_key, feature_name, value FROM "{table}" '
                    f"WHERE entity_key IN ({marks})"
                )
                for entity_key, feature, value in self._connection.execute(query, chunk):
                    found.setdefault(entity_key, {})[feature] = value
            for name in names:
                result[name] = [_decode(found.get(blob, {}).get(name)) for blob in blobs]
        return result

    def get_through_feast(self, entity_rows: Sequence[dict[str, int]]) -> dict[str, list[Any]]:
        """The same values through Feast's `get_online_features` (any online store)."""
        return self.store.get_online_features(
            features=self.service, entity_rows=list(entity_rows)
        ).to_dict()


def _decode(blob: bytes | None) -> Any:
    """A Feast value proto as a Python value (None when missing)."""
    if blob is None:
        return None
    from feast.protos.feast.types.Value_pb2 import Value

    value = Value.FromString(blob)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    if kind == "unix_timestamp_val":
        seconds = value.unix_timestamp_val
        if abs(seconds) > 10**11:  # Feast's marker for a missing timestamp
            return None
        return datetime.fromtimestamp(seconds, tz=UTC)
    return getattr(value, kind)


# ----- bulk reads of the whole online store ---------------------------------------------------
# Feast's Value proto tags (field number << 3 | wire type) of the scalar kinds decoded in bulk.
_DOUBLE_TAG, _FLOAT_TAG = 0x29, 0x35
_VARINT_TAGS = {0x18: "int32_val", 0x20: "int64_val", 0x38: "bool_val", 0x40: "unix_timestamp_val"}
_MISSING_TIMESTAMP = 10**11  # Feast writes a huge sentinel for a missing timestamp


def decode_value_column(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Many serialized Feast `Value` protos as one array: float64 when every value is a
    number, bool or timestamp (seconds since the epoch; missing as NaN), otherwise objects.

    Numbers are decoded with numpy straight from the protobuf wire format (a double is its tag
    and 8 little-endian bytes; integers are varints), which is about 50 times faster than
    parsing each proto; any other kind goes through `Value.FromString`. A test checks the
    result against protobuf on every kind Feast writes.
    """
    count = len(blobs)
    lengths = np.fromiter((0 if b is None else len(b) for b in blobs), dtype=np.int64, count=count)
    buffer = np.frombuffer(b"".join(b for b in blobs if b), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    values = np.full(count, np.nan)
    present = lengths > 0
    tags = np.zeros(count, dtype=np.int64)
    tags[present] = buffer[starts[present]]
    done = ~present
    double = present & (tags == _DOUBLE_TAG) & (lengths == 9)
    if double.any():
        payload = buffer[starts[double][:, None] + np.arange(1, 9)]
        values[double] = payload.copy().view("<f8").ravel()
        done |= double
    single = present & (tags == _FLOAT_TAG) & (lengths == 5)
    if single.any():
        payload = buffer[starts[single][:, None] + np.arange(1, 5)]
        values[single] = payload.copy().view("<f4").ravel()
        done |= single
    for tag, kind in _VARINT_TAGS.items():
        for length in np.unique(lengths[present & (tags == tag)]):
            rows = present & (tags == tag) & (lengths == length)
            payload = buffer[starts[rows][:, None] + np.arange(1, length)].astype(np.uint64)
            shifts = (7 * np.arange(length - 1)).astype(np.uint64)
            number = np.bitwise_or.reduce((payload & np.uint64(0x7F)) << shifts, axis=1)
            if kind == "bool_val":
                decoded = (number != 0).astype(float)
            else:
                signed = number.view(np.int64)
                if kind == "int32_val":  # negative int32 varints are sign-extended to 64 bits
                    signed = signed.astype(np.int32)
                decoded = signed.astype(float)
                if kind == "unix_timestamp_val":
                    decoded[np.abs(signed) > _MISSING_TIMESTAMP] = np.nan
            values[rows] = decoded
            done |= rows
    if done.all():
        return values
    mixed = values.astype(object)
    mixed[np.isnan(values) & done] = None
    for position in np.flatnonzero(~done):
        mixed[position] = _decode(blobs[position])
    return mixed


class OnlineSnapshot:
    """Every entity's latest values in a portfolio's SQLite online store, read in bulk: what
    the scoring service keeps in memory to score and rank a whole portfolio without one read
    per account. `stamp` changes whenever the online store file is written (a new
    materialization), so a reader can tell when to read again."""

    def __init__(self, folder: Path, service: str = "debtor_scoring_v1") -> None:
        self.store = open_store(folder)
        self.service = _service(self.store, service)
        online = self.store.config.online_store
        if getattr(online, "type", "") != "sqlite":
            raise FeatureStoreError("bulk online reads need the embedded SQLite online store")
        self.path = Path(online.path)

    def stamp(self) -> tuple[int, int]:
        """(modification time in ns, size) of the online store file."""
        status = self.path.stat()
        return status.st_mtime_ns, status.st_size

    def read(self, entity_ids: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
        """For each entity key (`account_id`, `debtor_id`) with the ids wanted: a frame of the
        service's features indexed by id (ids without values are absent)."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        uri = f"file:{self.path.resolve()}?mode=ro"
        frames: dict[str, list[pd.DataFrame]] = {}
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            for view, names in _views_of(self.store, self.service):
                key = view.entity_columns[0].name
                ids = np.asarray(entity_ids.get(key, []), dtype=np.int64)
                id_of = {
                    serialize_entity_key(
                        EntityKey(join_keys=[key], entity_values=[Value(int64_val=int(i))]),
                        entity_key_serialization_version=3,
                    ): int(i)
                    for i in ids
                }
                table = compute_table_id(self.store.config.project, view)
                rows = pd.DataFrame(
                    connection.execute(
                        f'SELECT entity_key, feature_name, value FROM "{table}"'
                    ).fetchall(),
                    columns=["entity_key", "feature", "value"],
                )
                rows["id"] = rows["entity_key"].map(id_of)
                rows = rows[rows["id"].notna() & rows["feature"].isin(names)]
                index = pd.Index(sorted(rows["id"].astype(np.int64).unique()), name=key)
                columns = {}
                for name, group in rows.groupby("feature", sort=False):
                    decoded = decode_value_column(group["value"].tolist())
                    column = pd.Series(decoded, index=group["id"].astype(np.int64).to_numpy())
                    columns[str(name)] = column.reindex(index)
                frame = pd.DataFrame(
                    {n: columns.get(n, pd.Series(np.nan, index=index)) for n in names}
                )
                frames.setdefault(key, []).append(frame)
        return {key: pd.concat(parts, axis=1) for key, parts in frames.items()}
