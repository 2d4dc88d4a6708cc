"""Commands on portfolio folders: simulate, validate, import, and the contracts they follow."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.cli.shell import (
    EXIT_QUARANTINED,
    EXIT_VALID,
    console,
    fail,
    note,
    progress_bar,
    user_errors,
)

if TYPE_CHECKING:
    from data_contracts.mapping import Unmapped
    from data_contracts.validation import ValidationResult

import_app = typer.Typer(
    help="Import data into cobranza's contracts: your own tables through a mapping file, "
    "or a public dataset."
)


def _print_validation(result: ValidationResult, quarantine: Path | None) -> None:
    """Counts per table and rule; `quarantine` is where they were written (None: a dry run)."""
    from rich.table import Table

    table = Table(title="Validation", show_lines=False)
    for column in ("table", "input rows", "valid", "quarantined", "rules broken (rows)"):
        table.add_column(
            column, justify="left" if column in ("table", "rules broken (rows)") else "right"
        )
    for name, report in result.reports.items():
        rules = ", ".join(f"{rule} ({n})" for rule, n in report.rows_per_rule.items()) or "-"
        table.add_row(
            name,
            f"{report.input_rows:,}",
            f"{report.valid_rows:,}",
            f"{report.quarantined_rows:,}",
            rules,
        )
    screen = console()
    screen.print(table)
    _print_notices(result)
    balance = (
        "input = valid + quarantined for every table"
        if result.reconciles
        else "COUNTS DO NOT RECONCILE"
    )
    where = f"report and quarantined rows in {quarantine}" if quarantine else "nothing written"
    screen.print(f"{balance}; {where}", soft_wrap=True)


def _first_rows(first_rows: tuple[dict[str, object], ...]) -> str:
    """`12 (value 'F')`, `40 (local_time 2025-10-31T21:30:00-04:00, jurisdiction WA)`, ..."""
    shown = []
    for item in first_rows:
        details = ", ".join(
            f"{key} {value!r}" if key == "value" else f"{key} {value}"
            for key, value in item.items()
            if key != "row"
        )
        shown.append(f"{item['row']} ({details})" if details else str(item["row"]))
    return ", ".join(shown)


def _print_notices(result: ValidationResult) -> None:
    """Values set to null, then compliance warnings: rows that stay valid but that a manager
    should know about (one line each, on stdout with the table)."""
    from rich.markup import escape

    from data_contracts.breaches import BREACH_RULES

    screen = console()
    for name, report in result.reports.items():
        for notice in report.nulled:
            screen.print(
                f"nulled: {name}.{notice.column}: {notice.rows:,} audit-only value(s) outside the "
                f"contract set to null ({notice.rule}); the rows stay valid; first rows "
                f"{escape(_first_rows(notice.first_rows))}",
                soft_wrap=True,
            )
    for name, report in result.reports.items():
        for notice in report.warnings:
            what = BREACH_RULES.get(notice.rule, "rows")
            screen.print(
                f"[bold yellow]warning:[/] compliance: {notice.rows:,} {what} ({notice.rule}, "
                f"{name}); first rows {escape(_first_rows(notice.first_rows))}",
                soft_wrap=True,
            )


def simulate(
    out: Annotated[Path, typer.Option(help="Folder to write the portfolio to.")] = Path(
        "data/portfolio"
    ),
    accounts: Annotated[int, typer.Option(min=1, help="Number of accounts to simulate.")] = 10_000,
    seed: Annotated[
        int, typer.Option(min=0, help="Random seed; the same seed gives the same data.")
    ] = 0,
    days: Annotated[
        int, typer.Option(min=30, max=3650, help="Days of collections history to simulate.")
    ] = 365,
    overwrite: Annotated[bool, typer.Option(help="Replace the folder if it is not empty.")] = False,
) -> None:
    """Simulate a collections portfolio that satisfies the data contracts.

    Writes one parquet file per table, manifest.json, and truth/ with the hidden behaviour
    model (for benchmarks only; models must never read it).
    """
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    from pipelines.portfolio import OutputFolderError
    from pipelines.simulate import simulate_to_folder
    from simulator.engine import SimulationConfig

    config = SimulationConfig(
        accounts=accounts, seed=seed, horizon_days=days, placement_days=min(300, days)
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("day {task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
    )
    with (
        user_errors("simulating", OutputFolderError),
        progress_bar(*columns) as progress,
    ):
        task = progress.add_task("simulating", total=days)
        manifest = simulate_to_folder(
            config,
            out,
            overwrite=overwrite,
            progress=lambda day: progress.update(task, completed=day + 1),
            notify=note,
        )
    rows = manifest["rows"]
    assert isinstance(rows, dict)
    summary = ", ".join(f"{n:,} {name}" for name, n in rows.items())
    console().print(f"wrote {out}: {summary}; data ends {manifest['data_end']}", soft_wrap=True)


def validate(
    folder: Annotated[Path, typer.Argument(help="Portfolio folder with <table>.parquet files.")],
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where to write quarantined rows and report.json [default: FOLDER/quarantine]."
        ),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(help="Contact rules to check the history against [default: settings]."),
    ] = None,
) -> None:
    """Validate a portfolio against the data contracts.

    Contacts that broke the contact rules (outside the allowed local hours, over the 7-day
    call limit) are printed as compliance warnings; invalid audit-only values are set to null
    and counted. Neither quarantines a row.

    Exit status: 0 when no row was quarantined (warnings or not), 1 when rows were quarantined,
    2 when the input is unusable (missing folders, files or columns, all named at once, or a
    file that cannot be read).
    """
    from data_contracts.contact_rules import RulesError, load_rules, rules_file
    from data_contracts.settings import get_settings
    from data_contracts.validation import ContractError
    from pipelines.portfolio import validate_portfolio

    quarantine = quarantine or folder / "quarantine"
    with (
        user_errors("validating", ContractError, RulesError),
        console(stderr=True).status("validating") as status,
    ):
        contact_rules = load_rules(rules or rules_file(get_settings().serving.contact_rules))
        result = validate_portfolio(
            folder,
            quarantine,
            progress=lambda table: status.update(f"validating {table}"),
            contact_rules=contact_rules,
        )
    _print_validation(result, quarantine)
    raise typer.Exit(EXIT_VALID if result.quarantined_rows == 0 else EXIT_QUARANTINED)


class ContractFormat(StrEnum):
    MARKDOWN = "markdown"
    JSON = "json"


def contracts(
    table: Annotated[
        list[str] | None,
        typer.Option(help="Only this table (repeat for several) [default: every table]."),
    ] = None,
    format: Annotated[
        ContractFormat, typer.Option(help="markdown (a table per table) or json.")
    ] = ContractFormat.MARKDOWN,
) -> None:
    """Print the data contracts: every table's columns with type, nullability, allowed
    values and meaning, its row checks, and what each contact outcome counts as.

    Generated from the pandera models, so it is always what `cobranza validate` checks.
    """
    import json

    from data_contracts.reference import contract_reference, contracts_markdown
    from data_contracts.schemas import CONTRACTS

    unknown = [name for name in table or [] if name not in CONTRACTS]
    if unknown:
        raise fail(f"no table {', '.join(unknown)}: the tables are {', '.join(CONTRACTS)}")
    if format is ContractFormat.JSON:
        typer.echo(json.dumps(contract_reference(table), indent=2, ensure_ascii=False))
    else:
        typer.echo(contracts_markdown(table), nl=False)


@import_app.command("taiwan")
def import_taiwan(
    csv: Annotated[
        Path, typer.Argument(help="default_of_credit_card_clients.csv (UCI dataset 350).")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the portfolio to.")] = Path(
        "data/taiwan"
    ),
    overwrite: Annotated[bool, typer.Option(help="Replace the folder if it is not empty.")] = False,
) -> None:
    """Map the UCI "default of credit card clients" data (Taiwan, 2005) into the contracts.

    Each client becomes a debtor with one card account, six monthly statements and its
    payments; the October 2005 default label goes to labels/default_next_month.parquet.
    """
    from pipelines.portfolio import OutputFolderError
    from pipelines.taiwan import TaiwanFormatError, import_taiwan_to_folder

    with (
        user_errors("importing", TaiwanFormatError, OutputFolderError, FileNotFoundError),
        console(stderr=True).status("importing the Taiwan dataset"),
    ):
        manifest = import_taiwan_to_folder(csv, out, overwrite=overwrite, notify=note)
    rows = manifest["rows"]
    assert isinstance(rows, dict)
    summary = ", ".join(f"{n:,} {name}" for name, n in rows.items())
    console().print(f"wrote {out}: {summary}", soft_wrap=True)


def _print_unmapped(unmapped: list[Unmapped]) -> None:
    from rich.table import Table

    if not unmapped:
        console().print("every value found in a value map", soft_wrap=True)
        return
    table = Table(title="Values no value map names (kept for validation, or null)")
    for column in ("table", "column", "source column", "value", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for item in unmapped:
        table.add_row(item.table, item.column, item.source, item.value, f"{item.count:,}")
    console().print(table)


@import_app.command("tables")
def import_tables(
    mapping: Annotated[
        Path, typer.Option(help="Mapping file (YAML): sources, tables and columns.")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Folder to write the portfolio to (not for --dry-run).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(help="Map and validate in memory; show what would be quarantined."),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the folder if it is not empty.")] = False,
) -> None:
    """Map your own tables (CSV, parquet or a SQL database) into the contracts.

    Exit status: 0 when written (or, with --dry-run, when every row would be valid), 1 when a
    dry run would quarantine rows, 2 when the mapping, a source or the folder is unusable.
    """
    from data_contracts.mapping import MappingError
    from pipelines.portfolio import OutputFolderError
    from pipelines.sources import SourceError
    from pipelines.table_import import import_tables as run_import

    if out is None and not dry_run:
        raise typer.BadParameter("give --out FOLDER, or --dry-run", param_hint="--out")
    with (
        user_errors("importing", MappingError, SourceError, OutputFolderError),
        console(stderr=True).status("importing") as status,
    ):
        report = run_import(
            mapping,
            out,
            dry_run=dry_run,
            overwrite=overwrite,
            progress=lambda table: status.update(f"importing {table}"),
            notify=note,
        )
    _print_unmapped(report.unmapped)
    rows = report.manifest["rows"]
    assert isinstance(rows, dict)
    summary = ", ".join(f"{n:,} {name}" for name, n in rows.items())
    if report.not_mapped:
        note(f"not in the mapping, written empty: {', '.join(report.not_mapped)}")
    if report.validation is None:
        console().print(f"wrote {out}: {summary}", soft_wrap=True)
        return
    _print_validation(report.validation, None)
    quarantined = report.validation.quarantined_rows
    raise typer.Exit(EXIT_VALID if quarantined == 0 else EXIT_QUARANTINED)
