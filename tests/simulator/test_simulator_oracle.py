"""The oracle: true payment probabilities from replicated futures of the simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from simulator import SimulatedPortfolio, SimulationConfig, simulate_portfolio
from simulator.oracle import simulate_with_true_probability, true_payment_probability

CONFIG = SimulationConfig(accounts=600, seed=11, horizon_days=200, placement_days=150)
# Mondays 35 days apart: each window [t, t + 30 days) ends before the next as-of time, so the
# labels' deviations from their true probabilities are uncorrelated (a martingale difference).
AS_OF = [pd.Timestamp("2025-03-03", tz="UTC") + pd.Timedelta(days=35 * k) for k in range(4)]
REPLICATES = 32
WINDOW = pd.Timedelta(days=30)


@pytest.fixture(scope="module")
def oracle() -> tuple[SimulatedPortfolio, pd.DataFrame]:
    return simulate_with_true_probability(CONFIG, AS_OF, replicates=REPLICATES, seed=5)


def _paid_between(
    rows: pd.DataFrame, payments: pd.DataFrame, start: pd.Series, end: pd.Series
) -> np.ndarray:
    pairs = rows[["account_id"]].assign(start=start, end=end).reset_index()
    pairs = pairs.merge(payments[["account_id", "paid_at"]], on="account_id")
    inside = (pairs["paid_at"] >= pairs["start"]) & (pairs["paid_at"] < pairs["end"])
    return (
        inside.groupby(pairs["index"], observed=True)
        .any()
        .reindex(rows.index, fill_value=False)
        .to_numpy()
    )


def test_the_oracle_leaves_the_history_unchanged(
    oracle: tuple[SimulatedPortfolio, pd.DataFrame],
) -> None:
    portfolio, _ = oracle
    expected = simulate_portfolio(CONFIG)
    for kind in ("tables", "truth"):
        for name, frame in getattr(expected, kind).items():
            pd.testing.assert_frame_equal(getattr(portfolio, kind)[name], frame)


def test_rows_are_the_accounts_in_inventory(
    oracle: tuple[SimulatedPortfolio, pd.DataFrame],
) -> None:
    portfolio, probability = oracle
    assert list(probability.columns) == [
        "account_id",
        "event_timestamp",
        "p_payment_true",
        "replicates",
    ]
    assert str(probability["event_timestamp"].dtype) == "datetime64[us, UTC]"
    assert set(probability["event_timestamp"]) == set(AS_OF)
    assert not probability.duplicated(["account_id", "event_timestamp"]).any()
    assert (probability["replicates"] == REPLICATES).all()
    assert probability["p_payment_true"].between(0, 1).all()

    placed_at = portfolio.tables["accounts"][["account_id", "placed_at"]]
    worked = placed_at.merge(pd.DataFrame({"event_timestamp": AS_OF}), how="cross")
    worked = worked[
        (worked["placed_at"] <= worked["event_timestamp"])
        & (worked["event_timestamp"] < worked["placed_at"] + pd.Timedelta(days=CONFIG.work_days))
    ].reset_index(drop=True)
    rows = worked.merge(probability, how="left", on=["account_id", "event_timestamp"])
    # every row is worked at t; a worked account is left out only when paid off before t
    assert len(rows) == len(worked) > 0
    missing = rows[rows["p_payment_true"].isna()]
    paid_before = _paid_between(
        missing, portfolio.tables["payments"], missing["placed_at"], missing["event_timestamp"]
    )
    assert paid_before.all()
    assert len(missing) < 0.2 * len(rows)


def test_true_probability_is_calibrated_and_ranks_the_observed_labels(
    oracle: tuple[SimulatedPortfolio, pd.DataFrame],
) -> None:
    portfolio, probability = oracle
    payments = portfolio.tables["payments"]
    t = probability["event_timestamp"]
    paid = _paid_between(probability, payments, t, t + WINDOW)
    p = probability["p_payment_true"].to_numpy()
    # label variance around the true probability, plus the Monte Carlo variance of the estimate
    standard_error = np.sqrt((p * (1 - p)).sum() * (1 + 1 / REPLICATES)) / len(p)
    assert paid.sum() >= 50
    assert abs(paid.mean() - p.mean()) < 4 * standard_error
    assert roc_auc_score(paid, p) > 0.7
    # accounts that paid in the month before t are likelier to pay in the month after it
    paid_recently = _paid_between(probability, payments, t - WINDOW, t)
    assert p[paid_recently].mean() > 2 * p[~paid_recently].mean()


def test_an_estimate_does_not_depend_on_the_other_as_of_times(
    oracle: tuple[SimulatedPortfolio, pd.DataFrame],
) -> None:
    _, probability = oracle
    alone = true_payment_probability(CONFIG, AS_OF[2:3], replicates=REPLICATES, seed=5)
    together = probability[probability["event_timestamp"] == AS_OF[2]].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, together)


def test_a_sample_of_accounts_is_estimated_alone_and_as_well(
    oracle: tuple[SimulatedPortfolio, pd.DataFrame],
) -> None:
    """Accounts never interact: the oracle of a sample of them gives their rows only, with
    estimates that differ from the whole book's by Monte Carlo noise alone."""
    _, probability = oracle
    whole = probability[probability["event_timestamp"] == AS_OF[1]]
    sample = whole["account_id"].drop_duplicates().sample(120, random_state=1)
    some = true_payment_probability(
        CONFIG, AS_OF[1:2], replicates=REPLICATES, seed=5, accounts=sample.tolist()
    )
    assert set(some["account_id"]) == set(sample)
    both = some.merge(whole, on=["account_id", "event_timestamp"], suffixes=("", "_whole"))
    assert len(both) == len(sample)
    gap = both["p_payment_true"] - both["p_payment_true_whole"]
    # each estimate's standard error is at most 0.5 / sqrt(replicates); the mean gap's
    # at most that over sqrt(120)
    assert abs(gap.mean()) < 3 * 0.5 / np.sqrt(REPLICATES * len(both))
    assert np.corrcoef(both["p_payment_true"], both["p_payment_true_whole"])[0, 1] > 0.8


@pytest.mark.parametrize(
    "as_of",
    [
        pd.Timestamp("2025-03-03"),  # no time zone
        pd.Timestamp("2024-12-01", tz="UTC"),  # before the first simulated day
        pd.Timestamp("2025-07-28", tz="UTC"),  # after the last one
    ],
)
def test_as_of_times_must_be_utc_and_simulated(as_of: pd.Timestamp) -> None:
    with pytest.raises(ValueError, match="as_of"):
        true_payment_probability(CONFIG, [as_of], replicates=2)
