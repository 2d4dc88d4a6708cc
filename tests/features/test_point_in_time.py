"""A feature computed as of t must not change when every event after t is deleted."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.catalog import ACCOUNT_FEATURES, DEBTOR_FEATURES
from features.history import truncate_portfolio
from features.snapshot import feature_snapshots
from simulator import SimulationConfig, simulate_portfolio

START = date(2025, 1, 6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    accounts=st.integers(3, 40),
    horizon=st.integers(40, 160),
    when=st.floats(0.05, 1.0),
    seconds=st.integers(0, 86_399),
)
def test_features_ignore_every_event_after_the_as_of_time(
    seed: int, accounts: int, horizon: int, when: float, seconds: int
) -> None:
    config = SimulationConfig(
        accounts=accounts, seed=seed, horizon_days=horizon, placement_days=max(1, horizon // 2)
    )
    tables = simulate_portfolio(config).tables
    as_of = pd.Timestamp(START + timedelta(days=int(when * horizon)), tz="UTC") + pd.Timedelta(
        seconds=seconds
    )
    full_accounts, full_debtors = feature_snapshots(tables, as_of)
    cut_accounts, cut_debtors = feature_snapshots(truncate_portfolio(tables, as_of), as_of)
    pd.testing.assert_frame_equal(full_accounts, cut_accounts)
    pd.testing.assert_frame_equal(full_debtors, cut_debtors)


def _with_statements(tables: dict[str, pd.DataFrame], seed: int) -> dict[str, pd.DataFrame]:
    """Random statements for every account (simulated portfolios have none): monthly from 150
    days before placement, with jitter (some on the same day), balances in credit, no limit."""
    rng = np.random.default_rng(seed)
    accounts = tables["accounts"]
    per_account = rng.integers(0, 10, len(accounts))
    n = int(per_account.sum())
    month = np.concatenate([np.arange(k) for k in per_account]).astype(np.int64)
    jitter = rng.integers(-3 * 86_400, 3 * 86_400, n) * (rng.random(n) < 0.7)
    placed = accounts["placed_at"].repeat(per_account).reset_index(drop=True)
    at = placed + pd.to_timedelta((month * 30 - 150) * 86_400 + jitter, unit="s")
    late = rng.random(n) < 0.3
    status = np.where(late, "delinquent", rng.choice(["no_use", "paid_in_full", "revolving"], n))
    statements = pd.DataFrame(
        {
            "statement_id": np.arange(n),
            "account_id": accounts["account_id"].repeat(per_account).to_numpy(),
            "statement_at": at.astype("datetime64[us, UTC]"),
            "balance": rng.normal(500, 400, n).round(2),
            "credit_limit": np.where(rng.random(n) < 0.1, np.nan, 1000.0),
            "status": pd.Categorical(status),
            "days_past_due": np.where(late, rng.integers(1, 200, n), 0).astype(np.int64),
        }
    )
    return {**tables, "statements": statements}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10**6),
    accounts=st.integers(3, 30),
    when=st.floats(0.05, 1.0),
    seconds=st.integers(0, 86_399),
)
def test_statement_history_ignores_every_event_after_the_as_of_time(
    seed: int, accounts: int, when: float, seconds: int
) -> None:
    horizon = 200
    config = SimulationConfig(accounts=accounts, seed=seed, horizon_days=horizon, placement_days=60)
    tables = _with_statements(simulate_portfolio(config).tables, seed)
    as_of = pd.Timestamp(START + timedelta(days=int(when * horizon)), tz="UTC") + pd.Timedelta(
        seconds=seconds
    )
    full, _ = feature_snapshots(tables, as_of)
    cut, _ = feature_snapshots(truncate_portfolio(tables, as_of), as_of)
    pd.testing.assert_frame_equal(full, cut)


def test_truncation_really_removes_the_future(medium_portfolio) -> None:
    """Guard for the property above: the cut portfolio does differ, and features move with t."""
    tables = medium_portfolio.tables
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    cut = truncate_portfolio(tables, as_of)
    assert len(cut["contacts"]) < len(tables["contacts"])
    assert cut["contacts"]["attempted_at"].max() < as_of
    assert cut["promises"]["kept"].isna().sum() > tables["promises"]["kept"].isna().sum()
    earlier, _ = feature_snapshots(tables, as_of)
    later, _ = feature_snapshots(tables, as_of + pd.Timedelta(days=30))
    common = earlier.merge(later, on="account_id", suffixes=("_then", "_later"))
    assert (common["call_attempts_90d_later"] != common["call_attempts_90d_then"]).mean() > 0.3
    waited = common["days_since_placement_later"] - common["days_since_placement_then"]
    np.testing.assert_allclose(waited, 30.0)


def test_snapshot_columns_match_the_catalog(small_portfolio) -> None:
    accounts, debtors = feature_snapshots(
        small_portfolio.tables, pd.Timestamp("2025-08-01", tz="UTC")
    )
    assert list(accounts.columns) == [
        "account_id",
        "event_timestamp",
        *[s.name for s in ACCOUNT_FEATURES],
    ]
    assert list(debtors.columns) == [
        "debtor_id",
        "event_timestamp",
        *[s.name for s in DEBTOR_FEATURES],
    ]
    kinds = {s.name: s.kind for s in ACCOUNT_FEATURES + DEBTOR_FEATURES}
    for frame in (accounts, debtors):
        for name, kind in kinds.items():
            if name not in frame:
                continue
            dtype = frame[name].dtype
            if kind == "int":
                assert np.issubdtype(dtype, np.integer), name
            elif kind == "float":
                assert np.issubdtype(dtype, np.floating), name
            elif kind == "timestamp":
                assert str(dtype) == "datetime64[us, UTC]", name
            else:
                assert dtype.kind == "O", name


def test_only_accounts_placed_by_then_have_a_snapshot(small_portfolio) -> None:
    tables = small_portfolio.tables
    as_of = pd.Timestamp("2025-04-01", tz="UTC")
    accounts, debtors = feature_snapshots(tables, as_of)
    placed = tables["accounts"].loc[tables["accounts"]["placed_at"] <= as_of, "account_id"]
    assert sorted(accounts["account_id"]) == sorted(placed)
    assert debtors["debtor_accounts_placed"].sum() == len(placed)
