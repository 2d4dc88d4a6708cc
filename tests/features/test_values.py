"""Feature values checked by hand on a tiny portfolio and on the real Taiwan statements."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.snapshot import account_features, debtor_features
from pipelines.taiwan import BILL_COLUMNS, read_taiwan_csv, taiwan_to_tables
from tests.conftest import tiny_tables, utc


def test_tiny_portfolio_by_hand() -> None:
    tables = tiny_tables()
    as_of = utc("2024-07-21")
    frame = account_features(tables, as_of).set_index("account_id")
    ten = frame.loc[10]
    assert ten["payments_count_7d"] == 1 and ten["payments_sum_7d"] == 200.0
    assert ten["current_balance"] == 1000.0
    assert ten["paid_share_of_placed_balance"] == pytest.approx(200 / 1200)
    assert ten["days_since_last_payment"] == pytest.approx(14 / 24)  # paid 2024-07-20 10:00
    assert ten["call_attempts_30d"] == 2 and ten["call_responses_30d"] == 1
    assert ten["call_response_rate_90d"] == 0.5
    assert ten["call_attempts_7d_compliance"] == 0
    assert ten["last_telephone_conversation_at"] == utc("2024-07-05 15:00")
    assert ten["offers_made_total"] == 1 and ten["offers_accepted_total"] == 0
    assert ten["promises_made_90d"] == 1
    assert ten["open_promise_amount"] == 200.0  # due 2024-07-20, grace ends 07-23
    assert ten["statement_balance_last"] == 1200.0 and ten["utilization_last"] == 0.6
    # Texas debtor: 14:00 UTC is 09:00 in Chicago, 15:00 UTC is 10:00: both morning calls
    assert ten["call_attempts_morning_365d"] == 2 and ten["call_response_rate_morning_365d"] == 0.5
    twelve = frame.loc[12]
    assert twelve["promises_kept_365d"] == 1 and twelve["promises_kept_rate_365d"] == 1.0
    assert twelve["offers_accepted_total"] == 1
    assert twelve["disputes_total"] == 1  # the inbound letter dispute
    assert np.isnan(twelve["best_accepted_discount_pct"])  # a plan, not a discount
    later = account_features(tables, utc("2024-07-24")).set_index("account_id")
    assert later.loc[10, "open_promise_amount"] == 0.0 and later.loc[10, "promises_kept_90d"] == 1
    debtors = debtor_features(tables, as_of).set_index("debtor_id")
    assert debtors.loc[1, "debtor_accounts_placed"] == 2
    assert debtors.loc[1, "debtor_current_balance"] == 1000.0 + 300.0


def test_account_events_by_hand() -> None:
    tables = tiny_tables()
    columns = [
        "current_balance",
        "amount_forgiven_total",
        "last_account_event_kind",
        "days_since_last_account_event",
        "account_closed",
        "closed_kind",
        "closed_at",
    ]
    # 2024-07-12: account 12 settled (3333.34 forgiven after 1666.66 paid); 11 recalled
    frame = account_features(tables, utc("2024-07-12 09:00")).set_index("account_id")[columns]
    twelve, eleven, ten = frame.loc[12], frame.loc[11], frame.loc[10]
    assert twelve["current_balance"] == pytest.approx(0.0, abs=1e-9)
    assert twelve["amount_forgiven_total"] == 3333.34
    assert (twelve["account_closed"], twelve["closed_kind"]) == (1, "settled")
    assert twelve["closed_at"] == utc("2024-06-20 11:00")
    assert twelve["days_since_last_account_event"] == pytest.approx(21 + 22 / 24)
    assert (eleven["account_closed"], eleven["closed_kind"]) == (1, "recalled")
    assert eleven["current_balance"] == 300.0  # a recall forgives nothing
    assert (ten["account_closed"], ten["last_account_event_kind"]) == (0, "none")
    assert np.isnan(ten["days_since_last_account_event"]) and pd.isna(ten["closed_at"])
    # reopened on 2024-07-15: open again, the latest event is the reopening
    later = account_features(tables, utc("2024-07-21")).set_index("account_id").loc[11]
    assert (later["account_closed"], later["closed_kind"]) == (0, "none")
    assert later["last_account_event_kind"] == "reopened" and pd.isna(later["closed_at"])
    # an event counts only strictly before the as-of time, like every other event
    at_settlement = account_features(tables, utc("2024-06-20 11:00")).set_index("account_id")
    assert at_settlement.loc[12, "account_closed"] == 0
    assert at_settlement.loc[12, "current_balance"] == pytest.approx(5000 - 833.33)
    # without the table, nothing is forgiven or closed
    del tables["account_events"]
    bare = account_features(tables, utc("2024-07-12 09:00")).set_index("account_id")
    assert bare.loc[12, "current_balance"] == pytest.approx(5000 - 2 * 833.33)
    assert bare["account_closed"].eq(0).all() and bare["closed_kind"].eq("none").all()


def test_before_placement_an_account_has_no_row() -> None:
    frame = account_features(tiny_tables(), utc("2024-06-01"))
    assert list(frame["account_id"]) == [12]


@pytest.fixture(scope="module")
def taiwan_tables(taiwan_csv: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    raw = read_taiwan_csv(taiwan_csv)
    tables, _ = taiwan_to_tables(raw)
    return raw, tables


def test_taiwan_statement_features_reproduce_the_source(taiwan_tables) -> None:
    raw, tables = taiwan_tables
    frame = account_features(tables, utc("2005-09-30 16:00")).set_index("account_id").loc[raw["ID"]]
    np.testing.assert_array_equal(frame["statement_balance_last"], raw["BILL_AMT1"])
    np.testing.assert_array_equal(frame["credit_limit_last"], raw["LIMIT_BAL"])
    np.testing.assert_array_equal(frame["payments_sum_30d"], raw["PAY_AMT1"])
    np.testing.assert_allclose(
        frame["statement_balance_mean_180d"], raw[list(BILL_COLUMNS)].mean(axis=1)
    )
    # a month earlier (as if placed in April), September is unknown: August is the latest
    tables = {**tables, "accounts": tables["accounts"].assign(placed_at=utc("2005-04-01"))}
    earlier = (
        account_features(tables, utc("2005-08-31 16:00")).set_index("account_id").loc[raw["ID"]]
    )
    np.testing.assert_array_equal(earlier["statement_balance_last"], raw["BILL_AMT2"])
