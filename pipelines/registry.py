"""The MLflow tracking store and model registry: where runs, models and aliases live.

Embedded default: a SQLite store `data/mlflow/mlflow.db` with artifacts in
`data/mlflow/artifacts/` (no server). `--tracking-uri` or `COBRANZA_TRAINING__TRACKING_URI`
points at an MLflow server instead. Every alias move (and every refused promotion) is appended
to an audit log kept with the registry: `registry_audit.jsonl` beside the SQLite store, and as
tags on the model version.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from data_contracts.settings import get_settings

PROPENSITY_MODEL = "cobranza-propensity"
NEXT_BEST_ACTION_MODEL = "cobranza-next-best-action"
MODEL_NAMES = {"propensity": PROPENSITY_MODEL, "next-best-action": NEXT_BEST_ACTION_MODEL}
CHAMPION, CHALLENGER = "champion", "challenger"
AUDIT_FILE = "registry_audit.jsonl"
LOCK_FILE = "registry.lock"
AUDIT_ARTIFACTS = "audit"
"""Folder of a model version's run that holds its fairness audit."""
REPORT_FILE = "audit.html"
SUMMARY_FILE = "audit.json"
VERDICT_TAG, AUDITED_AT_TAG = "fairness_audit.verdict", "fairness_audit.at"


class RegistryError(RuntimeError):
    """The registry cannot do what was asked (no such model or alias, store unreachable)."""


def quiet_mlflow() -> None:
    # MLflow and SQLAlchemy warn about their own internals; none of it concerns our runs.
    for category in (DeprecationWarning, FutureWarning, UserWarning):
        for module in ("mlflow", "sqlalchemy", "alembic", "pydantic"):
            warnings.filterwarnings("ignore", category=category, module=module)
    warnings.filterwarnings("ignore", message=".*noload.*")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines break progress bars
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifact_root: str | None
    audit_path: Path | None

    def artifact_location(self, experiment: str) -> str | None:
        if self.artifact_root is None:
            return None
        return f"{self.artifact_root}/{experiment}"


def describe(uri: str) -> str:
    """A tracking URI fit for messages and logs: any user and password in it are masked."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def open_registry(tracking_uri: str | None = None, create: bool = True) -> Store:
    """Point MLflow at the tracking store and registry.

    The embedded store (no URI given or set) is `<data_root>/mlflow/mlflow.db`, created on first
    use by training; a command that only reads (`create=False`) refuses a missing one with a
    `RegistryError` naming the file, instead of creating an empty store and finding no model.
    """
    quiet_mlflow()
    import mlflow

    settings = get_settings().training
    uri = tracking_uri or settings.tracking_uri
    artifact_root = audit_path = None
    if uri is None:
        folder = (Path(settings.data_root) / "mlflow").resolve()
        if not create and not (folder / "mlflow.db").is_file():
            raise RegistryError(
                f"no MLflow store at {folder / 'mlflow.db'} (the embedded default: data root "
                f"{settings.data_root!r} from {Path.cwd()}); train a model first, run from the "
                "project folder, or pass --tracking-uri"
            )
        folder.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        artifact_root = (folder / "artifacts").as_uri()
        audit_path = folder / AUDIT_FILE
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
        if not create and not (folder / Path(uri).name).is_file():
            raise RegistryError(f"no MLflow store at {uri.removeprefix('sqlite:///')}")
        artifact_root = (folder / "artifacts").as_uri()
        audit_path = folder / AUDIT_FILE
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return Store(uri, artifact_root, audit_path)


def experiment_id(store: Store, name: str) -> str:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name, artifact_location=store.artifact_location(name)))


def alias_version(name: str, alias: str) -> Any | None:
    """The model version holding `alias`, or None."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def resolve_version(name: str, which: str) -> Any:
    """A model version by alias (`champion`, `challenger`) or number."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if which.isdigit():
        try:
            return MlflowClient().get_model_version(name, which)
        except MlflowException:
            raise RegistryError(f"{name} has no version {which} in {registry_name()}") from None
    version = alias_version(name, which)
    if version is None:
        raise RegistryError(
            f"{name} has no version with alias {which!r} in {registry_name()} "
            "(train one first, or pass --tracking-uri)"
        )
    return version


def registry_name() -> str:
    """The registry MLflow points at, credentials masked."""
    import mlflow

    return describe(mlflow.get_tracking_uri())


def load_model(name: str, which: str) -> tuple[Any, Any]:
    """The fitted model object (what serving runs) and its model version."""
    import mlflow.pyfunc

    version = resolve_version(name, which)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    return loaded.unwrap_python_model().model, version


def actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def record(store: Store, entry: dict[str, Any]) -> dict[str, Any]:
    """Append an entry to the audit log (who, when, what, why, metrics)."""
    from mlflow.tracking import MlflowClient

    entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **entry}
    if store.audit_path is not None:
        store.audit_path.parent.mkdir(parents=True, exist_ok=True)
        with store.audit_path.open("a") as log:
            log.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
    version = entry.get("version")
    if version is not None:
        key = f"audit.{entry['at'][:19].replace(':', '-')}.{entry['action']}"
        MlflowClient().set_model_version_tag(
            entry["model"], str(version), key, json.dumps(entry, default=str)[:4900]
        )
    return entry


def read_audit(store: Store) -> list[dict[str, Any]]:
    if store.audit_path is None or not store.audit_path.is_file():
        return []
    return [json.loads(line) for line in store.audit_path.read_text().splitlines() if line]


def set_alias(
    store: Store,
    name: str,
    alias: str,
    version: str,
    reason: str,
    metrics: dict[str, Any] | None = None,
    who: str | None = None,
) -> dict[str, Any]:
    """Move `alias` to `version` and record the move."""
    from mlflow.tracking import MlflowClient

    previous = alias_version(name, alias)
    MlflowClient().set_registered_model_alias(name, alias, str(version))
    return record(
        store,
        {
            "action": f"set_{alias}",
            "model": name,
            "alias": alias,
            "version": str(version),
            "previous_version": None if previous is None else str(previous.version),
            "who": who or actor(),
            "why": reason,
            "metrics": metrics or {},
        },
    )


def remove_alias(store: Store, name: str, alias: str, reason: str, who: str | None = None) -> None:
    from mlflow.tracking import MlflowClient

    previous = alias_version(name, alias)
    if previous is None:
        return
    MlflowClient().delete_registered_model_alias(name, alias)
    record(
        store,
        {
            "action": f"remove_{alias}",
            "model": name,
            "alias": alias,
            "version": str(previous.version),
            "who": who or actor(),
            "why": reason,
        },
    )


@contextmanager
def registry_lock(store: Store) -> Iterator[None]:
    """Hold the registry's lock: alias moves (registration, promotion) happen one run at a time.

    An embedded store locks a file beside it (`registry.lock`, released by the kernel if the
    process dies); an MLflow server has no such lock, so runs against one must not overlap."""
    if store.audit_path is None:
        yield
        return
    store.audit_path.parent.mkdir(parents=True, exist_ok=True)
    with (store.audit_path.parent / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def register_run(
    store: Store, uris: dict[str, str], metrics: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """Register the models one run logged (`uris` by kind) as a pair; new version per kind.

    Every model is registered before any alias moves, so a run killed half-way leaves versions
    without aliases (ignored) rather than a champion or challenger whose partner is missing.
    Each new version becomes `challenger`, or `champion` when its model has none yet."""
    import mlflow

    quiet_mlflow()
    with registry_lock(store):
        versions = {
            kind: str(mlflow.register_model(uri, MODEL_NAMES[kind]).version)
            for kind, uri in uris.items()
        }
        for kind, number in versions.items():
            name, scores = MODEL_NAMES[kind], metrics.get(kind, {})
            if alias_version(name, CHAMPION) is None:
                set_alias(store, name, CHAMPION, number, "first model: no champion yet", scores)
            else:
                set_alias(store, name, CHALLENGER, number, "newly trained", scores)
    return versions


def run_artifact(run_id: str | None, path: str) -> str | None:
    """The text of one artifact of an MLflow run, or None when there is none."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if not run_id:
        return None
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = MlflowClient().download_artifacts(run_id, path, folder)
        except (MlflowException, OSError):
            return None
        return Path(local).read_text(encoding="utf-8")


def stored_audit(name: str, version: str, file: str = SUMMARY_FILE) -> str | None:
    """The stored audit report (`audit.html`) or summary (`audit.json`) of a model version,
    or None when it was never audited (or the version does not exist)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run_id = MlflowClient().get_model_version(name, version).run_id
    except MlflowException:
        return None
    return run_artifact(run_id, f"{AUDIT_ARTIFACTS}/{file}")
