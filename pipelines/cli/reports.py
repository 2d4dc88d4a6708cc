"""Manager reports: the fairness audit and collection KPIs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipelines.cli.shell import (
    TrackingUri,
    check_output_folder,
    console,
    experiment_option,
    fail,
    timestamp_option,
    user_errors,
)

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.audit import AuditResult


EXIT_AUDIT_FLAGGED = 1


def audit(
    model: Annotated[
        str, typer.Option(help="champion, challenger or a version number.")
    ] = "champion",
    data: Annotated[
        Path, typer.Option(help="Portfolio folder whose recent test window is audited.")
    ] = Path("data/demo"),
    out: Annotated[Path, typer.Option(help="Folder for the report and summary.")] = Path("reports"),
    experiment: Annotated[
        Path | None, typer.Option(help="Experiment YAML (split, audit thresholds, costs).")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(help="Contact rules for the KPIs [default: settings].")
    ] = None,
    log: Annotated[
        bool, typer.Option(help="Log the report to the version's MLflow run (the gate reads it).")
    ] = True,
    tracking_uri: TrackingUri = None,
) -> None:
    """Audit the propensity model: explanations, group fairness, proxies, drift and collection
    KPIs, as one self-contained HTML page per model version.

    Exit status: 0 pass or watch, 1 a check is flagged, 2 unusable input.
    """
    from data_contracts.contact_rules import RulesError, rules_file
    from data_contracts.settings import get_settings
    from data_contracts.validation import ContractError
    from pipelines.audit import AuditError, audit_and_store
    from pipelines.registry import RegistryError
    from pipelines.train import TrainingError
    from training.splits import SplitError

    config, _ = experiment_option(experiment)
    check_output_folder(out)
    rules = rules or rules_file(get_settings().serving.contact_rules)
    with (
        user_errors(
            "auditing",
            AuditError,
            RegistryError,
            TrainingError,
            SplitError,
            RulesError,
            ContractError,
        ),
        console(stderr=True).status("auditing") as status,
    ):
        result, (report, summary) = audit_and_store(
            data,
            config,
            model,
            out,
            rules_path=rules,
            tracking_uri=tracking_uri,
            progress=lambda message: status.update(message),
            log=log,
        )
    _print_audit(result)
    screen = console()
    screen.print(f"report: {report}\nsummary: {summary}", soft_wrap=True)
    if log:
        screen.print(
            f"logged to MLflow run {result.run_id} under audit/; the service serves it at "
            f"/v1/models/{result.model}/{result.version}/audit",
            soft_wrap=True,
        )
    raise typer.Exit(EXIT_AUDIT_FLAGGED if result.verdict == "flag" else 0)


def _print_audit(result: AuditResult) -> None:
    from rich.table import Table

    colors = {"pass": "green", "watch": "yellow", "flag": "bold red"}
    table = Table(title=f"Audit of {result.model} v{result.version}: {result.verdict}")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in result.checks:
        table.add_row(check.name, f"[{colors[check.status]}]{check.status}[/]", check.detail)
    console().print(table)


def kpis(
    data: Annotated[Path, typer.Option(help="Portfolio folder.")] = Path("data/demo"),
    start: Annotated[
        str | None, typer.Option("--from", help="First day [default: the first placement].")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Last day, excluded [default: the data's end].")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the tables (CSV) and plots (PNG).")
    ] = None,
    segments: Annotated[
        bool, typer.Option(help="Print every segment, not only all segments together.")
    ] = False,
    experiment: Annotated[
        Path | None, typer.Option(help="Experiment YAML (cost per contact by channel).")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Contact rules [default: settings].")] = None,
) -> None:
    """Collection KPIs per week and segment: collection rate, right-party contacts per channel,
    promises and kept promises, payments, cost per amount collected, roll rates between
    days-past-due buckets and the share of accounts blocked by compliance limits."""
    from data_contracts.contact_rules import RulesError, load_rules, rules_file
    from data_contracts.settings import get_settings
    from data_contracts.validation import ContractError
    from pipelines.kpis import portfolio_kpis, write_kpis

    config, _ = experiment_option(experiment)
    check_output_folder(out)
    first, last = timestamp_option(start, "--from"), timestamp_option(end, "--to")
    if first is not None and last is not None and first >= last:  # type: ignore[operator]
        raise fail(f"--from {start} is not before --to {end}")
    with (
        user_errors("computing KPIs", ContractError, FileNotFoundError, RulesError),
        console(stderr=True).status("computing KPIs"),
    ):
        contact_rules = load_rules(rules or rules_file(get_settings().serving.contact_rules))
        tables = portfolio_kpis(data, config.actions.contact_cost, contact_rules, first, last)  # type: ignore[arg-type]
    _print_kpis(tables, segments)
    if out is not None:
        written = write_kpis(tables, out)
        console().print(f"{len(written)} files written to {out}", soft_wrap=True)


def _print_kpis(tables: dict[str, pd.DataFrame], segments: bool) -> None:
    from rich.table import Table

    weekly = tables["weekly"]
    if not len(weekly):
        console().print("no activity in this period")
        return
    shown = weekly if segments else weekly[weekly["segment"] == "all"]
    columns = {
        "week": "week",
        "segment": "segment",
        "collected": "collected",
        "collection_rate": "coll. rate",
        "collection_rate_net_of_forgiven": "net rate",
        "attempts": "attempts",
        "promise_rate": "promise",
        "kept_rate": "kept",
        "average_payment": "avg pay",
        "days_to_first_payment": "days to 1st",
        "cost_per_amount_collected": "cost/coll.",
    }
    percent = {
        "collection_rate",
        "collection_rate_net_of_forgiven",
        "promise_rate",
        "kept_rate",
        "cost_per_amount_collected",
    }
    table = Table(title="Collection KPIs per week")
    for label in columns.values():
        if label in ("week", "segment"):
            table.add_column(label, no_wrap=True, min_width=10 if label == "week" else 3)
        else:
            table.add_column(label, justify="right", overflow="fold")
    for row in shown.itertuples(index=False):
        cells = []
        for column in columns:
            value = getattr(row, column)
            if isinstance(value, float):
                cells.append(
                    "-"
                    if value != value
                    else f"{value:.1%}"
                    if column in percent
                    else f"{value:,.0f}"
                )
            else:
                cells.append(str(value))
        table.add_row(*cells)
    screen = console()
    screen.print(table)
    channels = (
        tables["channels"]
        .groupby("channel", observed=True)[["attempts", "right_party_contacts"]]
        .sum()
    )
    rates = ", ".join(
        f"{name} {row.right_party_contacts / row.attempts:.1%}"
        for name, row in channels.iterrows()
        if row.attempts
    )
    screen.print(f"right-party-contact rate over the period: {rates}", soft_wrap=True)
    blocked = tables["blocked"]
    if len(blocked):
        last = blocked.iloc[-1]
        screen.print(
            f"open accounts that may not be called at the end of week {last['week']}: "
            f"{last['blocked_share']:.1%} of {int(last['open_accounts']):,}",
            soft_wrap=True,
        )
