"""Labels and logged actions, computed from the contract tables (pure functions).

- Propensity: for an account at an as-of time t, whether any payment arrives in
  [t, t + horizon) and how much (`paid_30d`, `amount_30d` for a 30-day horizon).
- Contactability and next best action: every outbound contact the logging policy chose, with
  its action (channel, local hour and hour band, weekday, offer kind and terms), whether it
  reached the debtor, the amount paid in the horizon after it and the net of the contact's cost.

Only accounts that owe and are not closed are propensity rows (`open_owing_rows`), and only
rows whose whole label window lies inside the data are labelled (`labelable`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from data_contracts.ids import id_codes
from data_contracts.vocabulary import NOT_REACHED_OUTCOMES, RESPONSE_OUTCOMES
from features.history import HOUR_BANDS, local_time

OFFER_NONE = "none"
ACTION_COLUMNS: tuple[str, ...] = (
    "channel",
    "hour_band",
    "weekday",
    "offer",
    "discount_pct",
    "installments",
)
"""What an action is, as the next-best-action model sees it."""
CONTACT_CONTEXT: tuple[str, ...] = ("channel", "hour_band", "weekday")
"""What decides whether a contact reaches the debtor (the offer does not)."""


def label_names(horizon_days: int) -> tuple[str, str]:
    return f"paid_{horizon_days}d", f"amount_{horizon_days}d"


def hour_band(hours: np.ndarray | pd.Series) -> np.ndarray:
    """The local hour band name of each hour (None outside contact hours)."""
    hours = np.asarray(hours)
    result = np.full(len(hours), None, dtype=object)
    for name, (start, end) in HOUR_BANDS.items():
        result[(hours >= start) & (hours < end)] = name
    return result


def amount_paid_between(
    account_ids: np.ndarray | pd.Series,
    starts: pd.Series,
    ends: pd.Series,
    payments: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray]:
    """Count and sum of each account's payments with `start <= paid_at < end`, row by row.

    Payments are sorted once by account and time; each row's window is found by binary search
    on a combined (account, second) key, and sums come from a cumulative sum, so the cost is
    O((rows + payments) log payments) whatever the number of rows per account.
    """
    if not len(payments) or not len(account_ids):
        return np.zeros(len(account_ids), np.int64), np.zeros(len(account_ids))
    accounts = pd.Index(np.unique(payments["account_id"].to_numpy()))
    pay_code = accounts.get_indexer(payments["account_id"].to_numpy())
    origin = min(payments["paid_at"].min(), starts.min())
    span_seconds = int((max(payments["paid_at"].max(), ends.max()) - origin).total_seconds()) + 2

    def key(codes: np.ndarray, times: pd.Series) -> np.ndarray:
        seconds = ((times - origin).dt.total_seconds()).to_numpy()
        # whole seconds, rounded up: a payment in the same second as the window start counts
        return codes.astype(np.int64) * span_seconds + np.ceil(seconds).astype(np.int64)

    pay_key = key(pay_code, payments["paid_at"])
    order = np.argsort(pay_key, kind="stable")
    pay_key = pay_key[order]
    cumulative = np.concatenate([[0.0], np.cumsum(payments["amount"].to_numpy(float)[order])])
    row_code = id_codes(pd.Series(account_ids), accounts)  # categorical: each id hashed once
    known = row_code >= 0
    low = np.searchsorted(pay_key, key(np.where(known, row_code, 0), starts), side="left")
    high = np.searchsorted(pay_key, key(np.where(known, row_code, 0), ends), side="left")
    count = np.where(known, high - low, 0)
    total = np.where(known, cumulative[high] - cumulative[low], 0.0)
    return count, np.round(total, 2)


ELIGIBILITY_COLUMNS: tuple[str, ...] = ("current_balance", "account_closed")
"""Snapshot columns that decide whether an account is a propensity row at an as-of time."""


def open_owing_rows(snapshot: pd.DataFrame) -> pd.Series:
    """Which snapshot rows are propensity rows: the account still owes and is not closed.

    A closed account (settled, paid in full, recalled, sold, sent to legal or elsewhere,
    bankrupt, deceased) is out of our hands: it is never scored nor worked, so it is no
    training row either. Labelling it "did not pay" would teach the model that whatever led
    to the closure (an accepted discount, say) means a debtor never pays again. Snapshots
    built before account events existed have no `account_closed` column: all open.
    """
    owing = snapshot["current_balance"].to_numpy(dtype=float) > 0
    if "account_closed" not in snapshot:
        return pd.Series(owing, index=snapshot.index)
    closed = snapshot["account_closed"].fillna(0).to_numpy(dtype=float) > 0
    return pd.Series(owing & ~closed, index=snapshot.index)


def payment_labels(
    rows: pd.DataFrame, payments: pd.DataFrame, horizon_days: int, data_end: pd.Timestamp
) -> pd.DataFrame:
    """`rows` (`account_id`, `event_timestamp`) with `paid_{h}d`, `amount_{h}d`, `labelable`.

    A row is labelable when its window [t, t + h) ends by the end of the data.
    """
    horizon = pd.Timedelta(days=horizon_days)
    starts = rows["event_timestamp"]
    ends = starts + horizon
    count, total = amount_paid_between(rows["account_id"], starts, ends, payments)
    paid, amount = label_names(horizon_days)
    return rows.assign(
        **{paid: (count > 0).astype(np.int8), amount: total, "labelable": (ends <= data_end)}
    )


def reached_debtor(outcomes: pd.Series | np.ndarray) -> np.ndarray:
    """Which contact outcomes are a right-party contact: the debtor engaged."""
    return np.isin(np.asarray(outcomes).astype(str), list(RESPONSE_OUTCOMES))


def logged_actions(
    tables: Mapping[str, pd.DataFrame],
    horizon_days: int,
    contact_cost: Mapping[str, float],
    data_end: pd.Timestamp,
) -> pd.DataFrame:
    """Every outbound contact chosen by the logging policy, as an action with its outcome.

    Columns: `contact_id`, `account_id`, `debtor_id`, `event_timestamp` (the attempt, UTC),
    `channel`, `local_hour`, `hour_band`, `weekday` (0 = Monday, local), `offer` (`none`,
    `discount`, `payment_plan`: what was presented), `discount_pct`, `installments`,
    `offer_matters` (the offer could reach the debtor: a call answered, a message delivered),
    `reached` (right-party contact: the debtor engaged), `action_probability`,
    `amount_{h}d` (paid in [attempt, attempt + h)), `cost`, `net_{h}d`, `labelable`.
    """
    contacts = tables["contacts"]
    outbound = contacts[
        (contacts["direction"].astype(str) == "outbound") & contacts["action_probability"].notna()
    ]
    outbound = outbound.reset_index(drop=True)
    accounts, debtors, offers = tables["accounts"], tables["debtors"], tables["offers"]
    local = local_time(outbound["attempted_at"], outbound["account_id"], accounts, debtors)
    offer_of = offers.set_index("offer_id")
    offer_rows = id_codes(outbound["offer_id"], offer_of.index)
    presented = offer_rows >= 0
    kind = np.full(len(outbound), OFFER_NONE, dtype=object)
    discount = np.full(len(outbound), np.nan)
    installments = np.full(len(outbound), np.nan)
    if presented.any():
        chosen = offer_of.iloc[offer_rows[presented]]
        kind[presented] = chosen["kind"].astype(str).to_numpy()
        discount[presented] = chosen["discount_pct"].to_numpy(float)
        installments[presented] = chosen["installments"].to_numpy(dtype=float, na_value=np.nan)
    channel = outbound["channel"].astype(str).to_numpy()
    outcome = outbound["outcome"].astype(str).to_numpy()
    offer_matters = ~np.isin(outcome, list(NOT_REACHED_OUTCOMES))
    horizon = pd.Timedelta(days=horizon_days)
    _, amount = amount_paid_between(
        outbound["account_id"].to_numpy(),
        outbound["attempted_at"],
        outbound["attempted_at"] + horizon,
        tables["payments"],
    )
    cost = pd.Series(channel).map(dict(contact_cost)).fillna(0.0).to_numpy(float)
    debtor_of = accounts.set_index("account_id")["debtor_id"]
    return pd.DataFrame(
        {
            "contact_id": outbound["contact_id"].to_numpy(),
            "account_id": outbound["account_id"].to_numpy(),
            "debtor_id": outbound["account_id"].map(debtor_of).to_numpy(),
            "event_timestamp": outbound["attempted_at"].to_numpy(),
            "channel": channel,
            "local_hour": local.dt.hour.to_numpy(),
            "hour_band": hour_band(local.dt.hour.to_numpy()),
            "weekday": local.dt.weekday.to_numpy(),
            "offer": kind,
            "discount_pct": discount,
            "installments": installments,
            "offer_matters": offer_matters,
            "reached": reached_debtor(outcome),
            "action_probability": outbound["action_probability"].to_numpy(float),
            f"amount_{horizon_days}d": amount,
            "cost": cost,
            f"net_{horizon_days}d": amount - cost,
            "labelable": (outbound["attempted_at"] + horizon <= data_end).to_numpy(),
        }
    ).assign(event_timestamp=lambda frame: frame["event_timestamp"].dt.tz_convert("UTC"))
