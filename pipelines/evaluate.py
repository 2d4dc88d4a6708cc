"""Evaluate registered models on a portfolio's recent test window, and promote challengers.

Champion and challenger are scored on the same rows: the test window of the data given (the
last as-of times, after the embargo), with features from each model's own feature service.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.audit import audit_and_store
from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    PROPENSITY_MODEL,
    SUMMARY_FILE,
    actor,
    alias_version,
    load_model,
    open_registry,
    record,
    remove_alias,
    set_alias,
    stored_audit,
)
from pipelines.train import PreparedData, prepare_data
from training.config import ExperimentConfig
from training.fit import evaluate_next_best_action, evaluate_propensity
from training.metrics import is_better
from training.splits import TEST


class EvaluationError(RuntimeError):
    """The models cannot be evaluated on this data (no test window, no actions logged)."""


def _choices(which: str) -> list[str]:
    if which == "both":
        return list(MODEL_NAMES)
    if which not in MODEL_NAMES:
        raise EvaluationError(f"unknown model {which!r}: propensity, next-best-action or both")
    return [which]


class _Data:
    """Prepared data per feature service, built once."""

    def __init__(self, folder: Path, config: ExperimentConfig) -> None:
        self.folder, self.config = Path(folder), config
        self._cache: dict[str, PreparedData] = {}

    def get(self, service: str) -> PreparedData:
        if service not in self._cache:
            config = self.config.model_copy(update={"feature_service": service})
            prepared = prepare_data(self.folder, config)
            if prepared.split is None:
                raise EvaluationError(
                    f"{self.folder}: one as-of time only; evaluation and promotion need a "
                    "recent test window (a portfolio with weekly snapshots)"
                )
            self._cache[service] = prepared
        return self._cache[service]


def model_metrics(kind: str, model: Any, data: _Data, config: ExperimentConfig) -> dict[str, float]:
    """Test-window metrics of one model object."""
    service = getattr(model, "metadata_", {}).get("feature_service", config.feature_service)
    prepared = data.get(service)
    if kind == "propensity":
        test = prepared.propensity[prepared.propensity["split"] == TEST]
        return evaluate_propensity(model, test, model.horizon_days, "")
    if prepared.actions is None:
        raise EvaluationError(f"{data.folder}: no logged contacts to evaluate actions on")
    test = prepared.actions[prepared.actions["split"] == TEST]
    metrics, _ = evaluate_next_best_action(model, test, model.horizon_days, config.seed)
    return metrics


def evaluate_registered(
    folder: Path, config: ExperimentConfig, which_version: str, which: str, tracking_uri: str | None
) -> dict[str, tuple[str, dict[str, float]]]:
    open_registry(tracking_uri)
    data = _Data(folder, config)
    results = {}
    for kind in _choices(which):
        model, version = load_model(MODEL_NAMES[kind], which_version)
        results[kind] = (str(version.version), model_metrics(kind, model, data, config))
    return results


@dataclass(frozen=True)
class Decision:
    model: str
    promoted: bool
    message: str
    metrics: dict[str, Any]


def audit_gate(
    folder: Path,
    config: ExperimentConfig,
    version: str,
    override: str | None,
    store: Any,
    reports: Path,
    rules_path: Path | None = None,
    tracking_uri: str | None = None,
) -> str | None:
    """Why the propensity model `version` may not be promoted, or None when it may.

    Reads the version's stored audit (`cobranza audit`), or audits it now and stores it. A
    flagged check blocks unless `override` gives a written reason, which goes to the audit log
    with the flags it overrides."""
    text = stored_audit(PROPENSITY_MODEL, version, SUMMARY_FILE)
    if text is not None:
        summary = json.loads(text)
        verdict, flags = summary["verdict"], summary["flags"]
    else:
        result, _ = audit_and_store(
            folder, config, version, reports, rules_path, tracking_uri=tracking_uri
        )
        verdict = result.verdict
        flags = [c.as_dict() for c in result.checks if c.status == "flag"]
    if verdict != "flag":
        return None
    flagged = "; ".join(f"{f['name']}: {f['detail']}" for f in flags)
    if override and override.strip():
        record(
            store,
            {
                "action": "audit_override",
                "model": PROPENSITY_MODEL,
                "version": version,
                "who": actor(),
                "why": override.strip(),
                "flags": flags,
            },
        )
        return None
    return f"the audit flags {flagged}"


def _refuse(
    store: Any, name: str, version: str, why: str, metrics: dict[str, Any] | None = None
) -> None:
    """Log a refused promotion (who, why, and the comparison when there was one)."""
    entry = {"action": "refused_promotion", "model": name, "version": version}
    entry |= {"who": actor(), "why": why} | ({"metrics": metrics} if metrics else {})
    record(store, entry)


def _refused_by_audit(store: Any, name: str, version: str, blocked: str) -> Decision:
    """Record and report a challenger the audit gate stopped."""
    _refuse(store, name, version, blocked)
    message = (
        f"{name}: v{version} not promoted; {blocked} (override with "
        '--override-audit "a written reason")'
    )
    return Decision(name, False, message, {"audit": "flag"})


def _first_champion(store: Any, name: str, challenger: Any, reason: str | None) -> Decision:
    """The challenger becomes champion: there is none to beat."""
    set_alias(store, name, CHAMPION, challenger.version, reason or "no champion yet")
    remove_alias(store, name, CHALLENGER, "promoted to champion")
    return Decision(name, True, f"{name}: v{challenger.version} is champion (none before)", {})


def _challenge(
    store: Any,
    kind: str,
    challenger: Any,
    champion: Any,
    data: _Data,
    config: ExperimentConfig,
    reason: str | None,
) -> Decision:
    """Score challenger and champion on the same test window by the experiment's metric; the
    challenger becomes champion only if it wins by the margin."""
    name = MODEL_NAMES[kind]
    metric, margin = (
        (config.promotion.metric, config.promotion.margin)
        if kind == "propensity"
        else (config.promotion.action_metric, config.promotion.action_margin)
    )
    scores = {}
    for role, version in (("challenger", challenger), ("champion", champion)):
        model, _ = load_model(name, str(version.version))
        scores[role] = model_metrics(kind, model, data, config)[metric]
    comparison = {
        "metric": metric,
        "margin": margin,
        "challenger_version": str(challenger.version),
        "champion_version": str(champion.version),
        "challenger": scores["challenger"],
        "champion": scores["champion"],
    }
    summary = (
        f"{metric} {scores['challenger']:.4f} (challenger v{challenger.version}) vs "
        f"{scores['champion']:.4f} (champion v{champion.version}), margin {margin}"
    )
    if is_better(metric, scores["challenger"], scores["champion"], margin):
        set_alias(store, name, CHAMPION, challenger.version, reason or summary, comparison)
        remove_alias(store, name, CHALLENGER, "promoted to champion")
        return Decision(name, True, f"{name}: promoted; {summary}", comparison)
    why = reason or f"challenger does not beat the champion: {summary}"
    _refuse(store, name, str(challenger.version), why, comparison)
    return Decision(name, False, f"{name}: not promoted; {summary}", comparison)


def promote_challengers(
    folder: Path,
    config: ExperimentConfig,
    which: str,
    reason: str | None,
    tracking_uri: str | None,
    override_audit: str | None = None,
    reports: Path = Path("reports"),
    rules_path: Path | None = None,
) -> list[Decision]:
    """For each model: make the challenger champion only if its audit passes (propensity;
    see `audit_gate`) and it beats the champion by the configured metric and margin on the
    same test window; record every decision."""
    store = open_registry(tracking_uri)
    data = _Data(folder, config)
    decisions = []
    for kind in _choices(which):
        name = MODEL_NAMES[kind]
        challenger, champion = alias_version(name, CHALLENGER), alias_version(name, CHAMPION)
        if challenger is None:
            state = "no challenger to promote" + (
                f"; champion is v{champion.version}" if champion else ""
            )
            decisions.append(Decision(name, champion is not None, f"{name}: {state}", {}))
            continue
        version = str(challenger.version)
        if kind == "propensity" and config.promotion.require_audit:
            blocked = audit_gate(
                folder, config, version, override_audit, store, reports, rules_path, tracking_uri
            )
            if blocked is not None:
                decisions.append(_refused_by_audit(store, name, version, blocked))
                continue
        if champion is None:
            decisions.append(_first_champion(store, name, challenger, reason))
        else:
            decisions.append(_challenge(store, kind, challenger, champion, data, config, reason))
    return decisions
