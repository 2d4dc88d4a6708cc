"""Reading, writing and validating portfolio folders (the I/O edge of the contracts).

A portfolio folder holds one `<table>.parquet` per contract table and a `manifest.json`
(source, data end, row counts). Timestamps are written with microsecond precision.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd

from data_contracts.schemas import CONTRACTS, OPTIONAL_TABLES, empty_table
from data_contracts.validation import ContractError, ValidationResult, validate_tables

MANIFEST = "manifest.json"
REPORT = "report.json"


def table_path(folder: Path, table: str) -> Path:
    return Path(folder) / f"{table}.parquet"


def read_table(folder: Path, table: str) -> pd.DataFrame:
    """Read one table; a missing or unreadable file is a `ContractError` naming the file."""
    path = table_path(folder, table)
    if not path.is_file():
        raise ContractError(f"{path}: file not found (every portfolio needs {table}.parquet)")
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several unrelated types for a bad file
        raise ContractError(
            f"{path}: cannot be read as parquet ({type(error).__name__})"
        ) from error


class PortfolioFolder(Mapping[str, pd.DataFrame]):
    """The tables of a portfolio folder, each read from disk when asked for (not cached)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ContractError(f"{self.folder}: portfolio folder not found")
        for table in CONTRACTS:
            if table not in OPTIONAL_TABLES and not table_path(self.folder, table).is_file():
                raise ContractError(
                    f"{table_path(self.folder, table)}: file not found "
                    f"(every portfolio needs {table}.parquet)"
                )

    def __getitem__(self, table: str) -> pd.DataFrame:
        if table not in CONTRACTS:
            raise KeyError(table)
        if table in OPTIONAL_TABLES and not table_path(self.folder, table).is_file():
            return empty_table(table)
        return read_table(self.folder, table)

    def __iter__(self) -> Iterator[str]:
        return iter(CONTRACTS)

    def __len__(self) -> int:
        return len(CONTRACTS)


def read_portfolio(folder: Path) -> dict[str, pd.DataFrame]:
    """Every contract table of a portfolio folder, as stored (all in memory)."""
    return dict(PortfolioFolder(folder))


def read_manifest(folder: Path) -> dict[str, object]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def write_tables(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """Write tables as parquet (microsecond timestamps), replacing each file atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        path = table_path(folder, name)
        partial = path.with_suffix(".parquet.partial")
        frame.to_parquet(
            partial, index=False, coerce_timestamps="us", allow_truncated_timestamps=False
        )
        partial.replace(path)


def write_json(path: Path, data: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def prepare_output(folder: Path, overwrite: bool) -> Path:
    """An empty output folder; refuses to touch a non-empty one unless `overwrite`."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{folder} is not empty (use --overwrite to replace it)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def validate_portfolio(folder: Path, quarantine: Path | None = None) -> ValidationResult:
    """Validate a portfolio folder and write what was quarantined.

    Quarantined rows go to `<quarantine>/<table>.parquet` (raw values, `source_row`,
    `quarantine_rules`, `quarantine_reasons`) and the counts to `<quarantine>/report.json`.
    The quarantine folder defaults to `<folder>/quarantine` and is rewritten on every run.

    Raises:
        ContractError: a file or column is missing or a file cannot be read.
    """
    folder = Path(folder)
    result = validate_tables(PortfolioFolder(folder))
    quarantine = Path(quarantine) if quarantine is not None else folder / "quarantine"
    if quarantine.exists():
        for old in quarantine.glob("*.parquet"):
            old.unlink()
    quarantine.mkdir(parents=True, exist_ok=True)
    for table, rows in result.quarantined.items():
        if len(rows):
            rows.to_parquet(table_path(quarantine, table), index=False)
    write_json(quarantine / REPORT, result.summary())
    return result
