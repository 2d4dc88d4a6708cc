"""The Feast feature store of a portfolio: apply, materialize, training sets, online reads.

Layout under a portfolio folder DIR:
- `DIR/features/account/as_of=....parquet`, `DIR/features/debtor/...`: snapshots (offline data);
- `DIR/feature_store/`: `feature_store.yaml`, the registry, and under `online/` the SQLite
  online store: generations (one file per materialization) and `published.json`, which names
  the complete one readers use.

Writers (apply, materialize) take turns and publish atomically, so a process killed at any
instant leaves readers the last complete registry and online store, and the next run deletes
what it left.

The offline store is Feast's DuckDB store (Feast's default file store silently drops entity
rows; DuckDB keeps every row). Training sets default to a direct as-of join over the same
snapshots and TTLs, which measured fastest (see README); both count rows in and out.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
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
from pipelines import crash_point, folder_lock

SNAPSHOT_FOLDER = "features"
STORE_FOLDER = "feature_store"
REGISTRY = "registry.db"
PROJECT = "cobranza"
ROW_ID = "__row"


class FeatureStoreError(RuntimeError):
    """The feature store cannot do what was asked (no snapshots, unknown service, lost rows)."""


def snapshot_root(folder: Path) -> Path:
    return Path(folder) / SNAPSHOT_FOLDER


def _import_feast() -> None:
    """Import Feast, once per process, quietly and without typeguard's import-time cost.

    Feast decorates its API classes with typeguard's `@typechecked`, which parses and compiles
    a module's source again for every decorated method while Feast is imported: `import feast`
    took 10 s here, 3.7 s without it, in every process that touches the store (each command,
    each service worker). While Feast's own modules load, the decorator hands back what it
    decorates, as it does under `python -O`: Feast's classes skip typeguard's run-time checks of
    their arguments; everything else in Feast is unchanged.
    """
    # Feast and its dependencies warn about their own internals at import and on every call;
    # none of these warnings concerns our data.
    for module in ("feast", "ibis", "duckdb", "pyarrow", "typeguard", "dask"):
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
        warnings.filterwarnings("ignore", category=UserWarning, module=module)
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table.*")
    if "feast" in sys.modules:
        return
    import typeguard

    checked = typeguard.typechecked
    typeguard.typechecked = _unchecked  # type: ignore[assignment]
    try:
        import feast  # noqa: F401
    finally:
        typeguard.typechecked = checked


def _unchecked(target: Any = None, **_options: Any) -> Any:
    """typeguard's `typechecked` as a no-op, with or without options."""
    return _unchecked if target is None else target


def repo_config(
    folder: Path,
    settings: FeatureStoreSettings | None = None,
    online_path: Path | None = None,
    registry: Path | None = None,
) -> Any:
    """Feast `RepoConfig` for a portfolio folder (embedded SQLite online store by default).

    The SQLite online store is the published generation (see `published_generation`) unless
    `online_path` names another file, such as a generation being written; `registry` likewise
    defaults to the portfolio's `registry.db`.
    """
    _import_feast()
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
        online = SqliteOnlineStoreConfig(path=str(online_path or _reader_path(folder)))
    return RepoConfig(
        project=PROJECT,
        registry=str(registry or store_dir / REGISTRY),
        provider="local",
        offline_store=DuckDBOfflineStoreConfig(),
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=str(store_dir),
    )


def write_store_yaml(folder: Path) -> Path:
    """A `feature_store.yaml` so the Feast CLI can inspect the store (`feast -c DIR ...`),
    naming the published online store generation; replaced atomically."""
    store_dir = Path(folder).resolve() / STORE_FOLDER
    path = store_dir / "feature_store.yaml"
    _write_atomically(
        path,
        f"project: {PROJECT}\n"
        f"registry: {store_dir / REGISTRY}\n"
        "provider: local\n"
        "offline_store:\n  type: duckdb\n"
        f"online_store:\n  type: sqlite\n  path: {_reader_path(folder)}\n"
        "entity_key_serialization_version: 3\n",
    )
    return path


def open_store(folder: Path, online_path: Path | None = None) -> Any:
    """The portfolio's `feast.FeatureStore` (reading the published online store generation)."""
    _import_feast()
    from feast import FeatureStore

    return FeatureStore(config=repo_config(folder, online_path=online_path))


def apply_repository(folder: Path) -> Any:
    """Register entities, sources, views and services (idempotent); returns the store.

    Writers of a store take turns (a lock on `DIR/feature_store/`), and the registry is
    replaced atomically, so a run killed meanwhile leaves the previous registry whole; online
    store files that killed materializations left are deleted.
    """
    with _store_lock(folder):
        _remove_unpublished(folder)  # what killed runs left
        _apply(folder, None)
        write_store_yaml(folder)
    return open_store(folder)


def _apply(folder: Path, online_path: Path | None) -> None:
    """Apply the repository to a copy of the registry, then rename it over the registry (Feast
    rewrites its registry file in place). Tables go to `online_path` (a generation being
    written), else to a scratch file, never to a published generation. Hold the store lock."""
    _import_feast()
    from feast import FeatureStore

    from features.repo.definitions import feature_repository

    store_dir = Path(folder).resolve() / STORE_FOLDER
    registry, scratch = store_dir / REGISTRY, store_dir / f".{REGISTRY}.partial"
    if registry.is_file():
        shutil.copyfile(registry, scratch)
    online = online_path
    if online is None:
        online = online_folder(folder) / ".apply.db"
        online.parent.mkdir(parents=True, exist_ok=True)
    config = repo_config(folder, online_path=online, registry=scratch)
    try:
        store = FeatureStore(config=config)
        store.apply(feature_repository(snapshot_root(folder).resolve()))
        del store  # and with it, its connection to the online store file
        _fsync(scratch)
        os.replace(scratch, registry)
        _fsync(store_dir)
    finally:
        scratch.unlink(missing_ok=True)
        if online_path is None:
            _remove_database(online)


def _registered_store(folder: Path) -> Any:
    """The store, applying the repository only if the registry does not exist yet."""
    if (Path(folder) / STORE_FOLDER / REGISTRY).is_file():
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


# ----- online store generations -----------------------------------------------------------
# A materialization writes a new SQLite file (a generation) under DIR/feature_store/online/,
# and publishes it when complete by atomically replacing `published.json`, which names it.
# Readers open only the published generation, so they never see a store being written (a
# hot journal, or one view of the new snapshot beside the other of the old one); a killed
# run leaves an unpublished file that the next run deletes. With Redis the same marker would
# name a key prefix written in full before the marker key is set (not implemented).
ONLINE_FOLDER = "online"
PUBLISHED = "published.json"
LEGACY_ONLINE = "online.db"
"""The single online store file of earlier versions (written in place; removed on publish)."""


@dataclass(frozen=True)
class OnlineGeneration:
    """One complete copy of the SQLite online store, as a materialization published it."""

    name: str
    """File name, unique per materialization (time written and process id)."""
    path: Path
    as_of: str
    """As-of time of the snapshot it holds (ISO 8601)."""


def online_folder(folder: Path) -> Path:
    return Path(folder).resolve() / STORE_FOLDER / ONLINE_FOLDER


def published_generation(folder: Path) -> OnlineGeneration | None:
    """The online store generation readers use (None before the first materialization)."""
    marker = online_folder(folder) / PUBLISHED
    try:
        record = json.loads(marker.read_text())
        name, as_of = str(record["generation"]), str(record["as_of"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise FeatureStoreError(
            f"{marker}: unreadable ({type(error).__name__}); "
            "rerun `cobranza features materialize` to publish the online store again"
        ) from None
    if Path(name).name != name:
        raise FeatureStoreError(f"{marker}: generation {name!r} is not a file name")
    return OnlineGeneration(name, marker.parent / name, as_of)


def _reader_path(folder: Path) -> Path:
    """The published generation's file, or a name no writer uses before there is one."""
    try:
        generation = published_generation(folder)
    except FeatureStoreError:
        generation = None
    return generation.path if generation else online_folder(folder) / "unpublished.db"


def open_published(folder: Path, attempts: int = 3) -> tuple[OnlineGeneration, sqlite3.Connection]:
    """A read-only connection to the published generation, opened at once, so a newer
    publication deleting this file meanwhile does not disturb the reads (the open file stays
    readable); retried when a publication replaces it between finding and opening it."""
    for _ in range(attempts):
        generation = published_generation(folder)
        if generation is None:
            raise FeatureStoreError(
                f"{online_folder(folder)}: no online store published yet "
                "(run `cobranza features materialize`)"
            )
        try:
            return generation, _connect_published(generation.path)
        except sqlite3.OperationalError as error:
            if published_generation(folder) == generation:
                raise FeatureStoreError(
                    f"{generation.path}: the published online store cannot be opened "
                    f"({error}); rerun `cobranza features materialize`"
                ) from None
    raise FeatureStoreError(f"{online_folder(folder)}: the online store kept changing; try again")


def _connect_published(path: Path) -> sqlite3.Connection:
    """Read-only; `immutable`, since a published generation is never written again (no locks,
    no journal to look for)."""
    uri = f"{Path(path).resolve().as_uri()}?mode=ro&immutable=1"
    return sqlite3.connect(uri, uri=True, check_same_thread=False)


MATERIALIZE_CHUNK_ROWS = 20_000


def materialize_latest(
    folder: Path, progress: Callable[[int, int], None] | None = None
) -> pd.Timestamp:
    """Load the newest snapshot of every view into the online store; returns its as-of time.

    With SQLite, a new generation file is written in full and then published atomically;
    unpublished files of killed runs and superseded generations are deleted. Rows go through
    Feast's `write_to_online_store` a chunk at a time: Feast's `materialize` builds every row
    of the time range in memory at once, which does not fit for a million accounts, while
    chunks keep memory flat whatever the portfolio size.
    """
    times = snapshot_times(folder)
    if not times:
        raise FeatureStoreError(
            f"{snapshot_root(folder)}: no snapshots (run `cobranza features build`)"
        )
    latest = times[-1]
    sqlite_store = get_settings().feature_store.online_store == "sqlite"
    with _store_lock(folder):
        online = online_folder(folder)
        online.mkdir(parents=True, exist_ok=True)
        _remove_unpublished(folder)  # what killed runs left
        path = None
        if sqlite_store:
            path = online / f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{os.getpid()}.db"
        _apply(folder, path)
        rows = _write_latest(open_store(folder, online_path=path), folder, latest, progress)
        if path is not None:
            _publish(folder, path, latest, rows)
            _remove_unpublished(folder)  # the generation it replaces
        write_store_yaml(folder)
    return latest


def _write_latest(
    store: Any, folder: Path, latest: pd.Timestamp, progress: Callable[[int, int], None] | None
) -> dict[str, int]:
    """Write the snapshot of `latest` of every view through `store`; rows per view."""
    name = "as_of=" + latest.strftime("%Y-%m-%dT%H_%M_%S") + ".parquet"
    views = [("account", "account_features"), ("debtor", "debtor_features")]
    files = [(snapshot_root(folder) / entity / name, view) for entity, view in views]
    total = sum(pq.ParquetFile(path).metadata.num_rows for path, _ in files)
    done, rows = 0, {}
    for path, view in files:
        rows[view] = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=MATERIALIZE_CHUNK_ROWS):
            frame = batch.to_pandas()
            with contextlib.redirect_stdout(io.StringIO()):  # Feast prints its own progress
                store.write_to_online_store(view, frame)
            done += len(frame)
            rows[view] += len(frame)
            crash_point("after_first_commit")
            if progress is not None:
                progress(done, total)
    return rows


def _publish(folder: Path, path: Path, as_of: pd.Timestamp, rows: dict[str, int]) -> None:
    """Make a complete generation the one readers open: flush it to disk, then replace the
    marker atomically (a reader sees the old marker or the new one, never a partial one)."""
    _fsync(path)
    record = {
        "generation": path.name,
        "as_of": as_of.isoformat(),
        "rows": rows,
        "published_at": datetime.now(UTC).isoformat(),
    }
    _write_atomically(online_folder(folder) / PUBLISHED, json.dumps(record, indent=2) + "\n")


def _remove_unpublished(folder: Path) -> None:
    """Delete every online store file but the published generation: unpublished generations
    of killed runs, superseded ones, scratch files, and the legacy `online.db` once a
    generation is published. Only under the store lock (no writer is using them)."""
    online = online_folder(folder)
    try:
        published = published_generation(folder)
    except FeatureStoreError:  # a damaged marker: everything goes, a new generation follows
        published = None
    keep = {PUBLISHED, published.name if published else ""}
    for path in online.iterdir() if online.is_dir() else ():
        if path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)
    if published is not None:
        _remove_database(online.parent / LEGACY_ONLINE)


def _remove_database(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextlib.contextmanager
def _store_lock(folder: Path) -> Iterator[None]:
    """Writers of a portfolio's feature store (apply, materialize) take turns."""
    store_dir = Path(folder).resolve() / STORE_FOLDER
    store_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(store_dir):
        yield


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's (its entries') data to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


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
    compact: bool = False,
) -> pd.DataFrame:
    """Point-in-time training set: each entity row gets the latest snapshot at or before its
    `event_timestamp` (within the view's TTL); rows without one keep empty features.

    Args:
        folder: Portfolio folder with built snapshots.
        entity_rows: `account_id`, `debtor_id` (as the service needs), `event_timestamp` (UTC)
            and any label columns, which are carried through unchanged.
        service: Feature service name.
        engine: `direct` or `feast`; defaults to the `training_engine` setting.
        compact: numeric features as float32 and text features as categoricals (half the
            memory of float64, none of one string object per row), as training wants them;
            the direct engine only.

    Raises:
        FeatureStoreError: unknown service, or a row was lost or duplicated by the join.
    """
    engine = engine or get_settings().feature_store.training_engine
    store = _registered_store(folder)
    feature_service = _service(store, service)
    if "event_timestamp" not in entity_rows.columns:
        raise FeatureStoreError("entity rows need an event_timestamp column (UTC)")
    rows = entity_rows.reset_index(drop=True)
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    if engine == "direct":  # the rows' own order and ids: no copy of the joined frame
        joined = _direct_join(store, feature_service, rows, np.float32 if compact else np.float64)
        if len(joined) != len(rows):
            raise FeatureStoreError(
                f"the point-in-time join returned {len(joined)} rows for {len(rows)} entity rows"
            )
        return joined
    if engine != "feast":
        raise FeatureStoreError(f"unknown training engine {engine!r} (direct or feast)")
    if compact:
        raise FeatureStoreError("compact training sets come from the direct engine only")
    rows[ROW_ID] = np.arange(len(rows))
    # ids as plain text, as the snapshots hold them; given back as they came
    keys = [k for k in rows.columns if isinstance(rows[k].dtype, pd.CategoricalDtype)]
    given = {key: rows[key].array for key in keys if key in ("account_id", "debtor_id")}
    rows = rows.assign(**{key: rows[key].astype(object) for key in given})
    joined = store.get_historical_features(entity_df=rows, features=feature_service).to_df()
    if len(joined) != len(rows) or not joined[ROW_ID].is_unique:
        raise FeatureStoreError(
            f"the point-in-time join returned {len(joined)} rows for {len(rows)} entity rows"
        )
    joined = joined.sort_values(ROW_ID).reset_index(drop=True)  # Feast has its own order
    del joined[ROW_ID]
    return joined.assign(**{key: pd.Series(ids, index=joined.index) for key, ids in given.items()})


def _direct_join(
    store: Any, service: Any, rows: pd.DataFrame, dtype: type = np.float64
) -> pd.DataFrame:
    """Point-in-time join with Feast's semantics (latest snapshot at or before the row's time,
    within the view's TTL), one snapshot file at a time, in the rows' own order.

    Each snapshot holds every entity placed by its as-of time, so the latest snapshot before a
    row is the only one that can hold its features: rows are assigned to a snapshot by time,
    then looked up by key in that file alone. Memory stays at one snapshot plus the result.
    Integer features come back as floats (empty where no snapshot applies), as from Feast;
    with `dtype` float32 the numbers are float32 and the text features categoricals.
    """
    compact = dtype == np.float32
    row_times = micros(rows["event_timestamp"].astype("datetime64[us, UTC]"))
    plan = []
    for view, names in _views_of(store, service):
        key = view.entity_columns[0].name
        if key not in rows.columns:
            raise FeatureStoreError(f"entity rows need a {key} column for feature view {view.name}")
        folder = Path(view.batch_source.path)
        files = sorted(folder.glob("as_of=*.parquet"), key=_file_time)
        if not files:
            raise FeatureStoreError(f"{folder}: no snapshots (run `cobranza features build`)")
        plan.append((view, key, names, files, pq.read_schema(files[0])))
    order = [name for _, _, names, _, _ in plan for name in names]
    kinds = {name: schema.field(name).type for *_, names, _, schema in plan for name in names}
    numeric = [name for name in order if _is_number(kinds[name])]
    slot = {name: index for index, name in enumerate(numeric)}
    # the numeric features in one block, filled in place: the frame is made on it, not copied
    block = np.full((len(numeric), len(rows)), np.nan, dtype=dtype)
    others: dict[str, np.ndarray] = {
        name: np.full(len(rows), np.datetime64("NaT"), dtype="datetime64[us]")
        if pa.types.is_timestamp(kinds[name])
        else np.full(len(rows), None, dtype=object)
        for name in order
        if name not in slot
    }
    for view, key, names, files, _ in plan:
        stamps = np.array([_file_time(file) for file in files], dtype=np.int64)
        chosen = np.searchsorted(stamps, row_times, side="right") - 1
        ttl = int(pd.Timedelta(view.ttl).total_seconds() * 1e6)
        usable = (chosen >= 0) & (row_times - stamps[np.maximum(chosen, 0)] <= ttl)
        keys = rows[key].to_numpy()
        for index in np.unique(chosen[usable]):
            selected = np.flatnonzero(usable & (chosen == index))
            snapshot = pq.read_table(files[index], columns=[key, *names])
            position = pd.Index(snapshot.column(key).to_numpy()).get_indexer(keys[selected])
            found = position >= 0
            targets, sources = selected[found], position[found]
            for name in names:
                values = snapshot.column(name).to_numpy()
                if name in slot:
                    block[slot[name], targets] = values[sources]
                    continue
                if values.dtype.kind == "M":
                    values = values.astype("datetime64[us]")
                others[name][targets] = values[sources]
            del snapshot
    features = pd.DataFrame(block.T, index=rows.index, columns=numeric, copy=False)
    for name in order:  # the other features, each where the service lists it
        if name in others:
            values = pd.Series(others.pop(name), index=rows.index)
            if values.dtype.kind == "M":
                values = values.dt.tz_localize("UTC")
            elif compact:
                values = values.astype("category")
            features.insert(order.index(name), name, values)
    return pd.concat([rows, features], axis=1, copy=False)


def _is_number(kind: pa.DataType) -> bool:
    """A feature held as a float in the training set (integers and flags too, as from Feast:
    empty where no snapshot applies)."""
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def _file_time(path: Path) -> int:
    stamp = path.stem.removeprefix("as_of=").replace("_", ":")
    return pd.Timestamp(stamp, tz="UTC").value // 1000


class OnlineFeatures:
    """Reads a feature service's latest values from the online store for given entities.

    With the embedded SQLite online store, rows are read straight from Feast's tables through a
    read-only connection and decoded from Feast's value protos: this skips Feast's per-request
    response building, which costs more than the read itself for a hundred features (p99 above
    2 ms at a million accounts). Other online stores go through `get_online_features`. A test
    checks both paths return the same values. A reader keeps the generation published when it
    was made; make a new one to read a later materialization.
    """

    def __init__(self, folder: Path, service: str = "debtor_scoring_v1") -> None:
        self._connection: sqlite3.Connection | None = None
        path = None
        if get_settings().feature_store.online_store == "sqlite":
            generation, self._connection = open_published(folder)
            path = generation.path
        self.store = open_store(folder, online_path=path)
        self.service = _service(self.store, service)
        self._views = [
            (view, view.entity_columns[0].name, names)
            for view, names in _views_of(self.store, self.service)
        ]

    def get(self, entity_rows: Sequence[dict[str, str]]) -> dict[str, list[Any]]:
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
            ids = [str(row[key]) for row in entity_rows]
            blobs = [
                serialize_entity_key(
                    EntityKey(join_keys=[key], entity_values=[Value(string_val=value)]),
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

    def get_through_feast(self, entity_rows: Sequence[dict[str, str]]) -> dict[str, list[Any]]:
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
    per account.

    It reads one published generation, opened when it is made (`generation`, default: the
    one published now; give another snapshot's to read several services from the same one).
    `stamp()` names that generation; `published_generation(folder)` naming another means a
    newer materialization, so a reader can tell when to read again. Close it when done: an
    open generation keeps its disk space after a newer one replaces it.
    """

    def __init__(
        self,
        folder: Path,
        service: str = "debtor_scoring_v1",
        generation: OnlineGeneration | None = None,
    ) -> None:
        if get_settings().feature_store.online_store != "sqlite":
            raise FeatureStoreError("bulk online reads need the embedded SQLite online store")
        if generation is None:
            self.generation, self._connection = open_published(folder)
        else:
            self.generation = generation
            try:
                self._connection = _connect_published(generation.path)
            except sqlite3.OperationalError:
                raise FeatureStoreError(
                    f"{generation.path}: replaced by a newer materialization; read again"
                ) from None
        self.path = self.generation.path
        self.store = open_store(folder, online_path=self.path)
        self.service = _service(self.store, service)

    def stamp(self) -> str:
        """The generation read (its file name, unique per materialization)."""
        return self.generation.name

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> OnlineSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, entity_ids: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
        """For each entity key (`account_id`, `debtor_id`) with the ids wanted: a frame of the
        service's features indexed by id (ids without values are absent)."""
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        frames: dict[str, list[pd.DataFrame]] = {}
        connection = self._connection
        for view, names in _views_of(self.store, self.service):
            key = view.entity_columns[0].name
            ids = np.asarray(entity_ids.get(key, []), dtype=object)
            id_of = {
                serialize_entity_key(
                    EntityKey(join_keys=[key], entity_values=[Value(string_val=str(i))]),
                    entity_key_serialization_version=3,
                ): str(i)
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
            index = pd.Index(sorted(rows["id"].unique()), name=key, dtype=object)
            columns = {}
            for name, group in rows.groupby("feature", sort=False, observed=True):
                decoded = decode_value_column(group["value"].tolist())
                column = pd.Series(decoded, index=group["id"].to_numpy())
                columns[str(name)] = column.reindex(index)
            frame = pd.DataFrame({n: columns.get(n, pd.Series(np.nan, index=index)) for n in names})
            frames.setdefault(key, []).append(frame)
        return {key: pd.concat(parts, axis=1) for key, parts in frames.items()}
