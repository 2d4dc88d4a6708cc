"""What happened to each account as a whole, as of a moment (pure functions on DataFrames).

An account is closed by its latest closing event (settled, paid in full, recalled, sold, legal,
placed elsewhere, bankrupt, deceased) unless a `reopened` event came after it. Like every
feature, the status as of t reads only events strictly before t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.ids import id_codes
from data_contracts.vocabulary import CLOSING_EVENT_KINDS, REOPENING_EVENT_KINDS

NO_EVENT = "none"
"""The kind reported for an account without any event (string features are never empty)."""


def account_status(
    events: pd.DataFrame | None, account_ids: pd.Series | np.ndarray, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Each account's standing as of `as_of`, from its events strictly before then.

    Args:
        events: The `account_events` table (None or empty: no events).
        account_ids: The accounts to report, in the order wanted (ids are opaque values).
        as_of: UTC timestamp.

    Returns:
        One row per id, in order: `amount_forgiven` (forgiven by settlements since the
        latest reopening),
        `events_total`, `last_event_kind` (`none` without events), `last_event_at`, `closed`
        (bool), `closed_kind` (the closing event's kind, `none` when open) and `closed_at`.
    """
    ids = pd.Index(np.asarray(account_ids))
    row, micros_at, kind, forgiven_amount = _events_before(events, account_ids, as_of)
    count = len(ids)
    index = np.arange(len(row))
    last = np.full(count, -1, np.int64)
    np.maximum.at(last, row, index)  # events are in time order: the latest has the highest index
    reopened = np.isin(kind, list(REOPENING_EVENT_KINDS))
    last_reopened = np.full(count, -1, np.int64)
    np.maximum.at(last_reopened, row[reopened], index[reopened])
    current = index > last_reopened[row]  # settlements before a reopening no longer count
    has_event = last >= 0
    last_kind = np.full(count, NO_EVENT, dtype=object)
    last_kind[has_event] = kind[last[has_event]]
    last_at = np.full(count, NAT, dtype="datetime64[us]")
    last_at[has_event] = micros_at[last[has_event]].astype("datetime64[us]")
    closed = np.isin(last_kind, list(CLOSING_EVENT_KINDS))
    return pd.DataFrame(
        {
            "account_id": ids,
            "amount_forgiven": np.bincount(
                row[current], weights=forgiven_amount[current], minlength=count
            ).astype(np.float64),
            "events_total": np.bincount(row, minlength=count).astype(np.int64),
            "last_event_kind": last_kind,
            "last_event_at": _utc(last_at),
            "closed": closed,
            "closed_kind": np.where(closed, last_kind, NO_EVENT).astype(object),
            "closed_at": _utc(np.where(closed, last_at, NAT)),
        }
    )


NAT = np.datetime64("NaT", "us")


def _events_before(
    events: pd.DataFrame | None, account_ids: pd.Series | np.ndarray, as_of: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The events of `account_ids` strictly before `as_of`, in time order (ties: table order):
    each one's position in `account_ids`, time (UTC microseconds), kind (text) and amount
    forgiven (0 where none)."""
    if events is None or not len(events):
        empty = np.array([], np.int64)
        return empty, empty, np.array([], object), np.array([], np.float64)
    keys = pd.Series(account_ids) if not isinstance(account_ids, pd.Series) else account_ids
    row = id_codes(events["account_id"], pd.Index(keys.array))
    occurred = events["occurred_at"].to_numpy("datetime64[us]").astype(np.int64)
    keep = np.flatnonzero((events["occurred_at"] < as_of).to_numpy(bool) & (row >= 0))
    order = keep[np.argsort(occurred[keep], kind="stable")]
    kind = events["kind"].astype(str).to_numpy(object)[order]
    forgiven = np.nan_to_num(events["amount_forgiven"].to_numpy(np.float64, na_value=np.nan))
    return row[order], occurred[order], kind, forgiven[order]


def _utc(values: np.ndarray) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(values).tz_localize("UTC"))


def closed_reason(kind: str, closed_at: pd.Timestamp) -> str:
    """Why a closed account is neither scored nor worked: `closed: settled 2026-01-04`."""
    return f"closed: {kind} {pd.Timestamp(closed_at).date().isoformat()}"


def closed_reasons(status: pd.DataFrame) -> pd.Series:
    """Account id -> its exclusion reason, for the closed accounts of `account_status`."""
    closed = status[status["closed"]]
    reasons = [
        closed_reason(kind, at)
        for kind, at in zip(closed["closed_kind"], closed["closed_at"], strict=True)
    ]
    return pd.Series(reasons, index=closed["account_id"].to_numpy(), dtype=object)
