"""The simulator: deterministic, valid, and behaving the way its hidden truth says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data_contracts.promises import derive_promise_kept
from data_contracts.validation import validate_tables
from simulator import SimulatedPortfolio, SimulationConfig, simulate_portfolio
from simulator import behaviour as bh


def _local(contacts: pd.DataFrame, portfolio: SimulatedPortfolio, column: str) -> pd.DataFrame:
    """Add the debtor's local time of `column` (as naive local timestamps)."""
    accounts = portfolio.tables["accounts"][["account_id", "debtor_id"]]
    debtors = portfolio.tables["debtors"][["debtor_id", "timezone"]]
    if "debtor_id" not in contacts.columns:
        contacts = contacts.merge(accounts, on="account_id")
    frame = contacts.merge(debtors, on="debtor_id")
    local = pd.Series(index=frame.index, dtype="datetime64[us]")
    for zone, rows in frame.groupby("timezone", observed=True).groups.items():
        local.loc[rows] = frame.loc[rows, column].dt.tz_convert(str(zone)).dt.tz_localize(None)
    return frame.assign(local_time=local)


def test_same_seed_same_portfolio_other_seed_other_portfolio() -> None:
    config = SimulationConfig(accounts=150, seed=42, horizon_days=90, placement_days=60)
    first, second = simulate_portfolio(config), simulate_portfolio(config)
    for name in first.tables:
        pd.testing.assert_frame_equal(first.tables[name], second.tables[name])
    for name in first.truth:
        pd.testing.assert_frame_equal(first.truth[name], second.truth[name])
    other = simulate_portfolio(
        SimulationConfig(accounts=150, seed=43, horizon_days=90, placement_days=60)
    )
    assert not first.tables["contacts"].equals(other.tables["contacts"])


def test_simulated_portfolio_satisfies_the_contracts(small_portfolio: SimulatedPortfolio) -> None:
    result = validate_tables(small_portfolio.tables)
    assert result.quarantined_rows == 0, result.summary()
    rows = small_portfolio.manifest["rows"]
    assert rows == {name: len(frame) for name, frame in small_portfolio.tables.items()}


def test_promise_kept_is_derived_from_payments(medium_portfolio: SimulatedPortfolio) -> None:
    tables = medium_portfolio.tables
    data_end = pd.Timestamp(medium_portfolio.manifest["data_end"])
    derived = derive_promise_kept(tables["promises"], tables["payments"], data_end)
    recorded = tables["promises"]["kept"]
    assert recorded.notna().sum() > 500
    pd.testing.assert_series_equal(
        derived.reset_index(drop=True), recorded.reset_index(drop=True), check_names=False
    )


def test_events_happen_only_while_the_account_is_worked(
    medium_portfolio: SimulatedPortfolio,
) -> None:
    tables = medium_portfolio.tables
    placed = tables["accounts"].set_index("account_id")["placed_at"]
    contacts = tables["contacts"]
    assert (contacts["attempted_at"] >= contacts["account_id"].map(placed)).all()
    assert (
        contacts["attempted_at"] < contacts["account_id"].map(placed) + pd.Timedelta(days=181)
    ).all()
    data_end = pd.Timestamp(medium_portfolio.manifest["data_end"])
    for name, column in (
        ("contacts", "attempted_at"),
        ("payments", "paid_at"),
        ("offers", "offered_at"),
    ):
        assert (tables[name][column] < data_end).all(), name


def test_settlements_and_payoffs_close_exactly_the_accounts_cleared(
    medium_portfolio: SimulatedPortfolio,
) -> None:
    tables = medium_portfolio.tables
    accounts = tables["accounts"].set_index("account_id")
    events = tables["account_events"]
    kinds = events["kind"].astype(str)
    assert set(kinds) == {"settled", "paid_in_full"}
    assert (kinds == "settled").sum() > 100 and (kinds == "paid_in_full").sum() > 100
    assert events["account_id"].is_unique  # closed once, never reopened in the simulation
    # every account cleared by the end of the data has its closing event, and only those
    cleared = set(accounts.index[accounts["current_balance"] == 0])
    assert set(events["account_id"]) == cleared
    # placed balance = payments since placement + amount forgiven, to the cent
    payments = tables["payments"]
    since_placement = payments["paid_at"] >= payments["account_id"].map(accounts["placed_at"])
    paid = payments[since_placement].groupby("account_id", observed=True)["amount"].sum()
    ids = events["account_id"]
    owed = accounts.loc[ids, "original_balance"].to_numpy()
    settled_for = paid.reindex(ids).fillna(0).to_numpy() + events["amount_forgiven"].fillna(0)
    np.testing.assert_allclose(settled_for, owed, atol=0.01)
    # a settlement comes with the payment that settles an accepted discount offer
    settled = events[kinds == "settled"]
    assert (settled["amount_forgiven"] > 0).all()
    offers = tables["offers"]
    discounts = offers[(offers["kind"] == "discount") & offers["accepted_at"].notna()]
    accepted = discounts.groupby("account_id", observed=True)["accepted_at"].min()
    assert (settled["occurred_at"] >= settled["account_id"].map(accepted)).all()
    last_paid = payments.groupby("account_id", observed=True)["paid_at"].max()
    assert (events["occurred_at"] == events["account_id"].map(last_paid)).all()


def test_the_logging_policy_was_compliant(medium_portfolio: SimulatedPortfolio) -> None:
    contacts = medium_portfolio.tables["contacts"]
    calls = _local(contacts[contacts["channel"] == "call"], medium_portfolio, "attempted_at")
    outbound = calls[calls["direction"] == "outbound"]
    hours = outbound["local_time"].dt.hour
    assert hours.between(8, 20).all()  # calls start 8:00-20:59 local, so they end by 21:00
    assert (outbound["local_time"].dt.dayofweek != 6).all()
    day = outbound["local_time"].dt.floor("D")
    per_day = outbound.assign(day=day).groupby(["account_id", "day"], observed=True).size()
    assert per_day.max() == 1  # so never more than 7 call attempts in 7 days
    # no call attempt within 7 days after a telephone conversation
    conversations = calls[
        calls["outcome"].isin(
            ["right_party_contact", "promise_to_pay", "refused", "dispute", "opted_out"]
        )
    ]
    pairs = outbound[["account_id", "local_time"]].merge(
        conversations[["account_id", "local_time"]], on="account_id", suffixes=("", "_talk")
    )
    gap = (pairs["local_time"].dt.floor("D") - pairs["local_time_talk"].dt.floor("D")).dt.days
    assert len(pairs) > 100
    assert not gap.between(1, 7).any()
    # action probabilities exist for policy contacts only
    assert (
        contacts.loc[contacts["direction"] == "outbound", "action_probability"]
        .between(0, 1, inclusive="right")
        .all()
    )
    assert contacts.loc[contacts["direction"] == "inbound", "action_probability"].isna().all()


def _outbound_with_truth(portfolio: SimulatedPortfolio) -> pd.DataFrame:
    contacts = portfolio.tables["contacts"]
    truth = portfolio.truth["contacts"]
    frame = contacts.merge(truth, on="contact_id")
    segments = portfolio.truth["debtors"][["debtor_id", "segment"]]
    accounts = portfolio.tables["accounts"][["account_id", "debtor_id"]]
    frame = frame.merge(accounts, on="account_id").merge(segments, on="debtor_id")
    return _local(frame, portfolio, "attempted_at")


REACHED = ["right_party_contact", "promise_to_pay", "refused", "dispute", "opted_out", "clicked"]


def test_reach_responds_to_hour_and_channel_as_the_truth_says(
    medium_portfolio: SimulatedPortfolio,
) -> None:
    frame = _outbound_with_truth(medium_portfolio)
    calls = frame[frame["channel"] == "call"].copy()
    calls["reached"] = calls["outcome"].isin(REACHED)
    calls["evening"] = calls["local_time"].dt.hour >= 18
    evening_people = calls[calls["segment"] == "evening"].groupby("evening", observed=True)
    observed = evening_people["reached"].mean()
    expected = evening_people["p_right_party_contact"].mean()
    # people who work days answer far more in the evening, and the truth knows by how much
    assert observed[True] > 2 * observed[False]
    for hour_band in (True, False):
        n = evening_people.size()[hour_band]
        tolerance = 4 * np.sqrt(expected[hour_band] * (1 - expected[hour_band]) / n)
        assert abs(observed[hour_band] - expected[hour_band]) < tolerance
    # digital debtors engage more by SMS than they answer calls
    digital = frame[(frame["segment"] == "digital") & frame["channel"].isin(["call", "sms"])].copy()
    digital["reached"] = digital["outcome"].isin(REACHED)
    rates = digital.groupby("channel", observed=True)["reached"].mean()
    assert rates["sms"] > 2 * rates["call"]


def test_offers_raise_commitment_as_the_truth_says(medium_portfolio: SimulatedPortfolio) -> None:
    frame = _outbound_with_truth(medium_portfolio)
    calls = frame[(frame["channel"] == "call") & frame["outcome"].isin(REACHED)].copy()
    calls["committed"] = calls["outcome"] == "promise_to_pay"
    by_offer = calls.groupby("offer_code", observed=True)
    observed = by_offer["committed"].mean()
    expected = by_offer["p_commit"].mean()
    assert observed[1] > observed[0] and observed[2] > observed[0]
    for offer, n in by_offer.size().items():
        tolerance = 4 * np.sqrt(expected[offer] * (1 - expected[offer]) / n)
        assert abs(observed[offer] - expected[offer]) < tolerance, offer


def test_payments_within_30_days_match_the_truth(medium_portfolio: SimulatedPortfolio) -> None:
    """Across contacts the simulator drew from, paying within 30 days is as likely as truth says."""
    frame = medium_portfolio.tables["contacts"].merge(
        medium_portfolio.truth["contacts"], on="contact_id"
    )
    frame = (
        frame.sort_values("contact_id").groupby("account_id", observed=True).head(1)
    )  # first contact only
    payments = medium_portfolio.tables["payments"]
    pairs = frame[["contact_id", "account_id", "attempted_at"]].merge(payments, on="account_id")
    within = (pairs["paid_at"] > pairs["attempted_at"]) & (
        pairs["paid_at"] <= pairs["attempted_at"] + pd.Timedelta(days=30)
    )
    paid = frame["contact_id"].isin(pairs.loc[within, "contact_id"])
    # later contacts in the window add to the chance of paying, so truth (one action) is a floor
    assert paid.mean() >= frame["p_payment_30d"].mean() - 3 * np.sqrt(paid.mean() / len(frame))
    ranked = frame.assign(paid=paid.to_numpy()).sort_values("p_payment_30d")
    low, high = np.array_split(ranked["paid"].to_numpy(), 2)
    assert high.mean() > low.mean()


def test_truth_state_is_the_observable_history(medium_portfolio: SimulatedPortfolio) -> None:
    """The state the behaviour model saw can be recomputed from the contract tables."""
    frame = _outbound_with_truth(medium_portfolio).sample(400, random_state=0)
    contacts = _local(medium_portfolio.tables["contacts"], medium_portfolio, "attempted_at")
    outbound = contacts[contacts["direction"] == "outbound"][["account_id", "local_time"]]
    pairs = frame[["contact_id", "account_id", "local_time"]].merge(
        outbound, on="account_id", suffixes=("", "_before")
    )
    days = (pairs["local_time"].dt.floor("D") - pairs["local_time_before"].dt.floor("D")).dt.days
    recent = pairs[days.between(1, 7)].groupby("contact_id", observed=True).size()
    counted = frame["contact_id"].map(recent).fillna(0)
    np.testing.assert_array_equal(counted.to_numpy(), frame["contacts_7d"].to_numpy())

    payments = _local(medium_portfolio.tables["payments"], medium_portfolio, "paid_at")
    accounts = medium_portfolio.tables["accounts"].set_index("account_id")
    pairs = frame[["contact_id", "account_id", "local_time"]].merge(
        payments[["account_id", "local_time", "paid_at", "amount"]],
        on="account_id",
        suffixes=("", "_paid"),
    )
    days = (pairs["local_time"].dt.floor("D") - pairs["local_time_paid"].dt.floor("D")).dt.days
    in_90 = pairs[days.between(1, 90)].groupby("contact_id", observed=True).size()
    np.testing.assert_array_equal(
        frame["contact_id"].map(in_90).fillna(0).to_numpy(), frame["payments_90d"].to_numpy()
    )
    placed = pairs["account_id"].map(accounts["placed_at"])
    since_placement = pairs[(days >= 1) & (pairs["paid_at"] >= placed)]
    paid = since_placement.groupby("contact_id", observed=True)["amount"].sum()
    balance = frame["account_id"].map(accounts["original_balance"]) - frame["contact_id"].map(
        paid
    ).fillna(0)
    np.testing.assert_allclose(
        balance.to_numpy(), frame["balance"].to_numpy(), rtol=1e-5, atol=0.02
    )


def test_behaviour_model_is_exposed_for_any_state_and_action() -> None:
    state = {
        "balance": np.array([800.0, 800.0]),
        "original_balance": np.array([1000.0, 1000.0]),
        "days_past_due": np.array([200, 200]),
        "payments_90d": np.array([1, 1]),
        "broken_promises_90d": np.array([0, 0]),
        "contacts_7d": np.array([0, 0]),
        "pre_placement_payments": np.array([3, 3]),
        "product_code": np.array([0, 0]),
        "willingness": np.array([0.2, 0.2]),
        "ability": np.array([0.5, 0.5]),
        "segment_code": np.array([1, 1]),  # evening
        "phone_valid": np.array([True, True]),
        "email_status_code": np.array([1, 1]),
        "address_valid": np.array([True, True]),
    }
    actions = {
        "channel_code": np.array([0, 0]),
        "local_hour": np.array([10, 19]),
        "weekday": np.array([2, 2]),
        "offer_code": np.array([0, 1]),
        "discount_pct": np.array([np.nan, 30.0]),
        "installments": np.array([0, 0]),
    }
    outcomes = bh.action_outcomes(state, actions)
    assert outcomes["p_right_party_contact"][1] > outcomes["p_right_party_contact"][0]
    assert outcomes["p_commit"][1] > outcomes["p_commit"][0]
    assert (outcomes["p_payment_30d"] > outcomes["p_self_cure_30d"]).all()
    quiet = {**actions, "local_hour": np.array([7, 21])}
    assert (bh.p_right_party_contact(state, quiet, bh.BehaviourParams()) == 0).all()
    assert (bh.no_action_outcomes(state)["p_payment_30d"] == outcomes["p_self_cure_30d"]).all()


def test_config_rejects_impossible_calendars() -> None:
    with pytest.raises(ValueError, match="placement_days"):
        SimulationConfig(accounts=10, horizon_days=30, placement_days=60)
    with pytest.raises(ValueError, match="accounts"):
        SimulationConfig(accounts=0)


def test_logged_action_probability_is_the_policy_probability(
    medium_portfolio: SimulatedPortfolio,
) -> None:
    """action_probability = P(channel) x P(hour | channel) x P(offer and terms | channel), the
    offer factor only where the offer could reach the debtor; P(channel) depends on which
    channels were open that day, so it must be one of the policy's renormalized weights."""
    from itertools import combinations

    from simulator import behaviour as bh
    from simulator.engine import (
        POLICY_CHANNEL_WEIGHTS,
        POLICY_HOUR_PROBS,
        POLICY_OFFER_PROBS,
    )

    frame = _outbound_with_truth(medium_portfolio)
    channel = frame["channel"].map({name: code for code, name in enumerate(bh.CHANNEL_CODES)})
    channel = channel.to_numpy(int)
    hour = frame["local_time"].dt.hour.to_numpy()
    offer = frame["offer_code"].to_numpy(int)
    matters = np.where(
        channel == 0,
        frame["outcome"].isin(REACHED),
        frame["outcome"] != "bounced",
    )
    offer_factor = np.where(
        matters, POLICY_OFFER_PROBS[channel, offer] * np.where(offer == 0, 1.0, 1 / 3), 1.0
    )
    hour_factor = POLICY_HOUR_PROBS[channel, hour - 8]
    implied_channel = frame["action_probability"].to_numpy() / hour_factor / offer_factor
    possible = {
        code: [
            POLICY_CHANNEL_WEIGHTS[code] / POLICY_CHANNEL_WEIGHTS[list(open_)].sum()
            for size in range(1, 5)
            for open_ in combinations(range(4), size)
            if code in open_
        ]
        for code in range(4)
    }
    distance = np.array(
        [
            min(abs(value - p) for p in possible[code])
            for value, code in zip(implied_channel, channel, strict=True)
        ]
    )
    assert len(frame) > 1000
    assert (distance < 1e-4 * np.maximum(implied_channel, 1)).all()
