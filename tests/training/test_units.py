"""Metrics, SHAP shapes and reason codes, off-policy estimators and experiment files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import ExperimentError, load_experiment
from training.explain import (
    normalize_shap_values,
    reason_codes,
    reason_sentence,
    split_contributions,
    tree_explainer_values,
)
from training.metrics import classification_metrics, expected_calibration_error, is_better
from training.policy import off_policy_estimates, target_probability

REPO = Path(__file__).resolve().parents[2]


def test_expected_calibration_error_by_hand() -> None:
    y = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.05] * 5 + [0.95] * 5)  # bins: 0.05 -> 3/5 observed, 0.95 -> 0/5 observed
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.55 + 0.5 * 0.95)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_top_decile_lift_and_capture() -> None:
    y = np.array([1] + [0] * 9 + [1] * 2 + [0] * 8)
    amount = np.where(y == 1, 100.0, 0.0)
    amount[0] = 700.0
    score = -np.arange(20.0)  # rows 0 and 1 are the top decile
    metrics = classification_metrics(y, np.linspace(0.9, 0.1, 20), amount, score)
    assert metrics["lift_top_decile"] == pytest.approx(0.5 / 0.15)
    assert metrics["capture_top_decile"] == pytest.approx(700 / 900)


def test_promotion_comparison_respects_direction_and_margin() -> None:
    assert is_better("roc_auc", 0.80, 0.79, 0.005)
    assert not is_better("roc_auc", 0.794, 0.79, 0.005)
    assert is_better("log_loss", 0.30, 0.32, 0.01)
    assert not is_better("log_loss", 0.315, 0.32, 0.01)
    assert not is_better("roc_auc", float("nan"), 0.5, 0.0)


def test_payment_rate_lift_ranks_by_probability_and_value_lift_by_value() -> None:
    """The lift of the payment rate ranks by the propensity score; ranked by expected amount,
    the same top decile is a different one, reported under its own name."""
    y = np.array([1, 1] + [0] * 18)
    p = np.r_[0.9, 0.8, np.full(18, 0.1)]
    amount = np.where(y == 1, 10.0, 0.0)
    value = np.r_[0.0, 0.0, np.linspace(100, 50, 18)]  # the big balances never pay here
    metrics = classification_metrics(y, p, amount, value)
    assert metrics["lift_top_decile"] == pytest.approx(1.0 / 0.1)
    assert metrics["value_lift_top_decile"] == 0.0
    assert metrics["capture_top_decile"] == 0.0


def test_a_tie_never_promotes_whatever_the_margin() -> None:
    for metric in ("roc_auc", "log_loss", "policy_dr"):
        assert not is_better(metric, 0.5, 0.5, 0.0)
        assert not is_better(metric, 0.5, 0.5, 0.01)
    assert is_better("policy_dr", 0.5001, 0.5, 0.0)
    assert is_better("log_loss", 0.4999, 0.5, 0.0)


@pytest.mark.parametrize(
    "shape",
    ["list", "three_d", "two_d", "explanation"],
)
def test_shap_output_shapes_are_normalized(shape: str) -> None:
    positive = np.arange(12.0).reshape(4, 3)
    raw = {
        "list": [-positive, positive],
        "three_d": np.stack([-positive, positive], axis=2),
        "two_d": positive,
        "explanation": type("Explanation", (), {"values": positive})(),
    }[shape]
    np.testing.assert_array_equal(normalize_shap_values(raw, 3), positive)
    with pytest.raises(ValueError, match="for 4 features"):
        normalize_shap_values(raw, 4)


def test_lightgbm_contributions_equal_shap_tree_explainer() -> None:
    import lightgbm

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(500, 4)), columns=list("abcd"))
    y = (X["a"] + 0.5 * X["b"] * X["c"] + rng.normal(size=500) > 0).astype(int)
    model = lightgbm.LGBMClassifier(n_estimators=30, n_jobs=1, verbose=-1).fit(X, y)
    ours, base = split_contributions(model.booster_.predict(X, pred_contrib=True), 4)
    theirs = tree_explainer_values(model.booster_, X)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    raw = model.booster_.predict(X, raw_score=True)
    np.testing.assert_allclose(ours.sum(axis=1) + base, raw, atol=1e-6)


def test_reason_codes_read_as_sentences_and_rank_by_size() -> None:
    assert reason_sentence("promises_broken_90d", 3.0) == "3 promises broken in the last 90 days"
    assert reason_sentence("promises_broken_90d", 1) == "1 promise broken in the last 90 days"
    assert reason_sentence("days_since_last_payment", float("nan")) == "no payment on record"
    assert reason_sentence("payments_sum_30d", 1234.5) == "1,234.50 paid in the last 30 days"
    assert reason_sentence("product", "telecom").endswith(": telecom")
    assert reason_sentence("last_account_event_kind", "reopened") == "account reopened"
    assert reason_sentence("last_account_event_kind", "none") == "no account event on record"
    assert reason_sentence("amount_forgiven_total", 250.0) == "250.00 forgiven by a settlement"
    assert reason_sentence("days_since_last_account_event", 3.0) == "last account event 3 days ago"
    features = ["payments_count_30d", "promises_broken_90d", "current_balance", "product"]
    reasons = reason_codes(
        np.array([0.8, -1.2, -0.1, 0.0]), [2, 3, 5000.0, "telecom"], features, top=1
    )
    assert [(r.feature, r.direction) for r in reasons] == [
        ("payments_count_30d", "up"),
        ("promises_broken_90d", "down"),
    ]
    assert reasons[1].as_dict()["sentence"] == "3 promises broken in the last 90 days"


def test_off_policy_estimates_recover_a_known_policy_value() -> None:
    """A bandit with 4 actions, uniform logging: IPS, SNIPS and DR cover the true value of a
    policy that always picks action 2, and the logging policy's own value."""
    rng = np.random.default_rng(3)
    n = 20_000
    means = np.array([1.0, 2.0, 5.0, 3.0])
    logged = rng.integers(0, 4, n)
    reward = means[logged] + rng.normal(0, 2, n)
    pi = (logged == 2).astype(float)
    q_target = np.full(n, 4.6)  # a wrong model: DR stays right because propensities are
    estimates = off_policy_estimates(reward, np.full(n, 0.25), pi, q_target, q_target)
    for name in ("ips", "snips", "dr"):
        assert estimates[f"{name}_ci_low"] < 5.0 < estimates[f"{name}_ci_high"], name
    assert estimates["logging_policy_ci_low"] < 2.75 < estimates["logging_policy_ci_high"]
    assert estimates["effective_sample_size"] == pytest.approx(n / 4, rel=0.05)


def test_target_probability_spreads_a_band_over_its_logged_hours() -> None:
    logged = pd.DataFrame(
        {
            "channel": ["call", "call", "call", "sms"],
            "hour_band": ["evening", "evening", "evening", "evening"],
            "local_hour": [18, 19, 19, 18],
            "offer": ["none", "discount", "none", "none"],
            "discount_pct": [np.nan, 20.0, np.nan, np.nan],
            "installments": [np.nan] * 4,
            "offer_matters": [True, True, False, True],
        }
    )
    chosen = pd.DataFrame(
        {
            "channel": ["call"] * 4,
            "hour_band": ["evening"] * 4,
            "offer": ["discount"] * 4,
            "discount_pct": [20.0] * 4,
            "installments": [np.nan] * 4,
        }
    )
    hours = {("call", "evening"): [17, 18, 19, 20]}
    p = target_probability(logged, chosen, hours)
    # other offer reached the debtor: 0; same offer: 1/4; offer could not matter: 1/4; sms: 0
    np.testing.assert_allclose(p, [0.0, 0.25, 0.25, 0.0])


def test_experiment_files_are_validated(tmp_path: Path) -> None:
    config, text = load_experiment(REPO / "experiments" / "default.yaml")
    assert config.search_space and "learning_rate" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("horizon_dayz: 30\n")
    with pytest.raises(ExperimentError, match="horizon_dayz: Extra inputs"):
        load_experiment(bad)
    bad.write_text("search_space:\n  num_leaves: {low: 50, high: 10}\n")
    with pytest.raises(ExperimentError, match="above high"):
        load_experiment(bad)
    bad.write_text("split: [1, 2\n")
    with pytest.raises(ExperimentError, match="not valid YAML"):
        load_experiment(bad)
    with pytest.raises(ExperimentError, match="cannot read"):
        load_experiment(tmp_path / "missing.yaml")


def test_calibration_repairs_a_miscalibrated_classifier() -> None:
    """A classifier trained with positives weighted 8x overstates every probability; isotonic
    and sigmoid calibration on held-out rows bring the Brier score and ECE back down."""
    import lightgbm

    from training.model import calibrate

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(6000, 3)), columns=list("abc"))
    y = (rng.random(6000) < 1 / (1 + np.exp(-(X["a"] - 2.0)))).astype(int).to_numpy()
    train, valid, test = slice(0, 3000), slice(3000, 4500), slice(4500, 6000)
    model = lightgbm.LGBMClassifier(
        n_estimators=60, scale_pos_weight=8.0, n_jobs=1, verbose=-1
    ).fit(X[train], y[train])
    raw = classification_metrics(y[test], model.predict_proba(X[test])[:, 1])
    for method in ("isotonic", "sigmoid"):
        calibrated = calibrate(model, X[valid], y[valid], method)
        fixed = classification_metrics(y[test], calibrated.predict_proba(X[test])[:, 1])
        assert fixed["brier"] < raw["brier"] - 0.01, method
        assert fixed["ece"] < raw["ece"] / 2, method


def test_equivalent_rows_groups_what_the_trees_cannot_tell_apart() -> None:
    """A booster that only splits an action column at 2.5 (numeric) and on category {1}
    (categorical) gives the same prediction to rows on the same sides: those form one class,
    and predicting a representative per class gives exactly the full predictions."""
    import lightgbm as lgb

    from training.model import equivalent_rows

    rng = np.random.default_rng(3)
    n = 4000
    x = rng.normal(size=n)
    level = rng.integers(0, 6, n).astype(float)  # numeric action column
    kind = rng.integers(0, 3, n).astype(float)  # categorical action column
    y = x + 2.0 * (level > 2.5) - 1.5 * (kind == 1) + rng.normal(scale=0.1, size=n)
    data = lgb.Dataset(np.column_stack([x, level, kind]), y, categorical_feature=[2])
    params = {"objective": "regression", "num_leaves": 8, "verbose": -1, "min_data_in_leaf": 5}
    booster = lgb.train(params, data, num_boost_round=20)
    candidates = {1: np.array([0, 1, 2, 3, 4, 5, 0, 4]), 2: np.array([0, 0, 0, 0, 0, 0, 1, 1])}
    representatives, classes = equivalent_rows(booster, candidates, 8)
    assert len(representatives) < 8
    rows = np.column_stack(
        [np.repeat(rng.normal(size=50), 8), np.tile(candidates[1], 50), np.tile(candidates[2], 50)]
    ).astype(float)
    full = booster.predict(rows).reshape(50, 8)
    np.testing.assert_array_equal(full[:, representatives][:, classes], full)
    for a in range(8):
        for b in range(8):
            if classes[a] != classes[b]:  # different classes really differ somewhere
                assert not np.array_equal(full[:, a], full[:, b])
