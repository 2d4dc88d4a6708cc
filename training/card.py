"""The model cards: short markdown pages logged with every run (pure text), and what each
model's card says about its use, metrics and limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _metric_table(metrics: Mapping[str, float], keys: Sequence[str]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for key in keys:
        if key in metrics:
            lines.append(f"| {key} | {metrics[key]:.4f} |")
    return "\n".join(lines)


def model_card(
    name: str,
    purpose: str,
    data: Mapping[str, Any],
    metrics: Mapping[str, float],
    metric_keys: Sequence[str],
    features: Sequence[str],
    limits: Sequence[str],
) -> str:
    """Markdown: intended use, data window, metrics, inputs and known limits."""
    data_lines = "\n".join(f"- {key}: {value}" for key, value in data.items())
    limit_lines = "\n".join(f"- {line}" for line in limits)
    return f"""# Model card: {name}

## Intended use
{purpose}

Not for: decisions about credit, employment or housing; contacting anyone outside the legal
limits (the worklist enforces them); judging individual debtors without a person's review.

## Data
{data_lines}

## Metrics (test window, never used for training, early stopping or calibration)
{_metric_table(metrics, metric_keys)}

## Inputs
{len(features)} features from the feature service above. Audit-only attributes (age band,
gender, marital status, education) are never inputs. First inputs: {", ".join(features[:12])}
{"..." if len(features) > 12 else ""}

## Limits
{limit_lines}
"""


PROPENSITY_LIMITS = (
    "Learned from the history of one collection operation and its contact policy; a new "
    "policy or portfolio mix shifts the probabilities: retrain and compare before trusting it.",
    "Probabilities are calibrated on the validation window; recalibrate after large changes.",
    "Explanations (SHAP) are of the uncalibrated log-odds; calibration is monotone, so the "
    "direction of every reason holds.",
)
ACTION_LIMITS = (
    "Learned from logged contacts: actions the logging policy never took cannot be valued.",
    "The net amount of a contact counts every payment in the 30 days after it, including "
    "those that later contacts helped bring in.",
    "Off-policy estimates assume the logged action probabilities are right; they are checked "
    "against the simulator's policy in tests.",
)
PROPENSITY_CARD_METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "brier_uncalibrated",
    "ece",
    "lift_top_decile",
    "value_lift_top_decile",
    "capture_top_decile",
    "cv_roc_auc_mean",
    "cv_roc_auc_std",
    "truth_roc_auc_ceiling",
    "truth_roc_auc_ratio",
)
ACTION_CARD_METRICS = (
    "contact_roc_auc",
    "contact_brier",
    "contact_ece",
    "value_mae",
    "policy_logging_policy",
    "policy_ips",
    "policy_snips",
    "policy_dr",
    "policy_dr_ci_low",
    "policy_dr_ci_high",
)


def propensity_card(
    name: str,
    horizon_days: int,
    data: Mapping[str, Any],
    run_metrics: Mapping[str, float],
    features: Sequence[str],
) -> str:
    """The propensity model's card, from a training run's metrics: the test window's (without
    their `test_` prefix), cross-validation's and the comparisons with the simulator's truth."""
    metrics = {k.removeprefix("test_"): v for k, v in run_metrics.items() if k.startswith("test_")}
    metrics.update({k: v for k, v in run_metrics.items() if k.startswith(("cv_", "truth_"))})
    purpose = (
        "Ranks overdue accounts by their probability of paying within "
        f"{horizon_days} days and the amount expected, so collectors work the "
        "accounts most likely to pay first; serving multiplies the calibrated "
        "probability by balances."
    )
    return model_card(
        name, purpose, data, metrics, PROPENSITY_CARD_METRICS, features, PROPENSITY_LIMITS
    )


def next_best_action_card(
    name: str, data: Mapping[str, Any], run_metrics: Mapping[str, float], features: Sequence[str]
) -> str:
    """The next-best-action models' card, from a training run's `nba_` metrics."""
    metrics = {k.removeprefix("nba_"): v for k, v in run_metrics.items() if k.startswith("nba_")}
    purpose = (
        "Values each action (channel, hour band, offer) for an account so serving "
        "can pick the best compliant action; also gives the probability of "
        "reaching the debtor by channel, hour band and weekday."
    )
    return model_card(name, purpose, data, metrics, ACTION_CARD_METRICS, features, ACTION_LIMITS)
