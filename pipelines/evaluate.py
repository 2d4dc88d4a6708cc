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
from pipelines.portfolio import require_action_probability
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
    registry_lock,
    remove_alias,
    set_alias,
    stored_audit,
)
from pipelines.train import PreparedData, prepare_data
from training.config import ExperimentConfig
from training.fit import evaluate_next_best_action, evaluate_propensity
from training.metrics import is_better
from training.splits import TEST, window


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
        test = window(prepared.propensity, TEST)
        return evaluate_propensity(model, test, model.horizon_days, "")
    require_action_probability(data.folder)
    if prepared.actions is None:
        raise EvaluationError(f"{data.folder}: no logged contacts to evaluate actions on")
    test = window(prepared.actions, TEST)
    metrics, _ = evaluate_next_best_action(model, test, model.horizon_days, config.seed)
    return metrics


def evaluate_registered(
    folder: Path, config: ExperimentConfig, which_version: str, which: str, tracking_uri: str | None
) -> dict[str, tuple[str, dict[str, float]]]:
    if "next-best-action" in _choices(which):
        require_action_probability(folder)  # before any work: a refusal, not a wrong estimate
    open_registry(tracking_uri, create=False)
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


def _compare(
    kind: str, challenger: Any, champion: Any, data: _Data, config: ExperimentConfig
) -> Decision:
    """Score challenger and champion on the same test window by the experiment's metric: the
    challenger wins only if strictly better by the margin (a tie never wins)."""
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
    wins = is_better(metric, scores["challenger"], scores["champion"], margin)
    return Decision(name, wins, summary, comparison)


def _pairs(challengers: dict[str, Any]) -> list[dict[str, Any]]:
    """The challengers grouped by the training run that produced them (a run's models are
    promoted together), in the order of the kinds."""
    runs: dict[str | None, dict[str, Any]] = {}
    for kind, version in challengers.items():
        runs.setdefault(version.run_id, {})[kind] = version
    return list(runs.values())


def _verdicts(
    store: Any, pair: dict[str, Any], deciding: list[str], context: _Context
) -> dict[str, Decision]:
    """Each model's verdict: the audit gate for a propensity model (always, since it would
    become champion with its pair), and the comparison with its champion for the deciding
    models (winning by default when there is no champion to beat)."""
    verdicts: dict[str, Decision] = {}
    for kind, challenger in pair.items():
        name, version = MODEL_NAMES[kind], str(challenger.version)
        if kind == "propensity" and context.config.promotion.require_audit:
            blocked = audit_gate(
                context.folder,
                context.config,
                version,
                context.override_audit,
                store,
                context.reports,
                context.rules_path,
                context.tracking_uri,
            )
            if blocked is not None:
                verdicts[kind] = _refused_by_audit(store, name, version, blocked)
                continue
        if kind in deciding:
            champion = alias_version(name, CHAMPION)
            verdicts[kind] = (
                Decision(name, True, "", {})
                if champion is None
                else _compare(kind, challenger, champion, context.data, context.config)
            )
    return verdicts


def _promote_pair(
    store: Any, pair: dict[str, Any], verdicts: dict[str, Decision], reason: str | None
) -> list[Decision]:
    """Move every model of the run to `champion` (a model that was not compared goes with
    its pair) and report the compared ones."""
    decisions = []
    for kind, challenger in pair.items():
        name, version, verdict = MODEL_NAMES[kind], str(challenger.version), verdicts.get(kind)
        if verdict is None:
            set_alias(store, name, CHAMPION, version, reason or "promoted with its run's pair")
        elif not verdict.message:  # nothing to beat
            set_alias(store, name, CHAMPION, version, reason or "no champion yet")
            decisions.append(
                Decision(name, True, f"{name}: v{version} is champion (none before)", {})
            )
        else:
            set_alias(store, name, CHAMPION, version, reason or verdict.message, verdict.metrics)
            decisions.append(
                Decision(name, True, f"{name}: promoted; {verdict.message}", verdict.metrics)
            )
        remove_alias(store, name, CHALLENGER, "promoted to champion")
    return decisions


def _refuse_pair(
    store: Any, pair: dict[str, Any], verdicts: dict[str, Decision], reason: str | None
) -> list[Decision]:
    """Log, once per compared model, why the run's pair stays challenger."""
    losers = ", ".join(MODEL_NAMES[k] for k, v in verdicts.items() if not v.promoted)
    decisions = []
    for kind, verdict in verdicts.items():
        name, version = MODEL_NAMES[kind], str(pair[kind].version)
        if verdict.metrics.get("audit") == "flag":  # already logged by the gate
            decisions.append(verdict)
            continue
        if verdict.promoted:
            why = f"its run's pair is not promoted ({losers} did not earn it)"
            message = f"{name}: not promoted; {verdict.message or 'no champion before'}; {why}"
        else:
            why = f"challenger does not beat the champion: {verdict.message}"
            message = f"{name}: not promoted; {verdict.message}"
        _refuse(store, name, version, reason or why, verdict.metrics)
        decisions.append(Decision(name, False, message, verdict.metrics))
    return decisions


@dataclass
class _Context:
    """What every promotion decision of one `promote` needs."""

    folder: Path
    config: ExperimentConfig
    data: _Data
    reason: str | None
    override_audit: str | None
    reports: Path
    rules_path: Path | None
    tracking_uri: str | None


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
    """Promote each training run's challengers as a pair: the models chosen by `which` must
    each beat their champion by the configured metric and margin on the same test window (a
    tie never promotes), and the propensity model must pass its fairness audit (see
    `audit_gate`); then every model of that run becomes champion together. Every decision is
    recorded once; concurrent promotions wait for each other (the registry's lock)."""
    store = open_registry(tracking_uri, create=False)
    choices = _choices(which)
    context = _Context(
        Path(folder),
        config,
        _Data(folder, config),
        reason,
        override_audit,
        reports,
        rules_path,
        tracking_uri,
    )
    with registry_lock(store):
        challengers = {
            kind: version
            for kind in MODEL_NAMES
            if (version := alias_version(MODEL_NAMES[kind], CHALLENGER)) is not None
        }
        decisions = []
        for kind in choices:
            if kind not in challengers:
                name = MODEL_NAMES[kind]
                champion = alias_version(name, CHAMPION)
                state = "no challenger to promote" + (
                    f"; champion is v{champion.version}" if champion else ""
                )
                decisions.append(Decision(name, champion is not None, f"{name}: {state}", {}))
        for pair in _pairs(challengers):
            deciding = [kind for kind in pair if kind in choices]
            if not deciding:
                continue
            verdicts = _verdicts(store, pair, deciding, context)
            if all(v.promoted for v in verdicts.values()):
                decisions += _promote_pair(store, pair, verdicts, reason)
            else:
                decisions += _refuse_pair(store, pair, verdicts, reason)
    order = {MODEL_NAMES[kind]: i for i, kind in enumerate(MODEL_NAMES)}
    return sorted(decisions, key=lambda d: order[d.model])
