"""Model quality metrics for payment probabilities and expected amounts (pure numpy)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
    "lift_top_decile": True,
    "value_lift_top_decile": True,
    "capture_top_decile": True,
    "policy_dr": True,
    "policy_snips": True,
    "contact_roc_auc": True,
}


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-width probability bins, weighted by
    the share of rows in each bin."""
    y_true, p = np.asarray(y_true, float), np.asarray(p, float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    error = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            error += mask.mean() * abs(y_true[mask].mean() - p[mask].mean())
    return float(error)


def top_decile(
    score: np.ndarray, y_true: np.ndarray, amount: np.ndarray | None
) -> tuple[float, float]:
    """Lift of the payment rate and share of the collected amount in the top 10% by score."""
    score = np.asarray(score, float)
    k = max(1, int(np.ceil(0.1 * len(score))))
    top = np.argsort(-score, kind="stable")[:k]
    rate = np.asarray(y_true, float).mean()
    lift = float(np.asarray(y_true, float)[top].mean() / rate) if rate > 0 else float("nan")
    if amount is None:
        return lift, float("nan")
    amount = np.asarray(amount, float)
    total = amount.sum()
    capture = float(amount[top].sum() / total) if total > 0 else float("nan")
    return lift, capture


def classification_metrics(
    y_true: np.ndarray,
    p: np.ndarray,
    amount: np.ndarray | None = None,
    score: np.ndarray | None = None,
) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, ECE, and the top decile's lift and amount capture.

    `lift_top_decile` is the lift of the payment rate in the top 10% by probability `p`;
    `value_lift_top_decile` and `capture_top_decile` are the lift of the payment rate and the
    share of the collected amount in the top 10% by `score` (default `p`; pass the expected
    amount to rank by value, as a worklist does).
    """
    y_true = np.asarray(y_true, int)
    p = np.clip(np.asarray(p, float), 1e-7, 1 - 1e-7)
    both = len(np.unique(y_true)) == 2
    lift, _ = top_decile(p, y_true, None)
    value_lift, capture = top_decile(p if score is None else score, y_true, amount)
    return {
        "roc_auc": float(roc_auc_score(y_true, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y_true, p)) if both else float("nan"),
        "log_loss": float(log_loss(y_true, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y_true, p)),
        "ece": expected_calibration_error(y_true, p),
        "lift_top_decile": lift,
        "value_lift_top_decile": value_lift,
        "capture_top_decile": capture,
        "rows": float(len(y_true)),
        "positive_rate": float(y_true.mean()) if len(y_true) else float("nan"),
    }


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Mean absolute error, root mean squared error and the ratio of totals."""
    y_true, predicted = np.asarray(y_true, float), np.asarray(predicted, float)
    total = y_true.sum()
    return {
        "mae": float(np.abs(y_true - predicted).mean()),
        "rmse": float(np.sqrt(((y_true - predicted) ** 2).mean())),
        "predicted_over_actual_total": float(predicted.sum() / total) if total else float("nan"),
    }


def is_better(metric: str, challenger: float, champion: float, margin: float) -> bool:
    """Whether the challenger beats the champion on `metric` by at least `margin`; a tie never
    does, whatever the margin."""
    if np.isnan(challenger):
        return False
    if np.isnan(champion):
        return True
    if HIGHER_IS_BETTER[metric]:
        return challenger >= champion + margin and challenger > champion
    return challenger <= champion - margin and challenger < champion
