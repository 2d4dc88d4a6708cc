"""The `cobranza` command line: one command per stage, each a few lines calling library code.

Heavy libraries (pandas, pandera, feast, mlflow, lightgbm) are imported inside the commands,
so `cobranza --help` answers at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    import pandas as pd

    from data_contracts.validation import ValidationResult
    from pipelines.audit import AuditResult

app = typer.Typer(
    name="cobranza",
    help="Propensity-to-pay scoring and compliant worklists for debt collection.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
import_app = typer.Typer(help="Import public datasets into cobranza's data contracts.")
app.add_typer(import_app, name="import", no_args_is_help=True)
features_app = typer.Typer(help="Point-in-time feature snapshots and the Feast feature store.")
app.add_typer(features_app, name="features", no_args_is_help=True)

EXIT_VALID, EXIT_QUARANTINED, EXIT_UNUSABLE = 0, 1, 2


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _progress(*columns: object):
    """A transient progress bar on stderr, silent when stderr is not a terminal (CI, logs)."""
    from rich.progress import Progress

    console = _console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)  # type: ignore[arg-type]


def _fail(message: str) -> typer.Exit:
    from rich.markup import escape

    # soft_wrap: an error names a file; it must stay on one line to be copied or grepped
    _console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(EXIT_UNUSABLE)


@contextmanager
def _user_errors(action: str, *expected: type[BaseException]) -> Iterator[None]:
    """Turn errors into one-line messages and exit status 2, never a traceback.

    Expected errors (bad input) print their message, which names the file, column or rule.
    Anything else prints only its type, since its text could quote data;
    COBRANZA_DEBUG=1 re-raises it with the traceback for developers.
    """
    try:
        yield
    except typer.Exit:
        raise
    except expected as error:
        raise _fail(str(error)) from None
    except Exception as error:
        if os.environ.get("COBRANZA_DEBUG"):
            raise
        raise _fail(
            f"unexpected {type(error).__name__} while {action}; "
            "set COBRANZA_DEBUG=1 to see the details"
        ) from None


def _print_validation(result: ValidationResult, quarantine: Path) -> None:
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
    console = _console()
    console.print(table)
    balance = (
        "input = valid + quarantined for every table"
        if result.reconciles
        else "COUNTS DO NOT RECONCILE"
    )
    console.print(f"{balance}; report and quarantined rows in {quarantine}", soft_wrap=True)


@app.command()
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
        _user_errors("simulating", OutputFolderError),
        _progress(*columns) as progress,
    ):
        task = progress.add_task("simulating", total=days)
        manifest = simulate_to_folder(
            config,
            out,
            overwrite=overwrite,
            progress=lambda day: progress.update(task, completed=day + 1),
        )
    rows = manifest["rows"]
    assert isinstance(rows, dict)
    summary = ", ".join(f"{n:,} {name}" for name, n in rows.items())
    _console().print(f"wrote {out}: {summary}; data ends {manifest['data_end']}", soft_wrap=True)


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="Portfolio folder with <table>.parquet files.")],
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Where to write quarantined rows and report.json [default: FOLDER/quarantine]."
        ),
    ] = None,
) -> None:
    """Validate a portfolio against the data contracts.

    Exit status: 0 when every row is valid, 1 when rows were quarantined, 2 when the input is
    unusable (a missing folder, file or column, or a file that cannot be read).
    """
    from data_contracts.validation import ContractError
    from pipelines.portfolio import validate_portfolio

    quarantine = quarantine or folder / "quarantine"
    with (
        _user_errors("validating", ContractError),
        _console(stderr=True).status("validating") as status,
    ):
        result = validate_portfolio(
            folder, quarantine, progress=lambda table: status.update(f"validating {table}")
        )
    _print_validation(result, quarantine)
    raise typer.Exit(EXIT_VALID if result.quarantined_rows == 0 else EXIT_QUARANTINED)


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
        _user_errors("importing", TaiwanFormatError, OutputFolderError, FileNotFoundError),
        _console(stderr=True).status("importing the Taiwan dataset"),
    ):
        manifest = import_taiwan_to_folder(csv, out, overwrite=overwrite)
    rows = manifest["rows"]
    assert isinstance(rows, dict)
    summary = ", ".join(f"{n:,} {name}" for name, n in rows.items())
    _console().print(f"wrote {out}: {summary}", soft_wrap=True)


def _timestamp(value: str | None, option: str) -> object:
    import pandas as pd

    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise _fail(
            f"{option} {value!r} is not a date (use YYYY-MM-DD or an ISO timestamp)"
        ) from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


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

    begin, finish = _timestamp(start, "--start"), _timestamp(end, "--end")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        _user_errors("building features", ContractError, FeatureBuildError),
        _progress(*columns) as progress,
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
    _console().print(
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
        _user_errors("materializing", FeatureStoreError),
        _progress(*columns) as progress,
    ):
        task = progress.add_task("materialize", total=None)
        latest = materialize_latest(
            folder, progress=lambda done, total: progress.update(task, completed=done, total=total)
        )
    _console().print(f"online store holds the snapshot as of {latest.isoformat()}", soft_wrap=True)


def _load_experiment(path: Path | None):
    from training.config import ExperimentError, load_experiment

    try:
        return load_experiment(path)
    except ExperimentError as error:
        raise _fail(str(error)) from None


def _print_metrics(title: str, metrics: dict[str, float], keys: list[str]) -> None:
    from rich.table import Table

    if not any(key in metrics for key in keys):
        return

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in keys:
        if key in metrics:
            table.add_row(key, f"{metrics[key]:,.4f}")
    _console().print(table)


TRAINING_STAGES = 12
"""About how many progress messages a training run sends besides trials and folds."""


def _stage_columns() -> tuple[object, ...]:
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

    return (
        TextColumn("{task.description:<45}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )


PROPENSITY_KEYS = [
    "test_roc_auc",
    "test_pr_auc",
    "test_log_loss",
    "test_brier",
    "test_brier_uncalibrated",
    "test_ece",
    "test_lift_top_decile",
    "test_capture_top_decile",
    "cv_roc_auc_mean",
    "cv_roc_auc_std",
    "truth_roc_auc_ceiling",
    "truth_roc_auc_ratio",
]
ACTION_KEYS = [
    "nba_contact_roc_auc",
    "nba_contact_brier",
    "truth_contact_roc_auc_ceiling",
    "truth_contact_roc_auc_ratio",
    "nba_policy_logging_policy",
    "nba_policy_ips",
    "nba_policy_snips",
    "nba_policy_dr",
    "nba_policy_dr_ci_low",
    "nba_policy_dr_ci_high",
    "truth_collected_learned",
    "truth_collected_oracle",
    "truth_collected_logging",
    "truth_collected_largest_balance",
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking and registry URI [default: SQLite store in data/mlflow/].",
        envvar="COBRANZA_TRAINING__TRACKING_URI",
    ),
]


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Portfolio folder with built feature snapshots.")],
    experiment: Annotated[
        Path | None, typer.Option(help="Experiment YAML [default: built-in settings].")
    ] = None,
    trials: Annotated[
        int | None, typer.Option(min=1, help="Optuna trials [default: the experiment's].")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Stop tuning after this many seconds.")
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Train, calibrate, evaluate and register the propensity and next-best-action models.

    Every run is logged to MLflow; a new model version becomes `challenger` (or `champion` if
    there is none). The same seed, data and trial count give the same metrics.
    """
    from data_contracts.validation import ContractError
    from pipelines.feature_store import FeatureStoreError
    from pipelines.train import TrainingError, train_portfolio
    from pipelines.truth import truth_evaluation
    from training.splits import SplitError

    config, text = _load_experiment(experiment)
    with (
        _user_errors("training", TrainingError, SplitError, ContractError, FeatureStoreError),
        _progress(*_stage_columns()) as progress,
    ):
        # one step per stage and per tuning trial or fold; the bar follows the run's messages
        steps = TRAINING_STAGES + (trials or config.tuning.trials if not timeout else 0)
        total = steps + config.cv_folds
        task = progress.add_task("training", total=total)
        done = [0]

        def advance(message: str) -> None:
            done[0] = min(done[0] + 1, total - 1)  # full only when the run returns
            progress.update(task, description=message, completed=done[0])

        result = train_portfolio(
            data,
            config,
            text,
            trials=trials,
            timeout=timeout,
            tracking_uri=tracking_uri,
            progress=advance,
            truth_evaluation=truth_evaluation,
        )
    _print_metrics("Propensity to pay", result.metrics, PROPENSITY_KEYS)
    _print_metrics("Next best action", result.metrics, ACTION_KEYS)
    registered = ", ".join(f"{name} v{version}" for name, version in result.versions.items())
    _console().print(
        f"MLflow run {result.run_id}; registered: {registered or 'nothing'}", soft_wrap=True
    )


ModelChoice = Annotated[
    str,
    typer.Option(help="propensity, next-best-action or both."),
]


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Portfolio folder with built feature snapshots.")],
    model: Annotated[
        str, typer.Option(help="champion, challenger or a version number.")
    ] = "champion",
    which: ModelChoice = "both",
    experiment: Annotated[
        Path | None, typer.Option(help="Experiment YAML (split and horizon).")
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Evaluate registered models on the recent test window of a portfolio."""
    from pipelines.evaluate import EvaluationError, evaluate_registered
    from pipelines.registry import RegistryError
    from pipelines.train import TrainingError
    from training.splits import SplitError

    config, _ = _load_experiment(experiment)
    with (
        _user_errors("evaluating", EvaluationError, RegistryError, TrainingError, SplitError),
        _console(stderr=True).status("evaluating"),
    ):
        results = evaluate_registered(data, config, model, which, tracking_uri)
    for name, (version, metrics) in results.items():
        keys = PROPENSITY_KEYS if name == "propensity" else ACTION_KEYS
        keys = [key.removeprefix("test_") for key in keys] + keys
        _print_metrics(f"{name} v{version}", metrics, keys)


@app.command()
def promote(
    data: Annotated[Path, typer.Option(help="Portfolio folder whose recent test window decides.")],
    which: ModelChoice = "both",
    experiment: Annotated[
        Path | None, typer.Option(help="Experiment YAML (promotion metric and margin).")
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why, for the audit log [default: the metric comparison].")
    ] = None,
    override_audit: Annotated[
        str | None,
        typer.Option(
            help="Promote despite a flagged fairness audit; the written reason and "
            "the flags go to the audit log."
        ),
    ] = None,
    reports: Annotated[
        Path, typer.Option(help="Where an audit run by the gate writes its report.")
    ] = Path("reports"),
    tracking_uri: TrackingUri = None,
) -> None:
    """Move `champion` to the challenger only if its fairness audit has no flagged check
    (propensity model; audited now if it never was) and it beats the champion on the same
    recent test window by the experiment's metric and margin; every decision goes to the
    audit log.

    Exit status: 0 promoted (or the first champion), 1 refused, 2 unusable input.
    """
    from data_contracts.contact_rules import RulesError, rules_file
    from data_contracts.settings import get_settings
    from pipelines.audit import AuditError
    from pipelines.evaluate import EvaluationError, promote_challengers
    from pipelines.registry import RegistryError
    from pipelines.train import TrainingError
    from training.splits import SplitError

    config, _ = _load_experiment(experiment)
    if override_audit is not None and not override_audit.strip():
        raise _fail("--override-audit needs a written reason")
    _output_folder(reports)
    rules = rules_file(get_settings().serving.contact_rules)
    with (
        _user_errors(
            "promoting",
            EvaluationError,
            RegistryError,
            TrainingError,
            SplitError,
            AuditError,
            RulesError,
        ),
        _console(stderr=True).status("auditing and comparing challenger and champion"),
    ):
        decisions = promote_challengers(
            data, config, which, reason, tracking_uri, override_audit, reports, rules
        )
    for decision in decisions:
        _console().print(decision.message, soft_wrap=True)
    raise typer.Exit(0 if all(d.promoted for d in decisions) else 1)


@app.command()
def serve(
    portfolio: Annotated[
        Path | None,
        typer.Option(help="Portfolio whose online store serves features [default: settings]."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    tracking_uri: TrackingUri = None,
) -> None:
    """Start the scoring service (FastAPI under uvicorn).

    API keys come from COBRANZA_SERVING__API_KEYS (a JSON list), never from the command line.
    """
    from data_contracts.settings import get_settings

    settings = get_settings()
    if portfolio is not None:
        os.environ["COBRANZA_SERVING__PORTFOLIO"] = str(portfolio)
    if tracking_uri is not None:
        os.environ["COBRANZA_TRAINING__TRACKING_URI"] = tracking_uri
    if not settings.serving.api_keys:
        raise _fail("no API keys configured: set COBRANZA_SERVING__API_KEYS='[\"a-key\"]'")
    get_settings.cache_clear()
    from serving.runner import run

    run(host, port, workers)


@app.command()
def worklist(
    portfolio: Annotated[
        Path, typer.Option(help="Portfolio whose service plans the day (started if no --url).")
    ] = Path("data/demo"),
    url: Annotated[
        str | None, typer.Option(help="A running service [default: start one on loopback].")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="Day to plan [default: the data's last day].")
    ] = None,
    call: Annotated[int, typer.Option(min=0, help="Call attempts available.")] = 200,
    sms: Annotated[int, typer.Option(min=0, help="SMS available.")] = 300,
    email: Annotated[int, typer.Option(min=0, help="E-mails available.")] = 500,
    letter: Annotated[int, typer.Option(min=0, help="Letters available.")] = 50,
    top: Annotated[int, typer.Option(min=1, help="Items to print.")] = 15,
    tracking_uri: TrackingUri = None,
) -> None:
    """Fetch a compliant worklist from the scoring service and print it.

    Without --url, starts `cobranza serve` on a free loopback port with a one-time API key,
    asks it for the worklist and stops it. With --url, the key comes from COBRANZA_API_KEY.
    """
    import json

    from pipelines.serve_client import ServiceError, fetch_worklist

    capacity = {"call": call, "sms": sms, "email": email, "letter": letter}
    with _user_errors("fetching the worklist", ServiceError, FileNotFoundError):
        if day is None:
            manifest = json.loads((portfolio / "manifest.json").read_text())
            day = str(manifest["data_end"])[:10]
        body = fetch_worklist(portfolio, url, day, capacity, tracking_uri)
    _print_worklist(body, top)


def _print_worklist(body: dict, top: int) -> None:
    from rich.table import Table

    table = Table(title=f"Worklist for {body['date']} (top {top} of {len(body['items'])})")
    for column in ("rank", "account", "kind", "channel", "window (local)", "offer", "net"):
        table.add_column(column, justify="right" if column in ("rank", "net") else "left")
    follow_ups = [item for item in body["items"] if item["kind"] != "best_action"]
    shown = follow_ups[: top // 3] + [i for i in body["items"] if i["kind"] == "best_action"]
    for item in shown[:top]:
        offer = item.get("offer") or "-"
        if item.get("discount_pct"):
            offer = f"discount {item['discount_pct']:.0f}%"
        elif item.get("installments"):
            offer = f"plan x{item['installments']}"
        net = item.get("expected_net")
        table.add_row(
            str(item["rank"]),
            str(item["account_id"]),
            item["kind"],
            item["channel"],
            f"{item['local_window']} {item['timezone']}",
            offer if item["kind"] == "best_action" else (item.get("detail") or "-"),
            "-" if net is None else f"{net:,.2f}",
        )
    console = _console()
    console.print(table)
    counts = ", ".join(f"{k} {v:,}" for k, v in body["counts"].items())
    console.print(f"accounts: {counts}", soft_wrap=True)
    for excluded in body["excluded"][:3]:
        console.print(f"  account {excluded['account_id']}: {excluded['reason']}", soft_wrap=True)


EXIT_AUDIT_FLAGGED = 1


@app.command()
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
    from pipelines.audit import AuditError, audit_and_store
    from pipelines.registry import RegistryError
    from pipelines.train import TrainingError
    from training.splits import SplitError

    config, _ = _load_experiment(experiment)
    _output_folder(out)
    rules = rules or rules_file(get_settings().serving.contact_rules)
    with (
        _user_errors("auditing", AuditError, RegistryError, TrainingError, SplitError, RulesError),
        _console(stderr=True).status("auditing") as status,
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
    console = _console()
    console.print(f"report: {report}\nsummary: {summary}", soft_wrap=True)
    if log:
        console.print(
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
    _console().print(table)


@app.command()
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

    config, _ = _load_experiment(experiment)
    _output_folder(out)
    first, last = _timestamp(start, "--from"), _timestamp(end, "--to")
    if first is not None and last is not None and first >= last:  # type: ignore[operator]
        raise _fail(f"--from {start} is not before --to {end}")
    with (
        _user_errors("computing KPIs", ContractError, FileNotFoundError, RulesError),
        _console(stderr=True).status("computing KPIs"),
    ):
        contact_rules = load_rules(rules or rules_file(get_settings().serving.contact_rules))
        tables = portfolio_kpis(data, config.actions.contact_cost, contact_rules, first, last)  # type: ignore[arg-type]
    _print_kpis(tables, segments)
    if out is not None:
        written = write_kpis(tables, out)
        _console().print(f"{len(written)} files written to {out}", soft_wrap=True)


def _print_kpis(tables: dict[str, pd.DataFrame], segments: bool) -> None:
    from rich.table import Table

    weekly = tables["weekly"]
    if not len(weekly):
        _console().print("no activity in this period")
        return
    shown = weekly if segments else weekly[weekly["segment"] == "all"]
    columns = {
        "week": "week",
        "segment": "segment",
        "collected": "collected",
        "collection_rate": "coll. rate",
        "attempts": "attempts",
        "promise_rate": "promise",
        "kept_rate": "kept",
        "average_payment": "avg pay",
        "days_to_first_payment": "days to 1st",
        "cost_per_amount_collected": "cost/coll.",
    }
    percent = {"collection_rate", "promise_rate", "kept_rate", "cost_per_amount_collected"}
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
    console = _console()
    console.print(table)
    channels = tables["channels"].groupby("channel")[["attempts", "right_party_contacts"]].sum()
    rates = ", ".join(
        f"{name} {row.right_party_contacts / row.attempts:.1%}"
        for name, row in channels.iterrows()
        if row.attempts
    )
    console.print(f"right-party-contact rate over the period: {rates}", soft_wrap=True)
    blocked = tables["blocked"]
    if len(blocked):
        last = blocked.iloc[-1]
        console.print(
            f"open accounts that may not be called at the end of week {last['week']}: "
            f"{last['blocked_share']:.1%} of {int(last['open_accounts']):,}",
            soft_wrap=True,
        )


def _output_folder(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file, not a folder")


def main() -> None:
    app()
