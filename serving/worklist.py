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

from collections.abc import Callable, Mapping
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

    def lookback_days(self) -> int:
        """How far back the rules look at contacts (opt-outs excepted: they never expire)."""
        limits = [self.default, *(self.for_region(r) for r in self.jurisdictions)]
        return 1 + max(7, *(max(x.dispute_pause_days, x.conversation_gap_days) for x in limits))

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


class RulesError(ValueError):
    """The contact rules file is missing or not valid (the message names the file and why)."""


def load_rules(path: Path) -> ContactRules:
    """The contact rules of a YAML file; `RulesError` naming the file and the problem."""
    from pydantic import ValidationError

    try:
        return ContactRules.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    except OSError as error:
        raise RulesError(f"contact rules {path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "unreadable"
        raise RulesError(f"contact rules {path}: not valid YAML, {problem}{where}") from None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise RulesError(f"contact rules {path}: {where}: {first['msg']}") from None


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

    Each account's options are its follow-ups (first, in the order given) and its candidate
    actions (by expected net value, highest first). An option breaking a rule is blocked with
    its reason; the others are scheduled greedily, one contact per account, while the
    channel has capacity. An account is excluded when every option it had was blocked, with
    the reason of its first option; one that only missed the capacity cut is not.

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
    options = _options(candidates, follow_ups, accounts)
    region = options["account_id"].map(accounts.set_index("account_id")["region"])
    region_key = region.astype(object).where(region.notna(), None)
    limits_of = {r: rules.for_region(r) for r in region_key.unique()}
    options["reason"] = _option_blocks(options, region_key, limits_of, histories, day)
    options["local_window"] = _per_combination(
        [options["hour_band"], region_key],
        lambda band, r: _window_text(local_window(band, limits_of[r])),
    )
    chosen = _schedule(options, capacity)
    items = options.loc[chosen].drop(columns=["reason", "hour_band"]).reset_index(drop=True)
    items = items.dropna(axis=1, how="all")
    if len(items):
        items.insert(0, "rank", range(1, len(items) + 1))
    done = set(items["account_id"]) if len(items) else set()
    open_options = options[~options["account_id"].isin(done)]
    allowed = open_options["reason"].isna().groupby(open_options["account_id"]).sum()
    first_reason = open_options.groupby("account_id", sort=True)["reason"].first()
    excluded_ids = allowed.index[np.asarray(allowed) == 0]
    excluded = pd.DataFrame(
        {
            "account_id": excluded_ids.astype(int),
            "reason": "blocked: " + first_reason.loc[excluded_ids].astype(str),
        },
    ).reset_index(drop=True)
    return items, excluded


def _options(
    candidates: pd.DataFrame, follow_ups: pd.DataFrame, accounts: pd.DataFrame
) -> pd.DataFrame:
    """Follow-ups then candidates in the order they are considered, known accounts only."""
    follow = pd.DataFrame(
        {
            "account_id": follow_ups["account_id"].astype(np.int64),
            "kind": follow_ups["kind"].astype(str),
            "channel": follow_ups["kind"].astype(str).map(FOLLOW_UP_CHANNEL),
            "hour_band": "afternoon",
            "detail": follow_ups["detail"],
        }
    )
    ranked = candidates.sort_values(["expected_net", "account_id"], ascending=[False, True])
    best = pd.DataFrame(
        {
            "account_id": ranked["account_id"].astype(np.int64),
            "kind": "best_action",
            "channel": ranked["channel"].astype(str),
            "hour_band": ranked["hour_band"].astype(str),
            "offer": ranked["offer"],
            "discount_pct": ranked["discount_pct"].astype(float),
            "installments": ranked["installments"].astype(float),
            "expected_net": ranked["expected_net"].astype(float),
        }
    )
    parts = [part for part in (follow, best) if len(part)]
    if not parts:
        return best.assign(detail=pd.Series(dtype=object)).iloc[0:0]
    options = pd.concat(parts, ignore_index=True)
    options = options[options["account_id"].isin(accounts["account_id"])]
    zone = accounts.set_index("account_id")["timezone"]
    options = options.assign(timezone=options["account_id"].map(zone))
    return options.reset_index(drop=True)


def _option_blocks(
    options: pd.DataFrame,
    region_key: pd.Series,
    limits_of: Mapping[str | None, Limits],
    histories: Mapping[int, AccountHistory],
    day: date,
) -> pd.Series:
    """The rule each option breaks (None when allowed): the whole account, the channel, or
    the hour band outside the allowed hours."""
    accounts_with_history = set(options["account_id"]) & set(histories)
    region_of = dict(zip(options["account_id"], region_key, strict=True))
    whole_of, channel_of = {}, {}
    for account_id in accounts_with_history:
        blocked, whole = channel_blocks(
            histories[account_id], day, limits_of[region_of[account_id]]
        )
        if whole:
            whole_of[account_id] = whole
        for channel, reason in blocked.items():
            channel_of[(account_id, channel)] = reason
    reasons = options["account_id"].map(whole_of)
    if channel_of:
        keys = pd.MultiIndex.from_arrays([options["account_id"], options["channel"]])
        by_channel = pd.Series(channel_of).reindex(keys).to_numpy(object)
        reasons = reasons.where(reasons.notna(), by_channel)
    hours = pd.Series(
        _per_combination(
            [options["channel"], options["hour_band"], region_key],
            lambda channel, band, r: (
                None
                if local_window(band, limits_of[r]) is not None
                else f"{channel}: {band} is outside the allowed hours"
            ),
        ),
        index=options.index,
    )
    return reasons.where(reasons.notna(), hours)


def _per_combination(columns: list[pd.Series], function: Callable[..., Any]) -> np.ndarray:
    """`function(*values)` for each row, computed once per distinct combination of values."""
    keys = pd.DataFrame({i: column.to_numpy(object) for i, column in enumerate(columns)})
    group = keys.groupby(list(keys.columns), dropna=False, sort=False).ngroup().to_numpy()
    distinct = keys.drop_duplicates()
    results = np.empty(len(distinct), dtype=object)
    results[:] = [function(*values) for values in distinct.itertuples(index=False)]
    return results[group]


def _schedule(options: pd.DataFrame, capacity: Mapping[str, int]) -> list[int]:
    """Greedy: the allowed options in order, one per account, while the channel has room."""
    left = {channel: int(capacity.get(channel, 0)) for channel in CHANNELS}
    allowed = options.index[options["reason"].isna().to_numpy(bool)]
    chosen: list[int] = []
    done: set[int] = set()
    remaining = sum(left.values())
    accounts = options.loc[allowed, "account_id"].to_numpy()
    channels = options.loc[allowed, "channel"].to_numpy()
    for position, account_id, channel in zip(allowed, accounts, channels, strict=True):
        if remaining <= 0:
            break
        if account_id in done or left.get(channel, 0) <= 0:
            continue
        left[channel] -= 1
        remaining -= 1
        done.add(account_id)
        chosen.append(position)
    return chosen


def _window_text(window: tuple[int, int] | None) -> str | None:
    return None if window is None else f"{window[0]:02d}:00-{window[1]:02d}:00"


def _local_dates(times: pd.Series, zones: pd.Series) -> pd.Series:
    """Local calendar date of each UTC time in its own time zone."""
    result = pd.Series(pd.NaT, index=times.index, dtype="object")
    for zone, rows in zones.groupby(zones, observed=True).groups.items():
        result.loc[rows] = times.loc[rows].dt.tz_convert(str(zone)).dt.date
    return result


def _local_days(times: pd.Series, zones: pd.Series) -> np.ndarray:
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
) -> dict[int, AccountHistory]:
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
    local = _local_days(frame["attempted_at"], frame["account_id"].map(zone_of_account))
    today = np.datetime64(day, "D")
    before = local < today
    frame = frame[before].assign(local_day=local[before])
    channel, outcome = frame["channel"], frame["outcome"]
    outbound_calls = frame[(channel == "call") & (frame["direction"] == "outbound")]
    recent_calls = outbound_calls[outbound_calls["local_day"] >= today - np.timedelta64(6, "D")]
    conversations = frame[(channel == "call") & outcome.isin(TELEPHONE_CONVERSATIONS)]
    disputes = frame[outcome == "dispute"]
    opt_outs = frame[outcome == "opted_out"]
    histories: dict[int, AccountHistory] = {}

    def get(account_id: Any) -> AccountHistory:
        return histories.setdefault(int(account_id), AccountHistory())

    calls = recent_calls.sort_values("account_id", kind="stable")
    ids = calls["account_id"].to_numpy()
    starts = np.flatnonzero(np.diff(ids)) + 1
    call_days = _as_dates(calls["local_day"].to_numpy())
    if len(ids):
        firsts, lasts = np.r_[0, starts], np.r_[starts, len(ids)]
        for key, first, last in zip(ids[firsts], firsts, lasts, strict=True):
            get(key).call_days = call_days[first:last]
    latest = conversations.groupby("account_id")["local_day"].max()
    for key, talked in zip(latest.index, _as_dates(latest.to_numpy()), strict=True):
        get(key).last_conversation = talked
    latest = disputes.groupby("account_id")["local_day"].max()
    for key, disputed in zip(latest.index, _as_dates(latest.to_numpy()), strict=True):
        get(key).last_dispute = disputed
    for key, channels in opt_outs.groupby("account_id")["channel"]:
        get(key).opted_out = frozenset(channels.astype(str))
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
