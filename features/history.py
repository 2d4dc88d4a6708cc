"""What was known at a moment: the portfolio cut at an as-of time, and event helpers.

Every feature is computed "as of" a timestamp t from events strictly before t. Facts that only
become known later are hidden: an offer accepted after t counts as not accepted, a promise whose
grace period ends after t counts as still open, the balance at the end of the data is never used.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from data_contracts.ids import id_positions
from data_contracts.promises import GRACE_PERIOD

DAY = pd.Timedelta(days=1)
HOUR_BANDS: dict[str, tuple[int, int]] = {
    "morning": (8, 12),
    "afternoon": (12, 17),
    "evening": (17, 21),
}
"""Local hour bands [start, end) used for reachability features (contact hours are 8-21)."""


def promise_resolved_at(promises: pd.DataFrame) -> pd.Series:
    """When a promise's outcome becomes known: the end of its grace period."""
    return promises["due_at"] + GRACE_PERIOD


def truncate_portfolio(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """The portfolio exactly as it could have been exported at `as_of` (pure).

    Accounts placed at or after `as_of` and every event at or after it are removed; offers
    accepted later look unaccepted, promises not yet resolved have no `kept`, and the current
    balance (an end-of-data fact) is replaced by the placed balance.
    """
    accounts = tables["accounts"]
    accounts = accounts[accounts["placed_at"] < as_of].assign(
        current_balance=lambda frame: frame["original_balance"]
    )
    known = accounts["account_id"]
    debtors = tables["debtors"]
    debtors = debtors[debtors["debtor_id"].isin(accounts["debtor_id"])]

    def before(name: str, column: str) -> pd.DataFrame:
        frame = tables[name]
        return frame[(frame[column] < as_of) & frame["account_id"].isin(known)]

    offers = before("offers", "offered_at")
    offers = offers.assign(accepted_at=offers["accepted_at"].where(offers["accepted_at"] < as_of))
    promises = before("promises", "made_at")
    resolved = promise_resolved_at(promises) <= as_of
    promises = promises.assign(kept=promises["kept"].where(resolved))
    truncated = {
        "debtors": debtors,
        "accounts": accounts,
        "payments": before("payments", "paid_at"),
        "contacts": before("contacts", "attempted_at"),
        "offers": offers,
        "promises": promises,
    }
    if "statements" in tables:
        truncated["statements"] = before("statements", "statement_at")
    if "account_events" in tables:
        truncated["account_events"] = before("account_events", "occurred_at")
    return {name: frame.reset_index(drop=True) for name, frame in truncated.items()}


def account_positions(accounts: pd.DataFrame, account_ids: pd.Series) -> np.ndarray:
    """Row position in `accounts` of each id (-1 if the account is not there)."""
    positions = id_positions(account_ids, accounts["account_id"])
    return positions.astype(np.int32, copy=False) if len(accounts) < 2**31 else positions


def local_time(
    timestamps: pd.Series, account_ids: pd.Series, accounts: pd.DataFrame, debtors: pd.DataFrame
) -> pd.Series:
    """Naive local wall-clock time of UTC `timestamps`, in each account's debtor's time zone."""
    debtor_of = accounts.set_index("account_id")["debtor_id"]
    zone_of = debtors.set_index("debtor_id")["timezone"].astype(str)
    zones = account_ids.map(debtor_of).map(zone_of)
    local = pd.Series(pd.NaT, index=timestamps.index, dtype="datetime64[us]")
    for zone, rows in zones.groupby(zones, observed=True).groups.items():
        local.loc[rows] = timestamps.loc[rows].dt.tz_convert(str(zone)).dt.tz_localize(None)
    return local


def days_between(later: pd.Timestamp, earlier: pd.Series | np.ndarray) -> np.ndarray:
    """Days (fractional) from each `earlier` to `later`; NaN where `earlier` is missing."""
    earlier = pd.Series(earlier)
    return ((later - earlier) / DAY).to_numpy(dtype=float, na_value=np.nan)
