"""Commands on models: train, evaluate, promote."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.shell import (
    TrackingUri,
    check_output_folder,
    console,
    experiment_option,
    fail,
    progress_bar,
    user_errors,
)


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
    console().print(table)


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
    "test_value_lift_top_decile",
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

    config, text = experiment_option(experiment)
    with (
        user_errors("training", TrainingError, SplitError, ContractError, FeatureStoreError),
        progress_bar(*_stage_columns()) as progress,
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
    console().print(
        f"MLflow run {result.run_id}; registered: {registered or 'nothing'}", soft_wrap=True
    )


ModelChoice = Annotated[
    str,
    typer.Option(help="propensity, next-best-action or both."),
]


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
    from data_contracts.validation import ContractError
    from pipelines.evaluate import EvaluationError, evaluate_registered
    from pipelines.registry import RegistryError
    from pipelines.train import TrainingError
    from training.splits import SplitError

    config, _ = experiment_option(experiment)
    with (
        user_errors(
            "evaluating", EvaluationError, RegistryError, TrainingError, SplitError, ContractError
        ),
        console(stderr=True).status("evaluating"),
    ):
        results = evaluate_registered(data, config, model, which, tracking_uri)
    for name, (version, metrics) in results.items():
        keys = PROPENSITY_KEYS if name == "propensity" else ACTION_KEYS
        keys = [key.removeprefix("test_").removeprefix("nba_") for key in keys] + keys
        _print_metrics(f"{name} v{version}", metrics, keys)


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
    from data_contracts.validation import ContractError
    from pipelines.audit import AuditError
    from pipelines.evaluate import EvaluationError, promote_challengers
    from pipelines.registry import RegistryError
    from pipelines.train import TrainingError
    from training.splits import SplitError

    config, _ = experiment_option(experiment)
    if override_audit is not None and not override_audit.strip():
        raise fail("--override-audit needs a written reason")
    check_output_folder(reports)
    rules = rules_file(get_settings().serving.contact_rules)
    with (
        user_errors(
            "promoting",
            EvaluationError,
            RegistryError,
            TrainingError,
            SplitError,
            AuditError,
            RulesError,
            ContractError,
        ),
        console(stderr=True).status("auditing and comparing challenger and champion"),
    ):
        decisions = promote_challengers(
            data, config, which, reason, tracking_uri, override_audit, reports, rules
        )
    for decision in decisions:
        console().print(decision.message, soft_wrap=True)
    raise typer.Exit(0 if all(d.promoted for d in decisions) else 1)
