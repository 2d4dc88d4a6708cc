"""SHAP explanations in one place, and reason codes a collector or a debtor can read.

SHAP's output shape for binary LightGBM models has changed between versions (a list of two
arrays, a 3-d array, or a 2-d array for the positive class); `normalize_shap_values` turns any
of them into one (rows, features) array of the positive class. LightGBM's own
`pred_contrib=True` computes the same exact TreeSHAP values; SHAP 0.51's TreeExplainer hands
LightGBM boosters to that same routine, so the two agree to the bit and take the same time
(`benchmarks/training.py`). We call LightGBM directly: no explainer to build, and it honours the
early-stopped iteration.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.catalog import ALL_FEATURES


def split_contributions(raw: Any, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """LightGBM `pred_contrib` output (rows, features + 1) -> (values, base value)."""
    raw = np.asarray(raw.toarray() if hasattr(raw, "toarray") else raw, dtype=float)
    if raw.ndim != 2 or raw.shape[1] != n_features + 1:
        raise ValueError(f"contributions of shape {raw.shape} for {n_features} features")
    return raw[:, :n_features], raw[:, n_features]


def normalize_shap_values(values: Any, n_features: int) -> np.ndarray:
    """SHAP values of the positive class as a (rows, features) array, whatever SHAP returned:
    an `Explanation`, a list `[negative, positive]`, (rows, features, classes) or
    (rows, features)."""
    if hasattr(values, "values"):  # shap.Explanation
        values = values.values
    if isinstance(values, list):
        values = values[-1]
    array = np.asarray(values, dtype=float)
    if array.ndim == 3:
        array = array[:, :, -1]
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_features:
        raise ValueError(f"SHAP values of shape {array.shape} for {n_features} features")
    return array


def tree_explainer_values(booster: Any, X: Any) -> np.ndarray:
    """Exact TreeSHAP values from SHAP's TreeExplainer, normalized (the slower reference)."""
    import warnings

    import shap

    explainer = shap.TreeExplainer(booster)
    with warnings.catch_warnings():
        # SHAP warns that its output shape for binary LightGBM changed: normalized just below
        warnings.filterwarnings("ignore", message=".*shap values output has changed")
        values = explainer.shap_values(X)
    return normalize_shap_values(values, X.shape[1])


@dataclass(frozen=True)
class Reason:
    feature: str
    value: Any
    contribution: float
    direction: str  # "up" or "down": pushes the score up or down
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif isinstance(value, np.generic):
            value = value.item()
        return {
            "feature": self.feature,
            "value": value,
            "contribution": round(float(self.contribution), 4),
            "direction": self.direction,
            "sentence": self.sentence,
        }


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _plural(value: float, word: str) -> str:
    return f"{_n(value)} {word}{'' if round(value) == 1 else 's'}"


_Template = Callable[[float, re.Match[str]], str]
_TEMPLATES: list[tuple[str, _Template, str]] = [
    # (pattern, sentence for a known value, sentence when missing)
    (r"payments_count_(\d+)d", lambda v, m: f"{_plural(v, 'payment')} in the last {m[1]} days", ""),
    (r"payments_sum_(\d+)d", lambda v, m: f"{_money(v)} paid in the last {m[1]} days", ""),
    (
        r"days_since_last_payment",
        lambda v, m: f"last payment {_plural(v, 'day')} ago",
        "no payment on record",
    ),
    (
        r"promises_broken_(\d+)d",
        lambda v, m: f"{_plural(v, 'promise')} broken in the last {m[1]} days",
        "",
    ),
    (
        r"promises_kept_(\d+)d",
        lambda v, m: f"{_plural(v, 'promise')} kept in the last {m[1]} days",
        "",
    ),
    (
        r"promises_made_(\d+)d",
        lambda v, m: f"{_plural(v, 'promise')} to pay made in the last {m[1]} days",
        "",
    ),
    (
        r"promises_kept_rate_365d",
        lambda v, m: f"kept {v:.0%} of promises this year",
        "no promise resolved this year",
    ),
    (
        r"days_since_last_broken_promise",
        lambda v, m: f"last broken promise {_plural(v, 'day')} ago",
        "no broken promise on record",
    ),
    (r"open_promise_amount", lambda v, m: f"{_money(v)} promised and not yet due", ""),
    (r"current_balance", lambda v, m: f"balance of {_money(v)}", ""),
    (r"original_balance", lambda v, m: f"{_money(v)} placed for collection", ""),
    (r"paid_share_of_placed_balance", lambda v, m: f"{v:.0%} of the placed balance paid", ""),
    (r"days_past_due", lambda v, m: f"{_plural(v, 'day')} past due", ""),
    (r"days_since_placement", lambda v, m: f"in collections for {_plural(v, 'day')}", ""),
    (
        r"(call|sms|email|letter)_attempts_(\d+)d",
        lambda v, m: f"{_n(v)} {m[1]} attempts in the last {m[2]} days",
        "",
    ),
    (
        r"(call|sms|email|letter)_responses_(\d+)d",
        lambda v, m: f"answered {_n(v)} {m[1]} contacts in the last {m[2]} days",
        "",
    ),
    (
        r"(call|sms|email|letter)_response_rate_90d",
        lambda v, m: f"answers {v:.0%} of {m[1]} contacts",
        "",
    ),
    (
        r"days_since_last_conversation",
        lambda v, m: f"last reached {_plural(v, 'day')} ago",
        "never reached",
    ),
    (
        r"debtor_days_since_last_conversation",
        lambda v, m: f"debtor last reached {_plural(v, 'day')} ago",
        "debtor never reached",
    ),
    (r"disputes_total", lambda v, m: f"{_plural(v, 'dispute')} raised", ""),
    (
        r"days_since_last_attempt",
        lambda v, m: f"last contact attempt {_plural(v, 'day')} ago",
        "never contacted",
    ),
    (
        r"days_since_last_offer",
        lambda v, m: f"last offer {_plural(v, 'day')} ago",
        "no offer made yet",
    ),
    (
        r"payments_count_before_placement",
        lambda v, m: f"{_plural(v, 'payment')} before placement",
        "",
    ),
    (
        r"best_accepted_discount_pct",
        lambda v, m: f"accepted a {v:.0f}% settlement discount",
        "no settlement discount accepted",
    ),
    (r"offers_accepted_total", lambda v, m: f"{_plural(v, 'offer')} accepted", ""),
    (r"amount_forgiven_total", lambda v, m: f"{_money(v)} forgiven by a settlement", ""),
    (
        r"days_since_last_account_event",
        lambda v, m: f"last account event {_plural(v, 'day')} ago",
        "no account event on record",
    ),
    (r"debtor_accounts_placed", lambda v, m: f"{_plural(v, 'account')} in collections", ""),
    (r"debtor_payments_sum_90d", lambda v, m: f"{_money(v)} paid on all accounts in 90 days", ""),
    (r"utilization_last", lambda v, m: f"latest statement uses {v:.0%} of the credit limit", ""),
    (
        r"statement_days_past_due_last",
        lambda v, m: f"latest statement {_plural(v, 'day')} past due",
        "",
    ),
]
_TEXT_TEMPLATES: dict[str, Callable[[str], str]] = {
    "last_account_event_kind": lambda kind: (
        "no account event on record" if kind == "none" else f"account {kind.replace('_', ' ')}"
    ),
}
"""Sentences for text features whose description reads badly before a value."""
_DESCRIPTIONS = {
    # "Largest discount accepted; empty if none." -> "Largest discount accepted"
    spec.name: spec.description.split(";")[0].rstrip(".")
    for spec in ALL_FEATURES
}


def reason_sentence(feature: str, value: Any) -> str:
    """A short sentence for a feature's value ("3 promises broken in the last 90 days")."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, str) and feature in _TEXT_TEMPLATES:
        return _TEXT_TEMPLATES[feature](value)
    if isinstance(value, str) or (not missing and not isinstance(value, int | float | np.number)):
        description = _DESCRIPTIONS.get(feature, feature.replace("_", " "))
        return f"{description}: {value}"
    for pattern, sentence, when_missing in _TEMPLATES:
        match = re.fullmatch(pattern, feature)
        if match:
            if missing:
                return when_missing or f"{_DESCRIPTIONS.get(feature, feature)}: none on record"
            return sentence(float(value), match)
    description = _DESCRIPTIONS.get(feature, feature.replace("_", " "))
    if missing:
        return f"{description}: none on record"
    number = float(value)
    shown = _n(number) if number == round(number) else f"{number:,.2f}"
    return f"{description}: {shown}"


def reason_codes(
    contributions: np.ndarray,
    values: Sequence[Any],
    features: Sequence[str],
    top: int = 3,
) -> list[Reason]:
    """The `top` features pushing one row's score up and the `top` pushing it down, largest
    first, each with a readable sentence."""
    contributions = np.asarray(contributions, dtype=float)
    order = np.argsort(-np.abs(contributions), kind="stable")
    ups: list[Reason] = []
    downs: list[Reason] = []
    for index in order:
        contribution = contributions[index]
        if contribution == 0:
            break
        target = ups if contribution > 0 else downs
        if len(target) >= top:
            if len(ups) >= top and len(downs) >= top:
                break
            continue
        target.append(
            Reason(
                feature=features[index],
                value=values[index],
                contribution=float(contribution),
                direction="up" if contribution > 0 else "down",
                sentence=reason_sentence(features[index], values[index]),
            )
        )
    return ups + downs


def reasons_for_rows(
    contributions: np.ndarray, frame: Any, features: Sequence[str], top: int = 3
) -> list[list[Reason]]:
    """Reason codes for every row of `frame` (the model's input columns)."""
    values = frame[list(features)].to_numpy(dtype=object)
    return [reason_codes(contributions[i], values[i], features, top) for i in range(len(values))]
