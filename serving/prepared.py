"""Feature copies and reason codes prepared once per online store generation and model
version, by one low-priority process that every worker shares.

Exact TreeSHAP for every stored account costs about 2 ms of CPU each (11 s for 5,000 accounts
with the demo model on 2 cores), and reading a generation from the Feast online store 3 s of
mostly Python work. Done in each worker before a swap, both competed with the requests for the
cores and the interpreter lock: after the champion moved under 200 requests/s, p50 went from
5 ms to 41 ms for 83 s (`benchmarks/swap.py`). So the first worker that needs a preparation
starts `python -m serving.prepared` at the lowest CPU priority (SCHED_IDLE: it gets what
requests leave). It reads the generation once, computes every account's reasons, and publishes

    DIR/feature_store/prepared/<generation>/features-<services>.parquet
    DIR/feature_store/prepared/<generation>/reasons-<model>-v<version>-top<k>.arrow

each written whole and renamed into place. Workers swap in the new model or features when the
files are there: the features take milliseconds to read, the reasons are memory-mapped (the
pages are shared by every worker and read on demand). Preparations of one generation take turns
under a lock on its folder, so a second worker's request finds the files done; a preparation
that is killed leaves nothing a reader could take for complete, and the next one starts over.
Folders of generations no longer published are removed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines import crash_point, folder_lock

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

PREPARED_FOLDER = "prepared"
STORE_FOLDER = "feature_store"
"""pipelines.feature_store.STORE_FOLDER (not imported: the process starts light, see launch)."""
NICENESS = 19
"""The preparation's niceness. It also runs under Linux's SCHED_IDLE policy: it gets the cores
when nothing else wants them, and a request's worker takes the core back at once (at nice 10
alone, measured, the requests' p50 went from 6 to 10-25 ms while it ran). On cores that
requests keep busy it still gets a small share, so a swap is late, never lost."""
BATCH = 1024
"""Accounts per TreeSHAP call (large enough for LightGBM's threads to pay off)."""
EXIT_SUPERSEDED = 3
"""The generation is no longer the published one: nothing to prepare."""


def prepared_folder(portfolio: Path, generation: str) -> Path:
    return Path(portfolio).resolve() / STORE_FOLDER / PREPARED_FOLDER / generation


def features_path(portfolio: Path, generation: str, services: Sequence[str]) -> Path:
    return prepared_folder(portfolio, generation) / f"features-{'+'.join(services)}.parquet"


def reasons_path(portfolio: Path, generation: str, model: str, version: str, top: int) -> Path:
    return prepared_folder(portfolio, generation) / f"reasons-{model}-v{version}-top{top}.arrow"


@dataclass
class ReasonTable:
    """One model version's reason codes over a feature copy's rows (JSON text per row):
    those prepared for every account (an Arrow column, memory-mapped) and those computed on
    demand since."""

    position: np.ndarray
    """Row -> position in `prepared` (-1: not prepared)."""
    prepared: pa.ChunkedArray | None = None
    prepared_rows: int = 0
    computed: dict[int, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, rows: int) -> ReasonTable:
        return cls(np.full(rows, -1, dtype=np.int64))

    def get(self, row: int) -> str | None:
        at = int(self.position[row])
        if at >= 0 and self.prepared is not None:
            return str(self.prepared[at].as_py())
        return self.computed.get(row)

    def held(self) -> int:
        """Rows whose reasons are at hand."""
        return self.prepared_rows + len(self.computed)


def write_atomically(path: Path, write: Any) -> None:
    """`write(partial_path)`, flushed to disk, then renamed to `path`: readers see the whole
    file or none."""
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    descriptor = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_features(path: Path) -> pd.DataFrame:
    """A prepared features file, indexed by account id as text (as the online store reads)."""
    import pandas as pd

    from data_contracts.coerce import coerce_id

    frame = pd.read_parquet(path)
    ids, _ = coerce_id(frame.index.to_series())
    frame.index = pd.Index(ids.astype(object).to_numpy(), name=frame.index.name)
    return frame


def read_reasons(path: Path, account_ids: np.ndarray) -> ReasonTable:
    """The prepared reasons of `path` aligned to a copy's rows (`account_ids` in row order).
    The file is memory-mapped: its pages are shared by every worker and read when used."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.ipc

    table = pyarrow.ipc.open_file(pa.memory_map(str(path))).read_all()
    column = table.column("account_id").cast(pa.string())  # integers in older files
    ids = pd.Index(column.to_numpy(zero_copy_only=False), dtype=object)
    position = np.asarray(ids.get_indexer(np.asarray(account_ids, dtype=object)), dtype=np.int64)
    return ReasonTable(position, table.column("reasons"), int((position >= 0).sum()))


def reason_texts(model: Any, frame: pd.DataFrame, rows: np.ndarray, top: int) -> list[str]:
    """The reason codes of the given rows as the service returns them, as compact JSON."""
    encoded = model.encoder_.to_array(frame.iloc[rows])
    reasons = model.reasons_encoded(encoded, frame.iloc[rows], top)
    return [json.dumps(row, separators=(",", ":")) for row in reasons]


@dataclass
class Preparation:
    """A preparation process a worker started, and how many of them failed for its files."""

    process: subprocess.Popen[bytes] | None
    failures: int = 0


def launch(
    portfolio: Path,
    generation: str,
    services: Sequence[str],
    model: str,
    version: str,
    top: int,
    tracking_uri: str | None,
) -> subprocess.Popen[bytes] | None:
    """Start a preparation process, unless one is at work on the generation's folder (None):
    the lock on the folder is taken here and handed to the process, so of several workers
    asking at once one starts it. The process lowers its priority before importing anything
    (the imports alone take seconds of CPU)."""
    target = prepared_folder(portfolio, generation)
    target.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(target, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        command = [sys.executable, "-c", PRIORITY_THEN_RUN, "--lock-fd", str(descriptor)]
        command += ["--portfolio", str(Path(portfolio).resolve()), "--generation", generation]
        command += ["--model", model, "--version", version, "--top", str(top)]
        command += [part for service in services for part in ("--service", service)]
        command += ["--tracking-uri", tracking_uri] if tracking_uri else []
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(descriptor,)
        )
    finally:
        os.close(descriptor)  # the process holds the lock now (its own copy of the descriptor)


PRIORITY_THEN_RUN = (
    "import os; os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0)); "
    f"os.nice({NICENESS}); import runpy; "
    "runpy.run_module('serving.prepared', run_name='__main__')"
)
"""The process's code: the lowest priority first, then this module as a program."""


def remove_superseded(portfolio: Path, keep: set[str]) -> None:
    """Delete the prepared folders of generations not in `keep` (those no longer published),
    skipping any a preparation is working in."""
    root = Path(portfolio).resolve() / STORE_FOLDER / PREPARED_FOLDER
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name in keep or not folder.is_dir():
            continue
        with folder_lock(folder, wait=False) as free:
            if free:
                shutil.rmtree(folder, ignore_errors=True)


def prepare(args: argparse.Namespace) -> int:
    """Write the features file (unless there) and the reasons file of one generation and
    model version; returns the exit status."""
    folder = Path(args.portfolio)
    target = prepared_folder(folder, args.generation)
    target.mkdir(parents=True, exist_ok=True)
    services = list(args.service)
    features = features_path(folder, args.generation, services)
    reasons = reasons_path(folder, args.generation, args.model, args.version, args.top)
    parent = os.getppid()
    with _held(target, args.lock_fd):
        if features.exists() and reasons.exists():
            return 0
        for leftover in target.glob(".*.partial"):  # a killed preparation's; we hold the lock
            leftover.unlink(missing_ok=True)
        from pipelines.feature_store import published_generation
        from pipelines.registry import load_model, open_registry
        from serving.portfolio import read_feature_frame

        generation = published_generation(folder)
        if generation is None or generation.name != args.generation:
            return EXIT_SUPERSEDED
        if features.exists():
            frame = read_features(features)
        else:
            frame, _ = read_feature_frame(folder, services, generation)
            write_atomically(features, lambda path: frame.to_parquet(path))
        crash_point("prepared_features")
        open_registry(args.tracking_uri, create=False)
        model, _ = load_model(args.model, args.version)
        names = [name for name in model.feature_names_ if name in frame.columns]
        rows = np.flatnonzero(frame[names].notna().any(axis=1).to_numpy())
        texts: list[str] = []
        for start in range(0, len(rows), BATCH):
            if os.getppid() != parent:  # the worker is gone: nobody is waiting
                return 1
            texts += reason_texts(model, frame, rows[start : start + BATCH], args.top)
            crash_point("prepared_reasons_batch")
        ids = frame.index.to_numpy(object)[rows]
        write_atomically(reasons, lambda path: _write_reasons(path, ids, texts))
    remove_superseded(folder, keep={args.generation, _published_name(folder)})
    return 0


def _published_name(folder: Path) -> str:
    from pipelines.feature_store import FeatureStoreError, published_generation

    try:
        generation = published_generation(folder)
    except FeatureStoreError:
        return ""
    return generation.name if generation is not None else ""


@contextmanager
def _held(target: Path, lock_fd: int | None) -> Iterator[None]:
    """The folder's lock: the one handed over by the worker that started this process, or
    taken here (waiting for another preparation to finish)."""
    if lock_fd is None:
        with folder_lock(target):
            yield
        return
    try:
        yield
    finally:
        os.close(lock_fd)


def _write_reasons(path: Path, ids: np.ndarray, texts: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.ipc

    table = pa.table({"account_id": pa.array(ids, pa.string()), "reasons": pa.array(texts)})
    with pa.OSFile(str(path), "wb") as sink, pyarrow.ipc.new_file(sink, table.schema) as out:
        out.write_table(table)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.prepared",
        description="Prepare a feature copy and reason codes for the scoring service's workers.",
    )
    parser.add_argument("--portfolio", required=True)
    parser.add_argument("--generation", required=True)
    parser.add_argument("--service", action="append", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--top", type=int, required=True)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--lock-fd", type=int, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.nice(0) < NICENESS:
        os.nice(NICENESS - os.nice(0))
    try:
        return prepare(args)
    except Exception as error:  # the worker logs the status; no data values in the message
        sys.stderr.write(f"preparation failed: {type(error).__name__}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
