"""The audit's group metrics, proxies and drift on frames where the truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.audit import (
    FLAG,
    PASS,
    WATCH,
    AuditThresholds,
    audit_checks,
    group_metrics,
    population_stability,
    protected_inputs,
    proxy_strength,
    psi,
    top_of_worklist,
    verdict,
)


def _portfolio(n: int = 6000, seed: int = 1) -> pd.DataFrame:
    """Accounts over 4 as-of times; gender independent of paying, honest scores."""
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 6, n)
    frame = pd.DataFrame(
        {
            "as_of": rng.integers(0, 4, n),
            "gender": rng.choice(["female", "male", None], n, p=[0.48, 0.47, 0.05]),
            "age_band": rng.choice(["18-24", "25-34", "35-49", "50-64", "65+"], n),
            "label": (rng.random(n) < p).astype(int),
            "score": p,
        }
    )
    return frame


def _with_selection(frame: pd.DataFrame, thresholds: AuditThresholds) -> pd.DataFrame:
    chosen = top_of_worklist(frame["score"], frame["as_of"], thresholds.top_share)
    return frame.assign(selected=chosen)


def test_honest_scores_pass_and_a_shifted_group_is_flagged() -> None:
    thresholds = AuditThresholds(bootstrap=100)
    honest = _with_selection(_portfolio(), thresholds)
    table = group_metrics(honest, "gender", thresholds)
    assert set(table["status"]) == {PASS}, table[["group", "status", "note"]]
    known = table[table["group"] != "(unknown)"]
    assert known["adverse_impact_ratio"].min() > 0.8
    assert (table["size"].sum(), table["reference"].sum()) == (len(honest), 1)
    # the planted bias: women's scores shifted down by 1.2 in log-odds
    biased = honest.copy()
    women = (biased["gender"] == "female").to_numpy()
    logit = np.log(biased["score"] / (1 - biased["score"]))
    biased.loc[women, "score"] = 1 / (1 + np.exp(-(logit[women] - 1.2)))
    biased = _with_selection(biased, thresholds)
    table = group_metrics(biased, "gender", thresholds).set_index("group")
    assert table.loc["female", "status"] == FLAG
    assert table.loc["female", "adverse_impact_ratio"] < 0.8
    assert table.loc["female", "adverse_impact_ratio_high"] < 1.0
    assert "under-scored" in table.loc["female", "note"]
    assert table.loc["male", "status"] == PASS and table.loc["male", "reference"]
    # every interval holds its estimate
    for name in ("top_share", "tpr", "fpr", "mean_predicted", "actual_rate", "calibration_gap"):
        assert (table[f"{name}_low"] <= table[name] + 1e-12).all()
        assert (table[name] <= table[f"{name}_high"] + 1e-12).all()


def test_small_groups_are_watched_not_flagged() -> None:
    thresholds = AuditThresholds(bootstrap=50, min_group_size=500)
    frame = _portfolio(2000)
    frame.loc[frame.index[:60], "gender"] = "nonbinary"
    frame.loc[frame.index[:60], "score"] = 0.001  # far below, but only 60 rows
    table = group_metrics(_with_selection(frame, thresholds), "gender", thresholds)
    row = table.set_index("group").loc["nonbinary"]
    assert row["status"] == "watch" and "too few to judge" in row["note"]


def test_proxies_find_the_input_that_carries_an_attribute() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    gender = rng.choice(["female", "male"], n)
    features = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            "carrier": (gender == "female") * 1.0 + rng.normal(scale=0.3, size=n),
            "balance": rng.gamma(2, 500, n),
        }
    )
    attributes = pd.DataFrame({"gender": gender, "age_band": rng.choice(["a", "b", "c"], n)})
    table = proxy_strength(features, attributes, min_group_size=50).set_index("attribute")
    assert table.loc["gender", "roc_auc"] > 0.9
    assert table.loc["gender", "top_inputs"][0]["feature"] == "carrier"
    assert table.loc["age_band", "roc_auc"] < 0.6


def test_psi_is_zero_for_the_same_population_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(0)
    base = pd.Series(rng.normal(size=20_000))
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)
    assert psi(base, pd.Series(rng.normal(size=20_000))) < 0.01
    assert psi(base, pd.Series(rng.normal(1.0, 1.0, 20_000))) > 0.25
    text = pd.Series(rng.choice(["a", "b"], 5000))
    assert psi(text, pd.Series(["a"] * 5000)) > 0.25
    with_gaps = pd.Series(np.where(rng.random(5000) < 0.5, np.nan, 1.0))
    assert psi(with_gaps, pd.Series(np.ones(5000))) > 0.25  # missing values are a bin
    table = population_stability(
        pd.DataFrame({"x": base, "y": base}),
        pd.DataFrame({"x": base, "y": base + 2}),
        ["x", "y"],
    )
    assert table["feature"].tolist() == ["y", "x"]


def test_checks_prove_protected_attributes_are_not_inputs() -> None:
    assert protected_inputs(["balance", "gender", "region_code", "age"]) == [
        "gender",
        "region_code",
    ]
    thresholds = AuditThresholds(bootstrap=50)
    groups = group_metrics(_with_selection(_portfolio(), thresholds), "gender", thresholds)
    proxies = pd.DataFrame([{"attribute": "gender", "roc_auc": 0.52, "top_inputs": []}])
    drift = pd.DataFrame([{"feature": "balance", "psi": 0.01}])
    checks = audit_checks(["balance"], groups, proxies, drift, 0.02, thresholds)
    assert verdict(checks) == PASS
    checks = audit_checks(["balance", "gender"], groups, proxies, drift, 0.02, thresholds)
    assert verdict(checks) == FLAG and "gender" in checks[0].detail
    drift = pd.DataFrame([{"feature": "balance", "psi": 0.4}])
    # a major shift is shown for review; it blocks only when configured to
    assert verdict(audit_checks(["balance"], groups, proxies, drift, 0.02, thresholds)) == WATCH
    strict = thresholds.model_copy(update={"drift_blocks": True})
    assert verdict(audit_checks(["balance"], groups, proxies, drift, 0.02, strict)) == FLAG
    assert verdict(audit_checks(["balance"], groups, proxies, drift[:0], 0.5, strict)) == FLAG
