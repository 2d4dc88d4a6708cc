"""Compliant, prioritized worklists (pure functions on DataFrames).

For one day, the capacities a caller gives and each account's candidate actions (one per
channel, valued by the next-best-action model), the worklist schedules at most one contact per
account, follow-ups first, then by expected net value, and never breaks a rule:
- at most `max_calls_7d` call attempts in 7 consecutive days, counting the history and the call
  scheduled today; no call within `conversation_gap_days` after a telephone conversation;
- contact only between `earliest_hour` and `latest_hour` in the debtor's local time;
- no channel the debtor opted out of; no contact while a dispute is being verified;
- stricter limits per jurisdiction from the rules file.
Every account that cannot be contacted at all says why; a closed account (settled, paid in
full, recalled, ...) is not considered at all and says so (`closed: settled 2026-01-04`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contact_rules import ContactRules, Limits
from data_contracts.ids import lookup
from data_contracts.vocabulary import CHANNELS
from features.compliance import (
    AccountHistory,
    channel_blocks,
    hours_block,
    local_dates,
    local_window,
)

FOLLOW_UP_CHANNEL = {"promise_reminder": "sms", "broken_promise": "call", "plan_check": "call"}


def build_worklist(
    candidates: pd.DataFrame,
    accounts: pd.DataFrame,
    histories: Mapping[str, AccountHistory],
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
    allowed = open_options["reason"].isna().groupby(open_options["account_id"], observed=True).sum()
    first_reason = open_options.groupby("account_id", sort=True, observed=True)["reason"].first()
    excluded_ids = allowed.index[np.asarray(allowed) == 0]
    excluded = pd.DataFrame(
        {
            "account_id": np.asarray(excluded_ids, dtype=object),
            "reason": "blocked: " + first_reason.loc[excluded_ids].astype(str),
        },
    ).reset_index(drop=True)
    return items, excluded


def closed_exclusions(account_ids: np.ndarray, closed: pd.Series) -> pd.DataFrame:
    """The closed accounts among `account_ids` (in that order) with their reasons.

    Args:
        account_ids: the accounts asked for.
        closed: account id -> why it is closed (`closed: settled 2026-01-04`).
    """
    reasons = closed.reindex(pd.Index(account_ids))
    reasons = reasons[reasons.notna()]
    return pd.DataFrame(
        {"account_id": reasons.index.to_numpy(), "reason": reasons.to_numpy(object)}
    )


def _options(
    candidates: pd.DataFrame, follow_ups: pd.DataFrame, accounts: pd.DataFrame
) -> pd.DataFrame:
    """Follow-ups then candidates in the order they are considered, known accounts only."""
    follow = pd.DataFrame(
        {
            "account_id": follow_ups["account_id"].astype(object),
            "kind": follow_ups["kind"].astype(str),
            "channel": follow_ups["kind"].astype(str).map(FOLLOW_UP_CHANNEL),
            "hour_band": "afternoon",
            "detail": follow_ups["detail"],
        }
    )
    ranked = candidates.sort_values(["expected_net", "account_id"], ascending=[False, True])
    best = pd.DataFrame(
        {
            "account_id": ranked["account_id"].astype(object),
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
    histories: Mapping[str, AccountHistory],
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
            lambda channel, band, r: hours_block(channel, band, limits_of[r]),
        ),
        index=options.index,
    )
    return reasons.where(reasons.notna(), hours)


def _per_combination(columns: list[pd.Series], function: Callable[..., Any]) -> np.ndarray:
    """`function(*values)` for each row, computed once per distinct combination of values."""
    keys = pd.DataFrame({i: column.to_numpy(object) for i, column in enumerate(columns)})
    group = (
        keys.groupby(list(keys.columns), dropna=False, sort=False, observed=True)
        .ngroup()
        .to_numpy()
    )
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


def promise_follow_ups(
    promises: pd.DataFrame, offers: pd.DataFrame, zone_of_account: pd.Series, day: date
) -> pd.DataFrame:
    """Reminders for promises falling due in the next 2 days, calls after promises broken in
    the last 3 days (a plan check when the promise was a plan installment)."""
    columns = ["account_id", "kind", "detail"]
    if not len(promises):
        return pd.DataFrame(columns=columns)
    frame = promises[promises["account_id"].isin(zone_of_account.index)]
    due: Any = local_dates(frame["due_at"], lookup(frame["account_id"], zone_of_account))
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
                "account_id": str(record["account_id"]),
                "kind": "promise_reminder",
                "detail": f"{record['amount']:,.2f} due {record['due_day']}",
            }
        )
    for record in broken.to_dict("records"):
        plan = record["offer_id"] in plan_offers
        rows.append(
            {
                "account_id": str(record["account_id"]),
                "kind": "plan_check" if plan else "broken_promise",
                "detail": f"{record['amount']:,.2f} was due {record['due_day']}",
            }
        )
    return pd.DataFrame(rows, columns=columns)
