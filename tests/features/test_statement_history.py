"""Month-by-month statement history (debtor_scoring_v2), checked by hand and on Taiwan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.catalog import ACCOUNT_FEATURES, STATEMENT_HISTORY_FEATURES
from features.snapshot import account_features
from pipelines.taiwan import (
    BILL_COLUMNS,
    PAID_COLUMNS,
    PLACED_AT,
    STATUS_COLUMNS,
    read_taiwan_csv,
    taiwan_to_tables,
)
from tests.conftest import tiny_tables, utc

AS_OF = utc("2024-07-21")


def _statements() -> pd.DataFrame:
    """Account 10: four month-end statements (and one after AS_OF); account 12: one in credit."""
    rows = [
        # account, closing time, balance, credit limit, status, days past due
        (10, "2024-03-31", 1000.0, 2000.0, "delinquent", 45),
        (10, "2024-04-30", 1100.0, 2000.0, "delinquent", 30),
        (10, "2024-05-31", 1150.0, 2000.0, "revolving", 0),
        (10, "2024-06-30", 1200.0, 2000.0, "delinquent", 91),
        (10, "2024-07-31", 1300.0, 2000.0, "delinquent", 121),  # after AS_OF: unknown
        (12, "2024-06-25", -50.0, float("nan"), "no_use", 0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=["account_id", "at", "balance", "credit_limit", "status", "days_past_due"],
    )
    return pd.DataFrame(
        {
            "statement_id": range(len(frame)),
            "account_id": frame["account_id"],
            "statement_at": frame["at"].map(utc).astype("datetime64[us, UTC]"),
            "balance": frame["balance"],
            "credit_limit": frame["credit_limit"],
            "status": pd.Categorical(frame["status"]),
            "days_past_due": frame["days_past_due"].astype(np.int64),
        }
    )


def _tables() -> dict[str, pd.DataFrame]:
    tables = tiny_tables()
    extra = pd.DataFrame(
        {
            "payment_id": [2000, 2001, 2002, 2003],
            "account_id": [10, 10, 10, 10],
            # before the first cycle, in the first (31-day) cycle, in April's, at May's close
            "paid_at": pd.Series(
                [utc(t) for t in ("2024-02-10", "2024-03-20", "2024-04-15", "2024-05-31")],
                dtype="datetime64[us, UTC]",
            ),
            "amount": [70.0, 50.0, 100.0, 30.0],
            "method": pd.Categorical(["card"] * 4),
        }
    )
    payments = pd.concat([tables["payments"], extra], ignore_index=True)
    return {**tables, "payments": payments, "statements": _statements()}


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return account_features(_tables(), AS_OF).set_index("account_id")


def test_statements_one_by_one(history: pd.DataFrame) -> None:
    ten = history.loc[10]
    # newest first: June (lag 1), May, April, March; July closes after AS_OF
    balances = [ten[f"statement_balance_lag{k}"] for k in range(1, 5)]
    assert balances == [1200.0, 1150.0, 1100.0, 1000.0]
    assert np.isnan(ten["statement_balance_lag5"]) and np.isnan(ten["statement_balance_lag6"])
    assert ten["statement_utilization_lag1"] == 0.6 and ten["statement_utilization_lag4"] == 0.5
    # 91 days past due is a fourth month (rounded up); revolving is 0
    levels = [ten[f"statement_status_level_lag{k}"] for k in range(1, 5)]
    assert levels == [4.0, 0.0, 1.0, 2.0]
    assert ten["days_since_last_statement"] == 21.0


def test_payments_fall_in_the_cycle_that_received_them(history: pd.DataFrame) -> None:
    ten = history.loc[10]
    # June's cycle: nothing; May's: the payment at its closing time; April's: 100; March's
    # (no earlier statement, so 31 days back): 50 but not February's 70; the July payment is
    # after the latest statement and belongs to no cycle yet
    paid = [ten[f"statement_cycle_paid_lag{k}"] for k in range(1, 5)]
    assert paid == [0.0, 30.0, 100.0, 50.0]
    assert np.isnan(ten["statement_cycle_paid_lag5"])
    assert ten["statement_cycle_payment_ratio_lag1"] == 0.0  # 0 / 1150
    assert ten["statement_cycle_payment_ratio_lag2"] == pytest.approx(30 / 1100)
    assert ten["statement_cycle_payment_ratio_lag3"] == pytest.approx(0.1)
    assert np.isnan(ten["statement_cycle_payment_ratio_lag4"])  # no statement before March
    charges = [ten[f"statement_cycle_new_charges_lag{k}"] for k in range(1, 4)]
    assert charges == [1200 - 1150 + 0, 1150 - 1100 + 30, 1100 - 1000 + 100]
    assert np.isnan(ten["statement_cycle_new_charges_lag4"])


def test_summaries_of_the_last_six_statements(history: pd.DataFrame) -> None:
    ten = history.loc[10]
    assert ten["statement_status_level_max_last6"] == 4.0
    assert ten["statement_status_level_mean_last6"] == pytest.approx((4 + 0 + 1 + 2) / 4)
    assert ten["statements_delinquent_streak_last6"] == 1  # June; May was revolving
    assert ten["statements_delinquent_streak_max_last6"] == 2  # March and April
    assert ten["statement_cycle_paid_sum_last6"] == 180.0
    assert ten["statement_cycle_payment_ratio_last6"] == pytest.approx(130 / 3250)
    assert ten["statement_cycles_unpaid_last6"] == 1  # June's cycle owed 1150, got nothing
    assert ten["statement_balance_max_last6"] == 1200.0
    assert ten["statement_utilization_max_last6"] == 0.6


def test_a_single_statement_in_credit_and_an_account_without_statements(
    history: pd.DataFrame,
) -> None:
    twelve = history.loc[12]
    assert twelve["statement_balance_lag1"] == -50.0
    assert np.isnan(twelve["statement_utilization_lag1"])  # no credit limit
    assert twelve["statement_status_level_lag1"] == -2.0
    # the first cycle reaches 31 days back from 2024-06-25: June's payment, not May's
    assert twelve["statement_cycle_paid_lag1"] == 833.33
    assert np.isnan(twelve["statement_cycle_payment_ratio_lag1"])
    assert twelve["statements_delinquent_streak_last6"] == 0
    _assert_empty(history.loc[11])


def _assert_empty(row: pd.Series) -> None:
    for spec in STATEMENT_HISTORY_FEATURES:
        if spec.kind == "int":
            assert row[spec.name] == 0, spec.name
        else:
            assert np.isnan(row[spec.name]), spec.name


def test_portfolios_without_statements_get_empty_history() -> None:
    tables = tiny_tables()
    del tables["statements"]
    frame = account_features(tables, AS_OF)
    for _, row in frame.iterrows():
        _assert_empty(row)
    assert [s for s in ACCOUNT_FEATURES if s.since_version == 2] == list(STATEMENT_HISTORY_FEATURES)


def test_taiwan_history_gives_back_the_source_columns(taiwan_csv: Path) -> None:
    raw = read_taiwan_csv(taiwan_csv)
    tables, _ = taiwan_to_tables(raw)
    frame = account_features(tables, PLACED_AT).set_index("account_id").loc[raw["ID"]]
    for lag in range(1, 7):
        bill, status, paid = BILL_COLUMNS[lag - 1], STATUS_COLUMNS[lag - 1], PAID_COLUMNS[lag - 1]
        np.testing.assert_array_equal(frame[f"statement_balance_lag{lag}"], raw[bill])
        np.testing.assert_array_equal(frame[f"statement_status_level_lag{lag}"], raw[status])
        np.testing.assert_array_equal(frame[f"statement_cycle_paid_lag{lag}"], raw[paid])
    # September's payment answers August's bill
    owed = raw["BILL_AMT2"].where(raw["BILL_AMT2"] > 0)
    np.testing.assert_allclose(
        frame["statement_cycle_payment_ratio_lag1"], raw["PAY_AMT1"] / owed, equal_nan=True
    )
    np.testing.assert_allclose(
        frame["statement_cycle_new_charges_lag1"],
        raw["BILL_AMT1"] - raw["BILL_AMT2"] + raw["PAY_AMT1"],
    )
    late = raw[list(STATUS_COLUMNS)].to_numpy() >= 1  # newest month first
    streak = late.cumprod(axis=1).sum(axis=1)
    np.testing.assert_array_equal(frame["statements_delinquent_streak_last6"], streak)
