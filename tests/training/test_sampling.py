"""Thinning training rows per account: every row equally likely, models stay calibrated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.metrics import classification_metrics
from training.model import PropensityModel
from training.sampling import (
    EVALUATION_ACCOUNTS,
    WEIGHT,
    account_phase,
    account_sample,
    evaluation_sample,
    kept_rows,
    period_of,
    stratum_factors,
    thin,
    thinning_factor,
)


def test_the_factor_is_the_smallest_that_fits_the_budget() -> None:
    assert thinning_factor(500, 1_000) == 1
    assert thinning_factor(1_000, 1_000) == 1
    assert thinning_factor(1_001, 1_000) == 2
    assert thinning_factor(13_000_000, 600_000) == 22
    assert thinning_factor(10**9, None) == 1


def test_every_row_is_kept_with_the_same_probability_and_accounts_every_kth_period() -> None:
    accounts, periods, every = 20_000, 12, 4
    ids = np.repeat([f"ACC-{i:06d}" for i in range(accounts)], periods)
    period = np.tile(np.arange(periods), accounts)
    kept = kept_rows(ids, period, every)
    per_period = pd.Series(kept).groupby(period).mean()
    assert np.allclose(per_period, 1 / every, atol=0.015), per_period.tolist()
    frame = pd.DataFrame({"account": ids, "period": period})[kept]
    gaps = frame.groupby("account")["period"].diff().dropna()
    assert set(gaps.unique()) == {every}
    assert frame.groupby("account").size().between(periods // every, periods // every).all()
    # the phase is a fixed hash of the id text: categorical, object and repeated calls agree
    as_category = kept_rows(pd.Series(ids, dtype="category"), period, every)
    np.testing.assert_array_equal(kept, as_category)
    np.testing.assert_array_equal(account_phase(ids[:5], 7), account_phase(list(ids[:5]), 7))
    assert kept_rows(ids, period, 1).all()


def test_rare_strata_are_kept_whole_while_they_fit_their_share() -> None:
    assert stratum_factors([80_000, 995_000], 600_000) == [1, 2]
    assert stratum_factors([790_000, 9_900_000], 600_000) == [3, 30]
    assert stratum_factors([100, 200], 1_000) == [1, 1]
    assert stratum_factors([100, 200], None) == [1, 1]
    counts, budget = [790_000, 9_900_000], 600_000
    kept = sum(c / k for c, k in zip(counts, stratum_factors(counts, budget), strict=True))
    assert kept <= budget


def test_costly_evaluations_take_whole_accounts_of_a_fixed_sample() -> None:
    ids = pd.Series(np.repeat([f"A{i}" for i in range(30_000)], 3), dtype="category")
    chosen = evaluation_sample(ids)
    accounts = ids[chosen].unique()
    assert len(accounts) == pytest.approx(EVALUATION_ACCOUNTS, rel=0.05)
    assert chosen.reshape(-1, 3).all(axis=1).sum() == len(accounts)  # an account whole or not
    np.testing.assert_array_equal(chosen, evaluation_sample(ids.astype(str)))  # fixed by id
    small = ids[ids.isin([f"A{i}" for i in range(5_000)])]
    assert evaluation_sample(small).all()  # a small book is compared whole
    # the off-policy estimates' contacts: about the budget's rows, whole accounts too
    rows = account_sample(ids, 20_000)
    assert rows.sum() == pytest.approx(20_000, rel=0.1)
    assert account_sample(ids, 10**6).all()


def test_periods_are_the_latest_start_at_or_before_each_time() -> None:
    starts = pd.to_datetime(["2025-01-06", "2025-01-13", "2025-01-20"], utc=True)
    moments = ["2025-01-01T00:00", "2025-01-06T00:00", "2025-01-19T23:00", "2025-03-01T00:00"]
    times = pd.Series(pd.to_datetime(moments, utc=True))
    assert period_of(times, starts).tolist() == [-1, 0, 1, 2]


def test_thin_keeps_the_unthinned_rows_and_weighs_the_sampled_ones() -> None:
    rows = pd.DataFrame(
        {"account_id": np.repeat([f"A{i}" for i in range(300)], 8), "x": np.arange(2400)}
    )
    periods = np.tile(np.arange(8), 300)
    thinned = periods < 6  # the last two periods stand for the test window
    out = thin(rows, periods, 3, thinned)
    test_rows = out[out[WEIGHT] == 1.0]
    assert len(test_rows) == int((~thinned).sum())
    assert (out.loc[out[WEIGHT] != 1.0, WEIGHT] == 3.0).all()
    # the weighted count of sampled rows estimates the rows they stand for
    assert out.loc[out[WEIGHT] == 3.0, WEIGHT].sum() == pytest.approx(thinned.sum(), rel=0.06)


def _book(accounts: int, periods: int, seed: int) -> pd.DataFrame:
    """Accounts with a lasting propensity seen at every period, a feature that tracks it
    with noise, and payments drawn from the true probability."""
    rng = np.random.default_rng(seed)
    level = rng.normal(-2.6, 1.2, accounts)
    rows = pd.DataFrame(
        {
            "account_id": np.repeat([f"ACC{i}" for i in range(accounts)], periods),
            "period": np.tile(np.arange(periods), accounts),
        }
    )
    drift = rng.normal(0, 0.4, len(rows))
    logit = np.repeat(level, periods) + drift
    rows["signal"] = logit + rng.normal(0, 0.5, len(rows))
    rows["noise"] = rng.normal(0, 1, len(rows))
    rows["paid"] = (rng.random(len(rows)) < 1 / (1 + np.exp(-logit))).astype(int)
    rows["split"] = np.select(
        [rows["period"] < 14, rows["period"] < 18], ["train", "valid"], "test"
    )
    return rows


def _fit_and_score(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame) -> dict:
    model = PropensityModel(
        features=["signal", "noise"],
        params={"n_estimators": 200, "learning_rate": 0.05, "num_leaves": 15},
        threads=1,
    ).fit(
        train,
        train["paid"].to_numpy(),
        eval_set=(valid, valid["paid"].to_numpy(), None),
        sample_weight=train[WEIGHT].to_numpy() if WEIGHT in train else None,
        eval_sample_weight=valid[WEIGHT].to_numpy() if WEIGHT in valid else None,
    )
    p = model.predict_proba(test)[:, 1]
    metrics = classification_metrics(test["paid"].to_numpy(), p)
    metrics["mean_gap"] = abs(float(p.mean()) - float(test["paid"].mean()))
    return metrics


def test_a_model_fitted_on_thinned_rows_stays_calibrated_on_every_row() -> None:
    book = _book(accounts=6_000, periods=22, seed=4)
    every = 5
    sampled = thin(book, book["period"].to_numpy(), every, (book["split"] != "test").to_numpy())
    assert len(sampled) < 0.4 * len(book)
    test = book[book["split"] == "test"]
    assert len(sampled[sampled["split"] == "test"]) == len(test)  # never thinned
    full = _fit_and_score(book[book["split"] == "train"], book[book["split"] == "valid"], test)
    thinned = _fit_and_score(
        sampled[sampled["split"] == "train"], sampled[sampled["split"] == "valid"], test
    )
    assert thinned["ece"] < 0.01 and thinned["mean_gap"] < 0.006, thinned
    assert thinned["roc_auc"] > full["roc_auc"] - 0.01, (thinned, full)
    # the check has teeth: thinning that depends on the label (every payer kept, one
    # non-payer in five) without the weights that undo it is miscalibrated on every row
    biased = book[(book["split"] != "test") & ((book["paid"] == 1) | (book["period"] % 5 == 0))]
    # the same label-dependent thinning with the weights that undo it stays calibrated
    windows = book["split"] != "test"
    payer = (book["paid"] == 1).to_numpy()
    every_of = np.where(payer, 1, every)
    kept = kept_rows(book["account_id"], book["period"].to_numpy(), every)
    strata = book.assign(**{WEIGHT: np.where(windows, every_of, 1.0)})[~windows | payer | kept]
    weighted = _fit_and_score(
        strata[strata["split"] == "train"], strata[strata["split"] == "valid"], test
    )
    assert weighted["ece"] < 0.01 and weighted["mean_gap"] < 0.006, weighted
    wrong = _fit_and_score(
        biased[biased["split"] == "train"], biased[biased["split"] == "valid"], test
    )
    assert wrong["mean_gap"] > 0.03, wrong
