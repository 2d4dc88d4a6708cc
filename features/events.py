"""What happened to each account as a whole, as of a moment (pure functions on DataFrames).

An account is closed by its latest closing event (settled, paid in full, recalled, sold, legal,
placed elsewhere, bankrupt, deceased) unless a `reopened` event came after it. Like every
feature, the status as of t reads only events strictly before t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    known = _events_before(events, ids, as_of)
    latest = known.drop_duplicates("account_id", keep="last").set_index("account_id")
    forgiven = _forgiven_since_reopened(known)
    total = known.groupby("account_id", sort=False, observed=True).size()
    last_kind = latest["kind"].reindex(ids)
    closed = last_kind.isin(list(CLOSING_EVENT_KINDS)).to_numpy(bool)
    last_at = latest["occurred_at"].reindex(ids)
    return pd.DataFrame(
        {
            "account_id": ids,
            "amount_forgiven": forgiven.reindex(ids).fillna(0.0).to_numpy(np.float64),
            "events_total": total.reindex(ids).fillna(0).to_numpy(np.int64),
            "last_event_kind": last_kind.fillna(NO_EVENT).to_numpy(object),
            "last_event_at": last_at.to_numpy(),
            "closed": closed,
            "closed_kind": np.where(closed, last_kind.fillna(NO_EVENT).to_numpy(object), NO_EVENT),
            "closed_at": last_at.where(closed).to_numpy(),
        }
    ).assign(
        last_event_at=lambda frame: _utc(frame["last_event_at"]),
        closed_at=lambda frame: _utc(frame["closed_at"]),
    )


def _events_before(events: pd.DataFrame | None, ids: pd.Index, as_of: pd.Timestamp) -> pd.DataFrame:
    """The events of `ids` strictly before `as_of`, in time order (ties: table order), with
    `kind` as plain text."""
    columns = ["account_id", "occurred_at", "kind", "amount_forgiven"]
    if events is None or not len(events):
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns}).astype(
            {"occurred_at": "datetime64[us, UTC]", "amount_forgiven": np.float64}
        )
    frame = events[columns]
    frame = frame.assign(account_id=frame["account_id"].astype(object))  # ids as plain text
    frame = frame[(frame["occurred_at"] < as_of).to_numpy(bool) & frame["account_id"].isin(ids)]
    return frame.assign(kind=frame["kind"].astype(str)).sort_values("occurred_at", kind="stable")


def _forgiven_since_reopened(known: pd.DataFrame) -> pd.Series:
    """Account id -> amounts forgiven by settlements after its latest reopening: a reopened
    settlement (its payment returned, say) owes its whole balance again."""
    place = pd.Series(np.arange(len(known)), index=known.index)
    reopened = known["kind"].isin(list(REOPENING_EVENT_KINDS)).to_numpy(bool)
    last_reopened = place[reopened].groupby(known["account_id"][reopened], observed=True).max()
    since = known["account_id"].map(last_reopened).fillna(-1).to_numpy()
    current = known[place.to_numpy() > since]
    return current.groupby("account_id", sort=False, observed=True)["amount_forgiven"].sum()


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


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
