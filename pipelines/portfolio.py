"""Reading, writing and validating portfolio folders (the I/O edge of the contracts).

A portfolio folder holds one `<table>.parquet` per contract table and a `manifest.json`
(source, data end, row counts). Timestamps are written with microsecond precision.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import LocalFileSystem

from data_contracts.contact_rules import ContactRules
from data_contracts.schemas import CONTRACTS, OPTIONAL_TABLES, empty_table
from data_contracts.validation import (
    REASONS_COLUMN,
    ROW_COLUMN,
    RULES_COLUMN,
    ContractError,
    ValidationResult,
    layout_problems,
    validate_tables,
)
from pipelines import crash_point, folder_lock

MANIFEST = "manifest.json"
REPORT = "report.json"
QUARANTINE_COLUMNS = {ROW_COLUMN, RULES_COLUMN, REASONS_COLUMN}


def table_path(folder: Path, table: str) -> Path:
    return Path(folder) / f"{table}.parquet"


def _text_as_arrow(kind: pa.DataType) -> object:
    """Text columns stay Arrow text (no Python string per row: an event's own ids are
    unique text, tens of millions of them)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pd.StringDtype("pyarrow")
    return None


def read_table(folder: Path, table: str) -> pd.DataFrame:
    """Read one table; a missing or unreadable file is a `ContractError` naming the file."""
    path = table_path(folder, table)
    if path.is_dir():
        raise ContractError(f"{path}: is a folder, not a parquet file")
    if not path.is_file():
        raise ContractError(f"{path}: file not found (every portfolio needs {table}.parquet)")
    try:
        # Arrow's own filesystem, not a Python file object: with one, Arrow's I/O threads take
        # the GIL to release it, and one doing so as the interpreter exits aborts the process
        # ("terminate called without an active exception", exit 134)
        table = pq.read_table(path.resolve(), filesystem=LocalFileSystem())
        return table.to_pandas(types_mapper=_text_as_arrow)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise ContractError(
            f"{path}: cannot be read as parquet ({type(error).__name__})"
        ) from error


def folder_problems(folder: Path) -> list[str]:
    """Every missing or unreadable table file and every missing column of a portfolio folder,
    each naming the file; found from the parquet schemas, without reading the data."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder}: portfolio folder not found"]
    columns: dict[str, list[str]] = {}
    unreadable: dict[str, str] = {}
    for table in CONTRACTS:
        path = table_path(folder, table)
        if path.is_dir():
            unreadable[table] = f"{path}: is a folder, not a parquet file"
        elif path.is_file():
            try:
                columns[table] = list(pq.read_schema(path.resolve()).names)
            except Exception as error:  # pyarrow raises several unrelated types for a bad file
                unreadable[table] = f"{path}: cannot be read as parquet ({type(error).__name__})"
    for table in unreadable:  # reported once, as unreadable, not also as missing its columns
        columns[table] = list(CONTRACTS[table].to_schema().columns)
    return [*unreadable.values(), *layout_problems(columns, str(folder))]


class PortfolioFolder(Mapping[str, pd.DataFrame]):
    """The tables of a portfolio folder, each read from disk when asked for (not cached)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        problems = folder_problems(self.folder)
        if problems:
            raise ContractError(*problems)

    def __getitem__(self, table: str) -> pd.DataFrame:
        if table not in CONTRACTS:
            raise KeyError(table)
        if table in OPTIONAL_TABLES and not table_path(self.folder, table).exists():
            return empty_table(table)
        return read_table(self.folder, table)

    def __contains__(self, table: object) -> bool:
        """Without reading the file (Mapping's default would read the whole table)."""
        return table in CONTRACTS

    def __iter__(self) -> Iterator[str]:
        return iter(CONTRACTS)

    def __len__(self) -> int:
        return len(CONTRACTS)

    def columns(self) -> dict[str, list[str]]:
        """Each table's column names, from its parquet schema (an absent optional table: the
        contract's columns, as it reads as an empty table)."""
        return {
            table: (
                list(pq.read_schema(table_path(self.folder, table).resolve()).names)
                if table_path(self.folder, table).exists()
                else list(empty_table(table).columns)
            )
            for table in CONTRACTS
        }


def read_portfolio(folder: Path) -> dict[str, pd.DataFrame]:
    """Every contract table of a portfolio folder, as stored (all in memory)."""
    return dict(PortfolioFolder(folder))


def read_manifest(folder: Path) -> dict[str, object]:
    """The portfolio's `manifest.json` as an object; a missing or unreadable file is a
    `ContractError` naming the file and the problem."""
    path = Path(folder) / MANIFEST
    if path.is_dir():
        raise ContractError(f"{path}: is a folder, not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ContractError(
            f"{path}: file not found (every portfolio needs {MANIFEST}: its source, the moment "
            "the data ends as data_end, and its row counts)"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise ContractError(f"{path}: cannot be read ({reason})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise ContractError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    if not isinstance(manifest, dict):
        raise ContractError(
            f"{path}: must be a JSON object (source, data_end, rows), not {_json_kind(manifest)}"
        )
    return manifest


def data_end(folder: Path) -> pd.Timestamp:
    """The moment the portfolio's data ends (the manifest's `data_end`, in UTC; a timestamp
    without a zone is read as UTC). Events after it are not accepted, so it is required."""
    path = Path(folder) / MANIFEST
    value = read_manifest(folder).get("data_end")
    example = "an ISO 8601 timestamp such as 2025-07-25T10:00:00+00:00"
    if value is None or value == "":
        raise ContractError(f"{path}: no data_end (the moment the data ends, {example})")
    try:
        end = pd.Timestamp(datetime.fromisoformat(str(value)))
    except (ValueError, OverflowError):  # the value is not repeated: messages never quote data
        raise ContractError(f"{path}: data_end is not a date (expected {example})") from None
    return end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")


def _json_kind(value: object) -> str:
    kinds = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return kinds.get(type(value), "a number")


ROWS_PER_GROUP = 1 << 22
"""Rows per parquet row group we write (Arrow's default is 1 << 20): each row group repeats
the dictionary of a text id column (every account id), which a reader decodes once per group."""


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Write tables as parquet (microsecond timestamps), replacing each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        path = table_path(folder, name)
        partial = path.with_suffix(".parquet.partial")
        frame.to_parquet(
            partial,
            index=False,
            coerce_timestamps="us",
            allow_truncated_timestamps=False,
            row_group_size=ROWS_PER_GROUP,
        )
        partial.replace(path)


def write_in_chunks(frame: pd.DataFrame, path: Path, rows_per_chunk: int = 2_000_000) -> None:
    """Write a large frame as parquet a chunk at a time (Arrow copies one chunk, not all)."""
    import pyarrow as pa

    first = pa.Table.from_pandas(frame.iloc[:rows_per_chunk], preserve_index=False)
    with pq.ParquetWriter(path, first.schema) as writer:
        writer.write_table(first)
        del first
        for start in range(rows_per_chunk, len(frame), rows_per_chunk):
            chunk = frame.iloc[start : start + rows_per_chunk]
            writer.write_table(
                pa.Table.from_pandas(chunk, schema=writer.schema, preserve_index=False)
            )


def write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


class OutputFolderError(ValueError):
    """An output folder cannot be used (it is a file, or holds something we must not delete)."""


def check_output(folder: Path, overwrite: bool, keep: Sequence[Path] = ()) -> None:
    """Refuse an output folder that is a file, or is not empty unless it holds a portfolio
    written by cobranza (`manifest.json`) and `overwrite` is set, or contains a file in `keep`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder} is a file, not a folder")
    for path in keep:
        if Path(path).resolve().is_relative_to(folder.resolve()):
            raise OutputFolderError(f"{folder} contains the input {path}: choose another --out")
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise OutputFolderError(f"{folder} is not empty (use --overwrite to replace it)")
        if not (folder / MANIFEST).is_file():
            raise OutputFolderError(
                f"{folder} is not replaced: it holds files but no cobranza portfolio "
                f"({MANIFEST}); choose an empty or new folder"
            )


@contextmanager
def staged_output(
    folder: Path,
    overwrite: bool,
    keep: Sequence[Path] = (),
    notify: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Write into a temporary sibling folder, then swap it in; on failure nothing changes.

    The existing folder is only replaced once the new one is complete, and in one step (an
    atomic exchange of the two folders), so a crash or a bad input never leaves a half-written
    portfolio or no portfolio at all. What a killed run left beside the folder is cleaned up
    first (`recover_output`); `notify` is told what was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover_output(folder, notify)
    check_output(folder, overwrite, keep)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{STAGING}-", dir=folder.parent))
    with folder_lock(staging):  # while held, no other run takes it for a leftover
        try:
            yield staging
            check_output(folder, overwrite, keep)  # another run may have written it meanwhile
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        replace_folder(staging, folder)


STAGING, RETIRED = "partial", "old"
"""Kinds of temporary siblings `.<name>.<kind>-<random>` of an output folder."""


def replace_folder(new: Path, folder: Path) -> None:
    """Put the complete folder `new` at `folder`, replacing what is there in one step.

    Where the filesystem can exchange two folders atomically (Linux), readers find the old
    folder or the new one at every instant, and the old one is deleted afterwards from the
    staging name. Elsewhere it takes two renames, and a crash between them leaves the old
    folder in `.<name>.old-*/<name>`, which `recover_output` puts back.
    """
    if not folder.exists():
        new.rename(folder)
        return
    if _exchange(new, folder):
        crash_point("mid_swap")
        shutil.rmtree(new, ignore_errors=True)  # now the old one
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{RETIRED}-", dir=folder.parent))
    with folder_lock(retired):
        folder.rename(retired / folder.name)
        crash_point("mid_swap")
        new.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux `renameat2` with RENAME_EXCHANGE); False where the
    system or filesystem cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    if renameat2(at_cwd, os.fsencode(first), at_cwd, os.fsencode(second), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def recover_output(folder: Path, notify: Callable[[str], None] | None = None) -> None:
    """Clean up what killed runs left beside `folder`: a folder a swap had moved aside is put
    back if nothing took its place, and staging folders and retired copies are deleted.
    Folders a running process holds (locked) are left alone."""
    folder = Path(folder)
    say = notify or (lambda _: None)
    if not folder.parent.is_dir():
        return
    prefixes = tuple(f".{folder.name}.{kind}-" for kind in (STAGING, RETIRED))
    for leftover in sorted(folder.parent.iterdir()):
        if not leftover.name.startswith(prefixes) or not leftover.is_dir():
            continue
        with folder_lock(leftover, wait=False) as unused:
            if not unused:
                continue  # a running process's
            aside = leftover / folder.name
            if leftover.name.startswith(prefixes[1]) and aside.is_dir() and not folder.exists():
                aside.rename(folder)
                say(f"restored {folder}, which an interrupted run had moved to {leftover}")
            else:
                say(f"removed {leftover}, left by an interrupted run")
            shutil.rmtree(leftover, ignore_errors=True)


def _check_quarantine(folder: Path, quarantine: Path) -> None:
    """Refuse a quarantine folder that is the portfolio folder or contains it, a file, or a
    folder holding anything validation does not write, so no input is ever deleted."""
    target, source = quarantine.resolve(), folder.resolve()
    if source.is_relative_to(target):
        raise ContractError(
            f"quarantine folder {quarantine}: must not be the portfolio folder or contain it "
            "(choose another with --quarantine)"
        )
    if quarantine.exists() and not quarantine.is_dir():
        raise ContractError(f"quarantine folder {quarantine}: is a file, not a folder")
    if quarantine.is_dir() and not is_quarantine(quarantine):
        raise ContractError(
            f"quarantine folder {quarantine}: holds files validation did not write; "
            "empty it or choose an empty or new folder with --quarantine"
        )


def is_quarantine(folder: Path) -> bool:
    """Whether a folder holds only what validation writes: `report.json` (the report's keys)
    and `<table>.parquet` files with the quarantine's own columns, which no contract table
    may have (they are reserved). So a quarantine left half-written by an interrupted run
    is recognised, and a folder of anyone else's files is not."""
    for entry in folder.iterdir():
        if not entry.is_file():
            return False
        if entry.name == REPORT:
            try:
                report = json.loads(entry.read_text())
            except (OSError, ValueError):
                return False
            if not (isinstance(report, dict) and {"reconciles", "tables"} <= report.keys()):
                return False
            continue
        if entry.suffix != ".parquet" or entry.stem not in CONTRACTS:
            return False
        try:
            columns = set(pq.read_schema(entry).names)
        except Exception:  # pyarrow raises several unrelated types for a bad file
            return False
        if not columns.issuperset(QUARANTINE_COLUMNS):
            return False
    return True


def _quarantine_staging(quarantine: Path) -> Path:
    """A new temporary folder beside the quarantine folder, to write the next one into."""
    try:
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        return Path(
            tempfile.mkdtemp(prefix=f".{quarantine.name}.{STAGING}-", dir=quarantine.parent)
        )
    except OSError as error:
        raise ContractError(
            f"quarantine folder {quarantine}: cannot write there ({error.strerror})"
        ) from None


def _retire(folder: Path) -> None:
    """Delete a folder by first renaming it aside (atomic), so it is never seen half-deleted;
    what a kill leaves aside, `recover_output` deletes."""
    if not folder.exists():
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.{RETIRED}-", dir=folder.parent))
    folder.rename(retired)  # onto the empty folder just made
    shutil.rmtree(retired, ignore_errors=True)


def _data_end_and_layout(folder: Path) -> pd.Timestamp:
    """The manifest's `data_end`; a `ContractError` listing every problem of the manifest, the
    table files and their columns at once, so one run names all that must be fixed."""
    problems = []
    try:
        end = data_end(folder)
    except ContractError as error:
        problems += error.problems
    problems += folder_problems(folder)
    if problems:
        raise ContractError(*problems)
    return end


def validate_portfolio(
    folder: Path,
    quarantine: Path | None = None,
    progress: Callable[[str], None] | None = None,
    contact_rules: ContactRules | None = None,
) -> ValidationResult:
    """Validate a portfolio folder and write what was quarantined.

    Quarantined rows go to `<quarantine>/<table>.parquet` (raw values, `source_row`,
    `quarantine_rules`, `quarantine_reasons`) as each table is checked, and the counts to
    `<quarantine>/report.json`; the returned result holds the valid rows and the counts.
    The quarantine folder defaults to `<folder>/quarantine` and is replaced on every run: the
    new one is written beside it and renamed into place when complete, so it is never seen
    half-written, and a run that stops leaves none rather than a stale one.

    Events dated after the manifest's `data_end` are quarantined (`after_data_end`); the
    manifest and its `data_end` are required. With `contact_rules`, contacts that broke them
    are counted as compliance warnings in the report (they stay valid).

    Raises:
        ContractError: files or columns are missing, a file cannot be read, the manifest is
            missing or unreadable or has no valid `data_end` (all of these at once, one per
            line), or the quarantine folder cannot be used.
    """
    folder = Path(folder)
    quarantine = Path(quarantine) if quarantine is not None else folder / "quarantine"
    if not folder.is_dir():
        raise ContractError(f"{folder}: portfolio folder not found")
    _check_quarantine(folder, quarantine)
    recover_output(quarantine)  # what killed validations left
    staging = _quarantine_staging(quarantine)

    def write_quarantined(table: str, rows: pd.DataFrame) -> None:
        if len(rows):
            write_in_chunks(rows, table_path(staging, table))
            crash_point("quarantine_table_written")

    with folder_lock(staging):  # while held, no other run takes it for a leftover
        try:
            _retire(quarantine)  # first, so no stale report outlives a failed run
            end = _data_end_and_layout(folder)
            portfolio = PortfolioFolder(folder)
            result = validate_tables(
                portfolio,
                data_end=end,
                progress=progress,
                on_quarantined=write_quarantined,
                columns=portfolio.columns(),
                where=str(folder),
                contact_rules=contact_rules,
            )
            write_json(staging / REPORT, result.summary())
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        replace_folder(staging, quarantine)
    return result


class OffPolicyRefused(ContractError):
    """The portfolio's logged contacts have no action probabilities, so off-policy estimates
    of a new policy (IPS, SNIPS, doubly robust) would be computed wrong."""


def require_action_probability(folder: Path) -> None:
    """Refuse off-policy evaluation on a portfolio whose manifest says `action_probability`
    is `unknown` (imported without the logging policy's probabilities)."""
    path = Path(folder) / MANIFEST
    if read_manifest(folder).get("action_probability") == "unknown":
        raise OffPolicyRefused(
            f"off-policy estimates refused: {path} says action_probability is unknown (the "
            "logging policy's probability of each contact was not in the source), so IPS, "
            "SNIPS and doubly robust values of a new contact policy cannot be computed; "
            "evaluate the propensity model only (--which propensity), or import the probabilities "
            "(`action_probability: {column: ...}` in the mapping)"
        )
