"""Labels by hand on the tiny portfolio: payments in [t, t + horizon), logged actions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.snapshot import account_features
from tests.conftest import utc
from training.labels import (
    amount_paid_between,
    hour_band,
    logged_actions,
    open_owing_rows,
    payment_labels,
)


def test_payment_labels_count_payments_inside_the_window_only(
    tables: dict[str, pd.DataFrame],
) -> None:
    rows = pd.DataFrame(
        {
            "account_id": [10, 10, 12, 12, 11, 99],
            "event_timestamp": [
                utc("2024-07-01"),  # 200 paid 2024-07-20: inside
                utc("2024-07-20 10:00"),  # the payment at exactly t counts
                utc("2024-05-20 11:00:01"),  # one second after the first payment: next is 31 d on
                utc("2024-05-01"),  # 2024-05-20 inside, 2024-06-20 outside (50 days on)
                utc("2024-07-01"),  # no payments at all
                utc("2024-07-01"),  # unknown account
            ],
        }
    )
    labelled = payment_labels(rows, tables["payments"], 30, utc("2024-07-25"))
    assert labelled["paid_30d"].tolist() == [1, 1, 0, 1, 0, 0]
    np.testing.assert_allclose(labelled["amount_30d"], [200.0, 200.0, 0.0, 833.33, 0.0, 0.0])
    assert labelled["labelable"].tolist() == [False, False, True, True, False, False]


def test_closed_or_cleared_accounts_are_no_propensity_rows(
    tables: dict[str, pd.DataFrame],
) -> None:
    # 2024-07-12: 10 owes; 11 owes but was recalled on 07-10; 12 settled on 06-20
    snapshot = account_features(tables, utc("2024-07-12"))
    assert snapshot.loc[open_owing_rows(snapshot), "account_id"].tolist() == [10]
    # reopened on 07-15: 11 is a row again
    later = account_features(tables, utc("2024-07-21"))
    assert later.loc[open_owing_rows(later), "account_id"].tolist() == [10, 11]
    # snapshots built before account events existed: the balance alone decides
    old = snapshot.drop(columns="account_closed").assign(current_balance=[1000.0, 300.0, 0.0])
    assert old.loc[open_owing_rows(old), "account_id"].tolist() == [10, 11]


def test_amount_between_handles_many_rows_per_account(tables: dict[str, pd.DataFrame]) -> None:
    starts = pd.Series([utc("2024-05-01"), utc("2024-05-01"), utc("2024-06-01")])
    ends = pd.Series([utc("2024-07-01"), utc("2024-05-21"), utc("2024-06-20 11:00")])
    count, total = amount_paid_between(np.array([12, 12, 12]), starts, ends, tables["payments"])
    assert count.tolist() == [2, 1, 0]  # the end is excluded
    np.testing.assert_allclose(total, [1666.66, 833.33, 0.0])


def test_logged_actions_describe_the_policy_contacts(tables: dict[str, pd.DataFrame]) -> None:
    costs = {"call": 1.5, "sms": 0.05, "email": 0.01, "letter": 0.8}
    actions = logged_actions(tables, 30, costs, utc("2024-09-01"))
    # the inbound letter answer has no action probability: not a policy action
    assert actions["contact_id"].tolist() == [1, 2, 3]
    first, second, third = (actions.iloc[i] for i in range(3))
    assert first["channel"] == "call" and first["offer"] == "none"
    assert not first["offer_matters"] and not first["reached"]  # no answer
    # 14:00 UTC is 09:00 in Chicago (summer time): a morning call on a Wednesday
    assert first["local_hour"] == 9 and first["hour_band"] == "morning" and first["weekday"] == 2
    assert second["offer"] == "discount" and second["discount_pct"] == 20.0
    assert second["offer_matters"] and second["reached"]  # a promise to pay
    assert second["amount_30d"] == 200.0 and second["net_30d"] == 200.0 - 1.5
    assert third["channel"] == "sms" and third["offer_matters"] and not third["reached"]
    assert third["amount_30d"] == 0.0  # account 11 never paid
    assert actions["labelable"].all()


def test_hour_bands_cover_contact_hours_only() -> None:
    assert hour_band(np.array([7, 8, 11, 12, 16, 17, 20, 21])).tolist() == [
        None,
        "morning",
        "morning",
        "afternoon",
        "afternoon",
        "evening",
        "evening",
        None,
    ]
