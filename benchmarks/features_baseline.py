"""A straightforward pandas implementation of the main account features, for comparison.

Written the way one would at first: filter each window, `groupby(...).agg(...)`, join. It covers
the payment, promise, contact (per channel, per hour band and day type), offer and account-state
features; the benchmark checks that it gives the same values as `features.snapshot`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from data_contracts.vocabulary import CHANNELS, NOT_REACHED_OUTCOMES, RESPONSE_OUTCOMES
from features.catalog import CONTACT_WINDOWS, PAYMENT_WINDOWS, PROMISE_WINDOWS
from features.history import HOUR_BANDS

DAY = pd.Timedelta(days=1)


def baseline_account_features(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp
) -> pd.DataFrame:
    accounts = tables["accounts"]
    accounts = accounts[accounts["placed_at"] <= as_of]
    out = pd.DataFrame(index=pd.Index(accounts["account_id"], name="account_id"))

    payments = tables["payments"]
    payments = payments[payments["paid_at"] < as_of]
    for window in PAYMENT_WINDOWS:
        recent = payments[payments["paid_at"] >= as_of - window * DAY]
        grouped = recent.groupby("account_id", observed=True)["amount"]
        out[f"payments_count_{window}d"] = grouped.size()
        out[f"payments_sum_{window}d"] = grouped.sum()
    out["days_since_last_payment"] = (
        as_of - payments.groupby("account_id", observed=True)["paid_at"].max()
    ) / DAY
    merged = payments.merge(
        accounts[["account_id", "placed_at", "original_balance"]], on="account_id"
    )
    since = (
        merged[merged["paid_at"] >= merged["placed_at"]]
        .groupby("account_id", observed=True)["amount"]
        .sum()
    )
    out["current_balance"] = (
        accounts.set_index("account_id")["original_balance"] - since.reindex(out.index).fillna(0)
    ).clip(lower=0)

    promises = tables["promises"]
    promises = promises[promises["made_at"] < as_of]
    resolved_at = promises["due_at"] + 3 * DAY
    for window in PROMISE_WINDOWS:
        made = promises[promises["made_at"] >= as_of - window * DAY]
        out[f"promises_made_{window}d"] = made.groupby("account_id", observed=True).size()
        done = promises[(resolved_at <= as_of) & (resolved_at >= as_of - window * DAY)]
        out[f"promises_kept_{window}d"] = (
            done[done["kept"] == True].groupby("account_id", observed=True).size()  # noqa: E712
        )
        out[f"promises_broken_{window}d"] = (
            done[done["kept"] == False].groupby("account_id", observed=True).size()  # noqa: E712
        )

    contacts = tables["contacts"]
    contacts = contacts[(contacts["attempted_at"] < as_of) & (contacts["direction"] == "outbound")]
    contacts = contacts.assign(
        responded=contacts["outcome"].isin(list(RESPONSE_OUTCOMES)),
        through=~contacts["outcome"].isin(list(NOT_REACHED_OUTCOMES)),
    )
    for channel in CHANNELS:
        mine = contacts[contacts["channel"] == channel]
        for window in CONTACT_WINDOWS:
            recent = mine[mine["attempted_at"] >= as_of - window * DAY]
            grouped = recent.groupby("account_id", observed=True)
            out[f"{channel}_attempts_{window}d"] = grouped.size()
            out[f"{channel}_responses_{window}d"] = grouped["responded"].sum()
        recent = mine[mine["attempted_at"] >= as_of - 90 * DAY].groupby("account_id", observed=True)
        out[f"{channel}_contact_rate_90d"] = recent["through"].mean()
        out[f"{channel}_response_rate_90d"] = recent["responded"].mean()

    calls = contacts[
        (contacts["channel"] == "call") & (contacts["attempted_at"] >= as_of - 365 * DAY)
    ]
    zones = (
        calls[["account_id"]]
        .merge(accounts[["account_id", "debtor_id"]], on="account_id", how="left")
        .merge(tables["debtors"][["debtor_id", "timezone"]], on="debtor_id", how="left")
    )
    hours = np.zeros(len(calls), dtype=int)
    weekdays = np.zeros(len(calls), dtype=int)
    zone_names = zones["timezone"].astype(str).to_numpy()
    for zone in np.unique(zone_names):
        rows = zone_names == zone
        local = calls["attempted_at"][rows].dt.tz_convert(zone)
        hours[rows] = local.dt.hour.to_numpy()
        weekdays[rows] = local.dt.dayofweek.to_numpy()
    for band, (start, end) in HOUR_BANDS.items():
        in_band = calls[(hours >= start) & (hours < end)].groupby("account_id", observed=True)
        out[f"call_attempts_{band}_365d"] = in_band.size()
        out[f"call_response_rate_{band}_365d"] = in_band["responded"].mean()
    for day_type, chosen in (("weekday", weekdays < 5), ("weekend", weekdays >= 5)):
        grouped = calls[chosen].groupby("account_id", observed=True)
        out[f"call_attempts_{day_type}_365d"] = grouped.size()
        out[f"call_response_rate_{day_type}_365d"] = grouped["responded"].mean()

    offers = tables["offers"]
    offers = offers[offers["offered_at"] < as_of]
    grouped = offers.groupby("account_id", observed=True)
    out["offers_made_total"] = grouped.size()
    out["offers_accepted_total"] = (
        offers[offers["accepted_at"] < as_of].groupby("account_id", observed=True).size()
    )

    counts = [
        c
        for c in out.columns
        if "_attempts_" in c or "count" in c or "_made_" in c or "_total" in c
    ]
    counts += [
        c
        for c in out.columns
        if "_kept_" in c or "_broken_" in c or "_responses_" in c or "sum" in c
    ]
    out[counts] = out[counts].fillna(0)
    return out.reset_index()
