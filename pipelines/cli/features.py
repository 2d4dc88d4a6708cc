"""`cobranza features`: point-in-time snapshots and the Feast feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.shell import (
    console,
    progress_bar,
    timestamp_option,
    user_errors,
)

features_app = typer.Typer(help="Point-in-time feature snapshots and the Feast feature store.")


@features_app.command("build")
def features_build(
    folder: Annotated[Path, typer.Argument(help="Portfolio folder.")],
    start: Annotated[
        str | None,
        typer.Option(help="First as-of time, UTC [default: a step after the first placement]."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last as-of time, UTC [default: end of the data].")
    ] = None,
    every: Annotated[str, typer.Option(help="Time between snapshots, e.g. 7d or 1d.")] = "7d",
    accept_quarantine: Annotated[
        bool, typer.Option(help="Build from the valid rows even if validation quarantined some.")
    ] = False,
) -> None:
    """Validate the portfolio, write account and debtor snapshots, register them in Feast.

    Snapshots go to FOLDER/features/{account,debtor}/as_of=<time>.parquet; rerunning replaces
    them. Exit status 2 when the portfolio fails validation or a date is outside the data.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from data_contracts.validation import ContractError
    from pipelines.features_build import FeatureBuildError, build_snapshots

    begin, finish = timestamp_option(start, "--start"), timestamp_option(end, "--end")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        user_errors("building features", ContractError, FeatureBuildError),
        progress_bar(*columns) as progress,
    ):
        task = progress.add_task("snapshots", total=None)
        summary = build_snapshots(
            folder,
            begin,  # type: ignore[arg-type]
            finish,  # type: ignore[arg-type]
            every,
            accept_quarantine,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    first, last = summary.as_of[0], summary.as_of[-1]
    console().print(
        f"{len(summary.as_of)} snapshots from {first.isoformat()} to {last.isoformat()}: "
        f"{summary.account_rows:,} account rows, {summary.debtor_rows:,} debtor rows in "
        f"{folder / 'features'}; Feast repository applied in {folder / 'feature_store'}",
        soft_wrap=True,
    )


@features_app.command("materialize")
def features_materialize(folder: Annotated[Path, typer.Argument(help="Portfolio folder.")]) -> None:
    """Load the latest snapshot into the online store (SQLite by default) for serving."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

    from pipelines.feature_store import FeatureStoreError, materialize_latest

    columns = (TextColumn("online rows"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        user_errors("materializing", FeatureStoreError),
        progress_bar(*columns) as progress,
    ):
        task = progress.add_task("materialize", total=None)
        latest = materialize_latest(
            folder, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    console().print(f"online store holds the snapshot as of {latest.isoformat()}", soft_wrap=True)
