"""Build point-in-time feature snapshots for a portfolio and register them in Feast.

Snapshots are only built from a validated portfolio: the build validates first and stops if
the input is unusable or rows were quarantined (unless told to go on with the valid rows).
Each as-of time writes `DIR/features/{account,debtor}/as_of=<time>.parquet`, replacing any file
of the same time, so a rerun is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.snapshot import feature_inputs, feature_snapshots
from pipelines.feature_store import apply_repository, snapshot_root
from pipelines.portfolio import data_end, validate_portfolio, write_tables


class FeatureBuildError(RuntimeError):
    """The snapshots cannot be built (invalid portfolio, dates outside the data)."""


@dataclass(frozen=True)
class BuildSummary:
    as_of: list[pd.Timestamp]
    account_rows: int
    debtor_rows: int
    quarantined_rows: int


def snapshot_name(as_of: pd.Timestamp) -> str:
    return "as_of=" + as_of.strftime("%Y-%m-%dT%H_%M_%S")


def parse_every(every: str) -> pd.Timedelta:
    """The time between snapshots (`7d`, `1d`, `12h`); a clear error for anything else."""
    try:
        step = pd.to_timedelta(every)
    except ValueError:
        raise FeatureBuildError(f"--every {every!r} is not a duration such as 7d or 1d") from None
    if step <= pd.Timedelta(0):
        raise FeatureBuildError(f"--every {every!r} must be a positive duration")
    return step


def as_of_times(start: pd.Timestamp, end: pd.Timestamp, every: str) -> list[pd.Timestamp]:
    """As-of times from start to end (inclusive) every `every` (a duration like `7d`)."""
    step = parse_every(every)
    if end < start:
        raise FeatureBuildError(f"--end {end.date()} is before --start {start.date()}")
    return list(pd.date_range(start, end, freq=step))


def data_window(
    tables: dict[str, pd.DataFrame], end: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First placement and end of the data (the manifest's data_end)."""
    return tables["accounts"]["placed_at"].min(), end


def build_snapshots(
    folder: Path,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    every: str = "7D",
    accept_quarantine: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BuildSummary:
    """Validate the portfolio, compute snapshots for each as-of time, apply the Feast repo.

    `start` defaults to the first placement plus `every` (or the end of the data, if sooner);
    `end` to the end of the data. For the Taiwan import both are its single scoring moment.
    """
    folder = Path(folder)
    step = parse_every(every)  # before the (long) validation
    result = validate_portfolio(folder)
    if result.quarantined_rows and not accept_quarantine:
        counts = ", ".join(
            f"{name} {report.quarantined_rows}"
            for name, report in result.reports.items()
            if report.quarantined_rows
        )
        raise FeatureBuildError(
            f"validation quarantined rows ({counts}); see {folder / 'quarantine'}. "
            "Fix the input, or pass --accept-quarantine to build from the valid rows only"
        )
    quarantined = result.quarantined_rows
    tables = feature_inputs(result.valid)
    del result  # the other columns are not needed: free them before computing
    if not len(tables["accounts"]):
        raise FeatureBuildError(f"{folder}: no valid accounts")
    first, last = data_window(tables, data_end(folder))
    if start is None:  # a step after the first placement, or the end if the data is shorter
        start = min((first + step).normalize(), last)
    if end is None:
        end = last
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    start, end = (
        t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC") for t in (start, end)
    )
    for name, moment in (("--start", start), ("--end", end)):
        if moment < first or moment > last:
            raise FeatureBuildError(
                f"{name} {moment.isoformat()} is outside the data "
                f"(first placement {first.isoformat()}, data ends {last.isoformat()})"
            )
    times = as_of_times(start, end, every)
    account_rows = debtor_rows = 0
    root = snapshot_root(folder)
    for done, as_of in enumerate(times):
        accounts, debtors = feature_snapshots(tables, as_of)
        write_tables(root / "account", {snapshot_name(as_of): accounts})
        write_tables(root / "debtor", {snapshot_name(as_of): debtors})
        account_rows += len(accounts)
        debtor_rows += len(debtors)
        if progress is not None:
            progress(done + 1, len(times))
    apply_repository(folder)
    return BuildSummary(times, account_rows, debtor_rows, quarantined)
