"""`cobranza audit`: the fairness, explanation and drift audit of a registered propensity model
on a portfolio's recent test window, its HTML report, and where both are kept.

The report and a JSON summary are written to a folder and logged to the model version's MLflow
run under `audit/`; the version gets the tags `fairness_audit.verdict` and `fairness_audit.at`.
The promotion gate and the service read them back from there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.coerce import coerce_to_contract
from data_contracts.contact_rules import load_rules
from data_contracts.schemas import PROTECTED_ATTRIBUTES, contract_columns
from data_contracts.validation import null_invalid_audit_values
from pipelines.kpis import kpi_figures, portfolio_kpis
from pipelines.registry import (
    AUDIT_ARTIFACTS,
    AUDITED_AT_TAG,
    PROPENSITY_MODEL,
    REPORT_FILE,
    SUMMARY_FILE,
    VERDICT_TAG,
    load_model,
    open_registry,
    resolve_version,
    run_artifact,
)
from pipelines.report import render_report
from pipelines.train import PreparedData, prepare_data
from training.audit import (
    Check,
    audit_checks,
    group_metrics,
    population_stability,
    protected_inputs,
    proxy_strength,
    psi,
    top_of_worklist,
    verdict,
)
from training.config import ExperimentConfig
from training.explain import Reason, reasons_for_rows
from training.model import PropensityModel
from training.plots import (
    adverse_impact_figure,
    dependence_figure,
    mean_shap_figure,
    score_distribution_figure,
    shap_summary_figure,
)
from training.splits import TEST, TRAIN, window

CARD_FILE = "model_card.md"
EXPLAIN_SAMPLE = 2000
DRIFT_SAMPLE = 20_000
PROXY_SAMPLE = 10_000
Progress = Callable[[str], None]


class AuditError(RuntimeError):
    """The audit cannot run on this data (no test window, no debtors' attributes)."""


@dataclass
class AuditResult:
    model: str
    version: str
    run_id: str | None
    checks: list[Check]
    groups: pd.DataFrame
    proxies: pd.DataFrame
    drift: pd.DataFrame
    score_psi: float
    mean_abs_shap: pd.Series
    reason_counts: pd.DataFrame
    features: list[str]
    window: dict[str, Any]
    thresholds: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    kpis: dict[str, pd.DataFrame] = field(default_factory=dict)
    card: str | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def verdict(self) -> str:
        return verdict(self.checks)

    def summary(self) -> dict[str, Any]:
        """What the gate and the API read: JSON-ready."""
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "verdict": self.verdict,
            "at": self.at,
            "checks": [c.as_dict() for c in self.checks],
            "flags": [c.as_dict() for c in self.checks if c.status == "flag"],
            "features": self.features,
            "protected_inputs": protected_inputs(self.features),
            "window": self.window,
            "thresholds": self.thresholds,
            "groups": json.loads(self.groups.to_json(orient="records")),
            "proxies": json.loads(self.proxies.to_json(orient="records")),
            "score_psi": self.score_psi,
            "drift_top": json.loads(self.drift.head(20).to_json(orient="records")),
        }


def _attributes(folder: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The audit-only attributes of each row's debtor (read here, never joined into a
    model input)."""
    debtors = pd.read_parquet(folder / "debtors.parquet")
    present = [a for a in PROTECTED_ATTRIBUTES if a in debtors.columns]
    if not present:
        raise AuditError(f"{folder}: the debtors table has none of {PROTECTED_ATTRIBUTES}")
    if set(contract_columns("debtors")) <= set(debtors.columns):
        # as validation leaves them: a value outside the contract is unknown, not a group
        debtors, _ = null_invalid_audit_values("debtors", *coerce_to_contract("debtors", debtors))
    by_debtor = debtors.set_index("debtor_id")[present]
    return by_debtor.reindex(frame["debtor_id"].to_numpy()).reset_index(drop=True)


def _reason_counts(reasons: list[list[Reason]]) -> pd.DataFrame:
    """How often each (feature, direction) is the first reason given."""
    first = [(r[0].feature, r[0].direction) for r in reasons if r]
    if not first:
        return pd.DataFrame(columns=["feature", "direction", "accounts", "share"])
    table = pd.DataFrame(first, columns=["feature", "direction"]).value_counts().reset_index()
    table.columns = ["feature", "direction", "accounts"]
    table["share"] = table["accounts"] / len(first)
    return table


@dataclass
class _Window:
    """The audited rows (the test window), the training window, and the data they come from."""

    prepared: PreparedData
    audit: pd.DataFrame
    train: pd.DataFrame


@dataclass
class _Explained:
    """SHAP values of a sample of the audited rows, and what they say overall."""

    rows: pd.DataFrame
    values: np.ndarray
    mean_abs: pd.Series
    reasons: pd.DataFrame


def _model_config(model: PropensityModel, config: ExperimentConfig) -> ExperimentConfig:
    """The experiment with the model's own feature service and horizon, whatever the
    experiment file says."""
    service = getattr(model, "metadata_", {}).get("feature_service", config.feature_service)
    horizon = int(model.horizon_days)
    return config.model_copy(update={"feature_service": service, "horizon_days": horizon})


def _audit_window(folder: Path, config: ExperimentConfig) -> _Window:
    """The test window to audit and the training window to compare it with."""
    prepared = prepare_data(Path(folder), config)
    if prepared.split is None:
        raise AuditError(f"{folder}: one as-of time only; the audit needs a recent test window")
    frame = prepared.propensity
    audit = window(frame, TEST).reset_index(drop=True)
    train = window(frame, TRAIN).reset_index(drop=True)
    if not len(audit):
        raise AuditError(f"{folder}: no rows in the test window to audit")
    horizon = config.horizon_days
    if f"paid_{horizon}d" not in audit.columns:
        raise AuditError(
            f"{folder}: no paid_{horizon}d label for the model's {horizon}-day horizon"
        )
    return _Window(prepared, audit, train)


def _group_table(
    audit: pd.DataFrame,
    attributes: pd.DataFrame,
    scores: np.ndarray,
    config: ExperimentConfig,
    say: Progress,
) -> pd.DataFrame:
    """Group metrics per protected attribute, the top of each as-of time's worklist selected."""
    thresholds = config.audit
    label = audit[f"paid_{config.horizon_days}d"].to_numpy(int)
    scored = pd.concat([attributes, audit[["event_timestamp", "debtor_id"]]], axis=1).assign(
        score=scores, label=label
    )
    scored["selected"] = top_of_worklist(
        scored["score"], scored["event_timestamp"], thresholds.top_share
    )
    say("group metrics")
    return pd.concat(
        [
            group_metrics(scored, attribute, thresholds, seed=config.seed, cluster="debtor_id")
            for attribute in attributes.columns
        ],
        ignore_index=True,
    )


def _proxies(
    audit: pd.DataFrame, encoded: pd.DataFrame, attributes: pd.DataFrame, config: ExperimentConfig
) -> pd.DataFrame:
    """How well the model's inputs predict each protected attribute."""
    # one row per debtor (their latest): with repeated rows of a debtor in different folds the
    # proxy model would recognize the debtor rather than the attribute
    latest = audit.sort_values("event_timestamp")
    one_each = latest.drop_duplicates("debtor_id", keep="last").index.to_numpy()
    one_each = np.random.default_rng(config.seed).permutation(one_each)[:PROXY_SAMPLE]
    return proxy_strength(
        encoded.iloc[one_each].reset_index(drop=True),
        attributes.iloc[one_each].reset_index(drop=True),
        config.audit.min_group_size,
        seed=config.seed,
    )


def _drift(
    model: PropensityModel,
    train: pd.DataFrame,
    encoded_sample: pd.DataFrame,
    scores: np.ndarray,
    config: ExperimentConfig,
) -> tuple[pd.DataFrame, np.ndarray, float]:
    """Input drift per feature (PSI), the training window's scores and the score's PSI."""
    features = list(model.feature_names_)
    if not len(train):
        return pd.DataFrame({"feature": features, "psi": np.zeros(len(features))}), scores, 0.0
    train_sample = train.sample(min(len(train), DRIFT_SAMPLE), random_state=config.seed)
    drift = population_stability(model.encoder_.transform(train_sample), encoded_sample, features)
    score_column = f"p_payment_{config.horizon_days}d"
    train_scores = model.predict_frame(train_sample)[score_column].to_numpy(float)
    return drift, train_scores, psi(pd.Series(train_scores), pd.Series(scores))


def _explain(model: PropensityModel, rows: pd.DataFrame) -> _Explained:
    """SHAP values of `rows`, mean |SHAP| per feature and how often each reason comes first."""
    values, _ = model.explain(rows)
    features = list(model.feature_names_)
    mean_abs = pd.Series(np.abs(values).mean(axis=0), index=features).sort_values(ascending=False)
    reasons = _reason_counts(reasons_for_rows(values, rows, features, 3))
    return _Explained(rows, values, mean_abs, reasons)


def _window_summary(
    folder: Path, config: ExperimentConfig, window: _Window, explained_rows: int
) -> dict[str, Any]:
    """What was audited: the portfolio, the windows, the label and the sample explained."""
    audit, train = window.audit, window.train
    times = audit["event_timestamp"]
    return {
        "portfolio": Path(folder).resolve().name,
        "feature_service": config.feature_service,
        "audit_from": str(times.min())[:10],
        "audit_to": str(times.max())[:10],
        "audit_rows": len(audit),
        "as_of_times": int(times.nunique()),
        "train_from": str(train["event_timestamp"].min())[:10] if len(train) else None,
        "train_to": str(train["event_timestamp"].max())[:10] if len(train) else None,
        "train_rows": len(train),
        "label": f"any payment within {config.horizon_days} days",
        "explained_rows": explained_rows,
        "top_share": config.audit.top_share,
        "data_end": str(window.prepared.data_end)[:10],
    }


def run_audit(
    folder: Path,
    config: ExperimentConfig,
    which: str = "champion",
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    score_shift: Callable[[pd.DataFrame, np.ndarray], np.ndarray] | None = None,
) -> AuditResult:
    """Audit the propensity model `which` (alias or version number) on `folder`.

    `score_shift(rows, scores)` changes the scores before they are audited: only for
    showing what the audit catches (a planted bias in the tests and the walkthrough)."""
    say = progress or (lambda _: None)
    open_registry(tracking_uri, create=False)
    version = resolve_version(PROPENSITY_MODEL, which)
    model, _ = load_model(PROPENSITY_MODEL, str(version.version))
    config = _model_config(model, config)
    say(f"preparing the audit window of {folder}")
    window = _audit_window(folder, config)
    audit = window.audit
    say(f"scoring {len(audit):,} rows")
    scores = model.predict_frame(audit)[f"p_payment_{config.horizon_days}d"].to_numpy(float)
    if score_shift is not None:
        scores = score_shift(audit, scores)
    attributes = _attributes(Path(folder), audit)
    groups = _group_table(audit, attributes, scores, config, say)
    features = list(model.feature_names_)
    say("proxies")
    encoded = model.encoder_.transform(audit)
    sample = np.random.default_rng(config.seed).permutation(len(audit))[:DRIFT_SAMPLE]
    proxies = _proxies(audit, encoded, attributes, config)
    say("drift")
    drift, train_scores, score_psi = _drift(
        model, window.train, encoded.iloc[sample], scores, config
    )
    say("explanations")
    explained = sample[:EXPLAIN_SAMPLE]
    explanation = _explain(model, audit.iloc[explained].reset_index(drop=True))
    result = AuditResult(
        card=run_artifact(version.run_id, CARD_FILE),
        model=PROPENSITY_MODEL,
        version=str(version.version),
        run_id=version.run_id,
        checks=audit_checks(features, groups, proxies, drift, score_psi, config.audit),
        groups=groups,
        proxies=proxies,
        drift=drift,
        score_psi=score_psi,
        mean_abs_shap=explanation.mean_abs,
        reason_counts=explanation.reasons,
        features=features,
        window=_window_summary(folder, config, window, len(explanation.rows)),
        thresholds=config.audit.model_dump(),
    )
    say("figures")
    shown = encoded.iloc[explained].reset_index(drop=True)
    result.figures = _figures(result, explanation.values, shown, train_scores, scores)
    return result


def _figures(
    result: AuditResult,
    values: np.ndarray,
    shown: pd.DataFrame,
    train_scores: np.ndarray,
    scores: np.ndarray,
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "mean_shap": mean_shap_figure(result.mean_abs_shap),
        "shap_summary": shap_summary_figure(values, shown, top=15),
        "scores": score_distribution_figure(train_scores, scores),
    }
    for feature in result.mean_abs_shap.index[:3]:
        figures[f"dependence_{feature}"] = dependence_figure(values, shown, feature)
    minimum = float(result.thresholds["adverse_impact_min"])
    for attribute, table in result.groups.groupby("attribute", sort=False, observed=True):
        figures[f"air_{attribute}"] = adverse_impact_figure(table, str(attribute), minimum)
    return figures


def audit_and_store(
    folder: Path,
    config: ExperimentConfig,
    which: str,
    out: Path,
    rules_path: Path | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    log: bool = True,
    score_shift: Callable[[pd.DataFrame, np.ndarray], np.ndarray] | None = None,
) -> tuple[AuditResult, tuple[Path, Path]]:
    """`run_audit`, with the portfolio's collection KPIs when `rules_path` is given, written
    to `out/<model>-v<version>/` and (with `log`) logged to the version's MLflow run."""
    say = progress or (lambda _: None)
    rules = load_rules(rules_path) if rules_path is not None else None  # fails before the work
    result = run_audit(folder, config, which, tracking_uri, progress, score_shift)
    if rules is not None:
        say("collection KPIs")
        result.kpis = portfolio_kpis(folder, config.actions.contact_cost, rules)
        result.figures.update(kpi_figures(result.kpis))
    say("writing the report")
    files = write_audit(result, Path(out) / f"{result.model}-v{result.version}")
    if log:
        log_audit(result, files)
    return result, files


def write_audit(result: AuditResult, out: Path) -> tuple[Path, Path]:
    """The self-contained HTML report and the JSON summary, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    report, summary = out / REPORT_FILE, out / SUMMARY_FILE
    report.write_text(render_report(result, result.card), encoding="utf-8")
    summary.write_text(json.dumps(result.summary(), indent=2, default=str), encoding="utf-8")
    return report, summary


def log_audit(result: AuditResult, files: tuple[Path, Path]) -> None:
    """Log the report and summary to the model version's run; tag the version."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if result.run_id:
        for path in files:
            client.log_artifact(result.run_id, str(path), AUDIT_ARTIFACTS)
    client.set_model_version_tag(result.model, result.version, VERDICT_TAG, result.verdict)
    client.set_model_version_tag(result.model, result.version, AUDITED_AT_TAG, result.at)
