"""Compliant, prioritized worklists (pure functions on DataFrames).

For one day, the capacities a caller gives and each account's candidate actions (one per
channel, valued by the next-best-action model), the worklist schedules at most one contact per
account, follow-ups first, then by expected net value, and never breaks a rule:
- at most `max_calls_7d` call attempts in 7 consecutive days, counting the history and the call
  scheduled today; no call within `conversation_gap_days` after a telephone conversation;
- contact only between `earliest_hour` and `latest_hour` in the debtor's local time;
- no channel the debtor opted out of; no contact while a dispute is being verified;
- stricter limits per jurisdiction from the rules file.
Every account that cannot be contacted at all says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from features.history import HOUR_BANDS
from features.snapshot import TELEPHONE_CONVERSATIONS

CHANNELS = ("call", "sms", "email", "letter")
FOLLOW_UP_CHANNEL = {"promise_reminder": "sms", "broken_promise": "call", "plan_check": "call"}


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_calls_7d: int = Field(default=7, ge=0)
    conversation_gap_days: int = Field(default=7, ge=0)
    earliest_hour: int = Field(default=8, ge=0, le=23)
    latest_hour: int = Field(default=21, ge=1, le=24)
    dispute_pause_days: int = Field(default=30, ge=0)


class ContactRules(BaseModel):
    """Default limits and stricter ones per jurisdiction (never looser: checked)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: Limits = Limits()
    jurisdictions: dict[str, dict[str, int]] = {}

    def for_region(self, region: str | None) -> Limits:
        override = self.jurisdictions.get(str(region), {}) if region is not None else {}
        return self.default.model_copy(update=override) if override else self.default

    def model_post_init(self, _: Any) -> None:
        base = self.default
        for region, override in self.jurisdictions.items():
            limits = Limits(**{**base.model_dump(), **override})
            looser = (
                limits.max_calls_7d > base.max_calls_7d
                or limits.conversation_gap_days < base.conversation_gap_days
                or limits.earliest_hour < base.earliest_hour
                or limits.latest_hour > base.latest_hour
                or limits.dispute_pause_days < base.dispute_pause_days
            )
            if looser:
                raise ValueError(f"rules for {region} are looser than the default")


def load_rules(path: Path) -> ContactRules:
    return ContactRules.model_validate(yaml.safe_load(Path(path).read_text()) or {})


@dataclass
class AccountHistory:
    """What the rules need to know about an account's past contacts."""

    call_days: list[date] = field(default_factory=list)
    """Local dates of call attempts in the 6 days before the worklist day."""
    last_conversation: date | None = None
    """Local date of the last telephone conversation about the debt."""
    opted_out: frozenset[str] = frozenset()
    last_dispute: date | None = None


def call_block(history: AccountHistory, day: date, limits: Limits) -> str | None:
    """Why a call today would break a rule (with the first day it would not), or None."""
    if history.last_conversation is not None:
        free = history.last_conversation + timedelta(days=limits.conversation_gap_days + 1)
        if day < free:
            return f"call: conversation on {history.last_conversation}, no call until {free}"
    window = sorted(d for d in history.call_days if day - timedelta(days=6) <= d < day)
    if len(window) + 1 > limits.max_calls_7d:
        # the call becomes possible once enough old attempts leave the 7-day window
        oldest_needed = window[len(window) - limits.max_calls_7d] if limits.max_calls_7d else None
        until = oldest_needed + timedelta(days=7) if oldest_needed else None
        return f"call cap reached until {until}" if until else "calls not allowed here"
    return None


def channel_blocks(
    history: AccountHistory, day: date, limits: Limits
) -> tuple[dict[str, str], str | None]:
    """Reasons per blocked channel, and a reason that blocks the whole account."""
    if history.last_dispute is not None:
        until = history.last_dispute + timedelta(days=limits.dispute_pause_days)
        if day < until:
            return {}, f"dispute under verification until {until}"
    blocked = {channel: f"{channel}: opted out" for channel in history.opted_out}
    call = call_block(history, day, limits)
    if call and "call" not in blocked:
        blocked["call"] = call
    return blocked, None


def local_window(band: str, limits: Limits) -> tuple[int, int] | None:
    """The band's hours clipped to the allowed contact hours (None if nothing is left)."""
    start, end = HOUR_BANDS[band]
    start, end = max(start, limits.earliest_hour), min(end, limits.latest_hour)
    return (start, end) if start < end else None


def build_worklist(
    candidates: pd.DataFrame,
    accounts: pd.DataFrame,
    histories: Mapping[int, AccountHistory],
    follow_ups: pd.DataFrame,
    rules: ContactRules,
    day: date,
    capacity: Mapping[str, int],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The day's worklist and the accounts excluded with their reasons.

    Args:
        candidates: one row per account and channel: `account_id`, `channel`, `hour_band`,
            `offer`, `discount_pct`, `installments`, `expected_net`.
        accounts: `account_id`, `region`, `timezone`.
        histories: contact history per account id (missing: no history).
        follow_ups: `account_id`, `kind` (promise_reminder, broken_promise, plan_check),
            `detail`; scheduled before anything else.
        rules: the contact rules.
        day: the worklist's day (each debtor's local calendar).
        capacity: contacts available per channel today.
    """
    left = {channel: int(capacity.get(channel, 0)) for channel in CHANNELS}
    region_of: dict[int, Any] = dict(zip(accounts["account_id"], accounts["region"], strict=True))
    zone_of: dict[int, Any] = dict(zip(accounts["account_id"], accounts["timezone"], strict=True))
    items: list[dict[str, Any]] = []
    excluded: dict[int, str] = {}
    done: set[int] = set()

    def check(account_id: int, channel: str, band: str) -> tuple[str | None, Any]:
        region = region_of[account_id]
        limits = rules.for_region(None if pd.isna(region) else str(region))
        history = histories.get(account_id, AccountHistory())
        blocked, whole = channel_blocks(history, day, limits)
        if whole:
            return whole, None
        if channel in blocked:
            return blocked[channel], None
        window = local_window(band, limits)
        if window is None:
            return f"{channel}: {band} is outside the allowed hours", None
        return None, (window, zone_of[account_id])

    def schedule(
        account_id: int, channel: str, band: str, kind: str, extra: dict[str, Any]
    ) -> bool:
        reason, found = check(account_id, channel, band)
        if reason is not None:
            excluded.setdefault(account_id, reason)
            return False
        if left[channel] <= 0:
            return False
        (start, end), zone = found
        left[channel] -= 1
        done.add(account_id)
        excluded.pop(account_id, None)
        items.append(
            {
                "account_id": account_id,
                "kind": kind,
                "channel": channel,
                "local_window": f"{start:02d}:00-{end:02d}:00",
                "timezone": zone,
                **extra,
            }
        )
        return True

    follow: dict[Any, Any]
    for follow in follow_ups.to_dict("records"):
        account_id = int(follow["account_id"])
        if account_id in done or account_id not in region_of:
            continue
        kind = str(follow["kind"])
        schedule(
            account_id, FOLLOW_UP_CHANNEL[kind], "afternoon", kind, {"detail": follow["detail"]}
        )
    ranked = candidates.sort_values(["expected_net", "account_id"], ascending=[False, True])
    row: dict[Any, Any]
    for row in ranked.to_dict("records"):
        account_id = int(row["account_id"])
        if account_id in done or account_id not in region_of:
            continue
        schedule(
            account_id,
            str(row["channel"]),
            str(row["hour_band"]),
            "best_action",
            {
                "offer": row["offer"],
                "discount_pct": row["discount_pct"],
                "installments": row["installments"],
                "expected_net": float(row["expected_net"]),
            },
        )
    worklist = pd.DataFrame(items)
    if len(worklist):
        worklist.insert(0, "rank", range(1, len(worklist) + 1))
    reasons = pd.DataFrame(
        [
            {"account_id": a, "reason": f"blocked: {r}"}
            for a, r in sorted(excluded.items())
            if a not in done
        ],
        columns=["account_id", "reason"],
    )
    return worklist, reasons


def _local_dates(times: pd.Series, zones: pd.Series) -> pd.Series:
    """Local calendar date of each UTC time in its own time zone."""
    result = pd.Series(pd.NaT, index=times.index, dtype="object")
    for zone, rows in zones.groupby(zones, observed=True).groups.items():
        result.loc[rows] = times.loc[rows].dt.tz_convert(str(zone)).dt.date
    return result


def contact_histories(
    contacts: pd.DataFrame, zone_of_account: pd.Series, day: date
) -> dict[int, AccountHistory]:
    """Each account's history as the rules see it on `day`, from the contacts table (events
    before the day only)."""
    if not len(contacts):
        return {}
    frame = contacts[contacts["account_id"].isin(zone_of_account.index)]
    frame = frame.assign(
        local_day=_local_dates(frame["attempted_at"], frame["account_id"].map(zone_of_account))
    )
    frame = frame[frame["local_day"] < day]
    channel = frame["channel"].astype(str)
    outcome = frame["outcome"].astype(str)
    outbound_calls = frame[(channel == "call") & (frame["direction"].astype(str) == "outbound")]
    recent_calls = outbound_calls[outbound_calls["local_day"] >= day - timedelta(days=6)]
    conversations = frame[(channel == "call") & outcome.isin(TELEPHONE_CONVERSATIONS)]
    disputes = frame[outcome == "dispute"]
    opt_outs = frame[outcome == "opted_out"]
    histories: dict[int, AccountHistory] = {}

    def get(account_id: Any) -> AccountHistory:
        return histories.setdefault(int(account_id), AccountHistory())

    key: Any
    value: Any
    for key, value in recent_calls.groupby("account_id")["local_day"]:
        get(key).call_days = list(value)
    for key, value in conversations.groupby("account_id")["local_day"].max().items():
        get(key).last_conversation = value
    for key, value in disputes.groupby("account_id")["local_day"].max().items():
        get(key).last_dispute = value
    for key, value in opt_outs.groupby("account_id")["channel"]:
        get(key).opted_out = frozenset(value.astype(str))
    return histories


def promise_follow_ups(
    promises: pd.DataFrame, offers: pd.DataFrame, zone_of_account: pd.Series, day: date
) -> pd.DataFrame:
    """Reminders for promises falling due in the next 2 days, calls after promises broken in
    the last 3 days (a plan check when the promise was a plan installment)."""
    columns = ["account_id", "kind", "detail"]
    if not len(promises):
        return pd.DataFrame(columns=columns)
    frame = promises[promises["account_id"].isin(zone_of_account.index)]
    due: Any = _local_dates(frame["due_at"], frame["account_id"].map(zone_of_account))
    plan_offers = set(offers.loc[offers["kind"].astype(str) == "payment_plan", "offer_id"])
    frame = frame.assign(due_day=due)
    known = due.notna().to_numpy(bool)
    due_days: Any = np.where(known, due.to_numpy(), np.full(len(due), day, dtype=object))
    broken_flag = frame["kept"].eq(False).fillna(False).to_numpy(bool)
    upcoming = frame[known & (due_days >= day) & (due_days <= day + timedelta(days=2))]
    # the grace period ends 2 days after the due day: broken promises are known then
    broken_on = due_days + timedelta(days=3)
    recent = (broken_on <= day) & (broken_on > day - timedelta(days=3))
    broken = frame[known & broken_flag & recent]
    record: dict[Any, Any]
    rows = []
    for record in upcoming.to_dict("records"):
        rows.append(
            {
                "account_id": int(record["account_id"]),
                "kind": "promise_reminder",
                "detail": f"{record['amount']:,.2f} due {record['due_day']}",
            }
        )
    for record in broken.to_dict("records"):
        plan = record["offer_id"] in plan_offers
        rows.append(
            {
                "account_id": int(record["account_id"]),
                "kind": "plan_check" if plan else "broken_promise",
                "detail": f"{record['amount']:,.2f} was due {record['due_day']}",
            }
        )
    return pd.DataFrame(rows, columns=columns)
