"""Collection KPIs on the hand-made portfolio, where every figure can be worked out by hand."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from data_contracts.contact_rules import ContactRules
from pipelines.kpis import account_states, channel_kpis, collection_kpis, weekly_kpis

COSTS = {"call": 1.5, "sms": 0.05, "email": 0.01, "letter": 0.8}


def row(table: pd.DataFrame, week: str, segment: str = "all") -> pd.Series:
    found = table[(table["week"] == dt.date.fromisoformat(week)) & (table["segment"] == segment)]
    assert len(found) == 1, (week, segment)
    return found.iloc[0]


def test_weekly_kpis_by_hand(tables: dict[str, pd.DataFrame]) -> None:
    weekly = weekly_kpis(tables, COSTS)
    # 2024-07-20 (a Saturday): 200 paid on the credit card placed on 2024-07-01
    july = row(weekly, "2024-07-15")
    assert july["collected"] == pytest.approx(200.0)
    assert july["placed_balance"] == pytest.approx(6500.0)  # every account placed by then
    assert july["collection_rate"] == pytest.approx(200 / 6500)
    # the loan was settled on 2024-06-20 with 3,333.34 forgiven: no longer owed
    assert july["forgiven"] == pytest.approx(3333.34)
    assert july["collection_rate_net_of_forgiven"] == pytest.approx(200 / (6500 - 3333.34))
    assert row(weekly, "2024-07-15", "credit_card")["forgiven"] == 0.0
    assert row(weekly, "2024-05-20")["forgiven"] == 0.0  # before the settlement
    loan = row(weekly, "2024-06-17", "personal_loan")  # the week of the settlement
    assert loan["collection_rate"] == pytest.approx(833.33 / 5000)
    assert loan["collection_rate_net_of_forgiven"] == pytest.approx(833.33 / (5000 - 3333.34))
    assert july["kept_rate"] == pytest.approx(1.0)  # the promise due on 2024-07-20 was kept
    card = row(weekly, "2024-07-15", "credit_card")
    assert card["collection_rate"] == pytest.approx(200 / 1200)
    # the first week of July: two calls (one promise) and an SMS, nothing collected
    first = row(weekly, "2024-07-01")
    assert first["attempts"] == 3 and first["right_party_contacts"] == 1
    assert first["promise_rate"] == pytest.approx(1.0)
    assert first["contact_cost"] == pytest.approx(1.5 + 1.5 + 0.05)
    assert np.isnan(first["cost_per_amount_collected"])
    # days to first payment, by placement week: 19 days for both accounts that paid
    assert first["days_to_first_payment"] == pytest.approx(19.0)
    may = row(weekly, "2024-05-20")
    assert may["collection_rate"] == pytest.approx(833.33 / 5000)  # only the loan was placed
    # every payment made after placement is counted once, in one week
    everyone = weekly[weekly["segment"] == "all"]
    assert everyone["collected"].sum() == pytest.approx(200 + 833.33 + 833.33)
    segments = weekly[weekly["segment"] != "all"]
    assert segments["collected"].sum() == pytest.approx(everyone["collected"].sum())


def test_right_party_contacts_per_channel(tables: dict[str, pd.DataFrame]) -> None:
    channels = channel_kpis(tables["contacts"]).set_index(["week", "channel"])
    calls = channels.loc[(dt.date(2024, 7, 1), "call")]
    assert calls["attempts"] == 2 and calls["rpc_rate"] == pytest.approx(0.5)
    assert channels.loc[(dt.date(2024, 7, 1), "sms"), "rpc_rate"] == 0.0


def test_account_states_and_roll_rates(tables: dict[str, pd.DataFrame]) -> None:
    states = account_states(tables, pd.Timestamp("2024-07-01", tz="UTC"))
    # the loan (12) was settled for less on 2024-06-20: its forgiven remainder is not owed
    assert states.to_dict() == {10: "180-359", 11: "<120", 12: "settled"}
    without_events = {name: frame for name, frame in tables.items() if name != "account_events"}
    assert account_states(without_events, pd.Timestamp("2024-07-01", tz="UTC"))[12] == "120-179"
    kpis = collection_kpis(tables, COSTS, ContactRules())
    assert set(kpis) == {"weekly", "channels", "roll_rates", "blocked"}
    blocked = kpis["blocked"]
    shares = blocked["blocked_share"].dropna()
    assert ((shares >= 0) & (shares <= 1)).all()
    # the week the loan was settled ends with no open account: no share to speak of
    settled_week = blocked[blocked["week"] == dt.date(2024, 6, 17)].iloc[0]
    assert settled_week["open_accounts"] == 0 and np.isnan(settled_week["blocked_share"])
    # the loan's dispute (2024-05-10) stops calls while it is being verified
    may = blocked[blocked["week"] == dt.date(2024, 5, 6)].iloc[0]
    assert may["open_accounts"] == 1 and may["blocked: dispute"] == pytest.approx(1.0)
