"""What the contact rules forbid on a day, computed from each account's contact history.

The rules themselves are a contract (`data_contracts.contact_rules`); this module reads the
history they look at (call attempts in the last 7 days, the last telephone conversation,
disputes, opt-outs) and says, per account and channel, which rule a contact would break and
until when. The worklist, the KPIs and the audit all ask here, so a block means the same
everywhere. Pure functions on DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contact_rules import BlockKind, Limits
from data_contracts.ids import lookup
from data_contracts.vocabulary import TELEPHONE_CONVERSATIONS
from features.history import HOUR_BANDS


class Block(str):
    """Why a contact is not allowed, as a sentence, with the kind of rule it breaks."""

    kind: BlockKind

    def __new__(cls, kind: BlockKind, text: str) -> Block:
        block = super().__new__(cls, text)
        block.kind = kind
        return block


@dataclass
class AccountHistory:
    """What the rules need to know about an account's past contacts."""

    call_days: list[date] = field(default_factory=list)
    """Local dates of call attempts in the 6 days before the worklist day."""
    last_conversation: date | None = None
    """Local date of the last telephone conversation about the debt."""
    opted_out: frozenset[str] = frozenset()
    last_dispute: date | None = None


def call_block(history: AccountHistory, day: date, limits: Limits) -> Block | None:
    """Why a call today would break a rule (with the first day it would not), or None."""
    if history.last_conversation is not None:
        free = history.last_conversation + timedelta(days=limits.conversation_gap_days + 1)
        if day < free:
            return Block(
                BlockKind.RECENT_CONVERSATION,
                f"call: conversation on {history.last_conversation}, no call until {free}",
            )
    window = sorted(d for d in history.call_days if day - timedelta(days=6) <= d < day)
    if len(window) + 1 > limits.max_calls_7d:
        # the call becomes possible once enough old attempts leave the 7-day window
        oldest_needed = window[len(window) - limits.max_calls_7d] if limits.max_calls_7d else None
        until = oldest_needed + timedelta(days=7) if oldest_needed else None
        text = f"call cap reached until {until}" if until else "calls not allowed here"
        return Block(BlockKind.CALL_CAP, text)
    return None


def channel_blocks(
    history: AccountHistory, day: date, limits: Limits
) -> tuple[dict[str, Block], Block | None]:
    """Reasons per blocked channel, and a reason that blocks the whole account."""
    if history.last_dispute is not None:
        until = history.last_dispute + timedelta(days=limits.dispute_pause_days)
        if day < until:
            return {}, Block(BlockKind.DISPUTE, f"dispute under verification until {until}")
    blocked = {
        channel: Block(BlockKind.OPTED_OUT, f"{channel}: opted out")
        for channel in history.opted_out
    }
    call = call_block(history, day, limits)
    if call and "call" not in blocked:
        blocked["call"] = call
    return blocked, None


def local_window(band: str, limits: Limits) -> tuple[int, int] | None:
    """The band's hours clipped to the allowed contact hours (None if nothing is left)."""
    start, end = HOUR_BANDS[band]
    start, end = max(start, limits.earliest_hour), min(end, limits.latest_hour)
    return (start, end) if start < end else None


def hours_block(channel: str, band: str, limits: Limits) -> Block | None:
    """Why contacting in this hour band breaks the allowed hours, or None."""
    if local_window(band, limits) is not None:
        return None
    return Block(BlockKind.OUTSIDE_HOURS, f"{channel}: {band} is outside the allowed hours")


def local_dates(times: pd.Series, zones: pd.Series) -> pd.Series:
    """Local calendar date of each UTC time in its own time zone."""
    result = pd.Series(pd.NaT, index=times.index, dtype="object")
    for zone, rows in zones.groupby(zones, observed=True).groups.items():
        result.loc[rows] = times.loc[rows].dt.tz_convert(str(zone)).dt.date
    return result


def local_days(times: pd.Series, zones: pd.Series) -> np.ndarray:
    """Local calendar day (numpy `datetime64[D]`, NaT when the zone is unknown) of each UTC
    time in its own time zone."""
    days = np.full(len(times), np.datetime64("NaT"), dtype="datetime64[D]")
    codes, uniques = pd.factorize(zones)
    for number, zone in enumerate(uniques):
        rows = codes == number
        local = times[rows].dt.tz_convert(str(zone)).dt.tz_localize(None)
        days[rows] = local.to_numpy().astype("datetime64[D]")
    return days


def _as_dates(days: np.ndarray) -> list[date]:
    return [value.item() for value in days.astype("datetime64[D]")]


def contact_histories(
    contacts: pd.DataFrame, zone_of_account: pd.Series, day: date, lookback_days: int | None = None
) -> dict[str, AccountHistory]:
    """Each account's history as the rules see it on `day`, from the contacts table (events
    before the day only; with `lookback_days`, only opt-outs are read further back)."""
    if not len(contacts):
        return {}
    frame = contacts[contacts["account_id"].isin(zone_of_account.index)]
    if lookback_days is not None:
        # a day of margin either side for time zones
        since = pd.Timestamp(day - timedelta(days=lookback_days + 1), tz="UTC")
        recent = frame["attempted_at"] >= since
        # (categorical columns compare by code: no text conversion of the whole table)
        frame = frame[recent.to_numpy(bool) | (frame["outcome"] == "opted_out").to_numpy(bool)]
    local = local_days(frame["attempted_at"], lookup(frame["account_id"], zone_of_account))
    today = np.datetime64(day, "D")
    before = local < today
    frame = frame[before].assign(local_day=local[before])
    channel, outcome = frame["channel"], frame["outcome"]
    outbound_calls = frame[(channel == "call") & (frame["direction"] == "outbound")]
    recent_calls = outbound_calls[outbound_calls["local_day"] >= today - np.timedelta64(6, "D")]
    conversations = frame[(channel == "call") & outcome.isin(TELEPHONE_CONVERSATIONS)]
    disputes = frame[outcome == "dispute"]
    opt_outs = frame[outcome == "opted_out"]
    histories: dict[str, AccountHistory] = {}

    def get(account_id: Any) -> AccountHistory:
        return histories.setdefault(str(account_id), AccountHistory())

    codes, uniques = pd.factorize(recent_calls["account_id"])
    order = np.argsort(codes, kind="stable")
    calls = recent_calls.iloc[order]
    ids = np.asarray(uniques, dtype=object)[codes[order]]
    starts = np.flatnonzero(np.diff(codes[order])) + 1
    call_days = _as_dates(calls["local_day"].to_numpy())
    if len(ids):
        firsts, lasts = np.r_[0, starts], np.r_[starts, len(ids)]
        for key, first, last in zip(ids[firsts], firsts, lasts, strict=True):
            get(key).call_days = call_days[first:last]
    latest = conversations.groupby("account_id", observed=True)["local_day"].max()
    for key, talked in zip(latest.index, _as_dates(latest.to_numpy()), strict=True):
        get(key).last_conversation = talked
    latest = disputes.groupby("account_id", observed=True)["local_day"].max()
    for key, disputed in zip(latest.index, _as_dates(latest.to_numpy()), strict=True):
        get(key).last_dispute = disputed
    for key, channels in opt_outs.groupby("account_id", observed=True)["channel"]:
        get(key).opted_out = frozenset(channels.astype(str))
    return histories
