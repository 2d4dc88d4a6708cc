"""Point-in-time feature snapshots of accounts and debtors (pure functions on DataFrames).

`account_features(tables, as_of)` returns one row per account placed before `as_of`, with every
account feature of `features.catalog` computed from events strictly before `as_of`;
`debtor_features` does the same per debtor. Both work on any partition of accounts that carries
all of its accounts' events (and, for debtors, all of a debtor's accounts), so they can run per
partition on Dask unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import pandas as pd

from data_contracts.ids import id_positions
from data_contracts.promises import GRACE_PERIOD
from data_contracts.schemas import STATEMENT_STATUSES
from data_contracts.vocabulary import CHANNELS as CONTACT_CHANNELS
from data_contracts.vocabulary import (
    CONVERSATION_OUTCOMES,
    NOT_REACHED_OUTCOMES,
    OPT_OUT_CHANNELS,
    OUTCOMES,
    RESPONSE_OUTCOMES,
    TELEPHONE_CONVERSATIONS,
)
from features.catalog import (
    ACCOUNT_FEATURES,
    CONTACT_WINDOWS,
    DEBTOR_FEATURES,
    FIRST_CYCLE_DAYS,
    PAYMENT_WINDOWS,
    PROMISE_WINDOWS,
    STATEMENT_HISTORY_FEATURES,
    STATEMENT_LAGS,
    STATEMENT_WINDOW,
)
from features.events import account_status
from features.history import DAY, HOUR_BANDS, account_positions

ENTITY_TIMESTAMP = "event_timestamp"
FEATURE_INPUTS: dict[str, tuple[str, ...]] = {
    "debtors": ("debtor_id", "timezone"),
    "accounts": (
        "account_id",
        "debtor_id",
        "product",
        "creditor",
        "original_balance",
        "opened_at",
        "delinquent_since",
        "placed_at",
    ),
    "payments": ("account_id", "paid_at", "amount"),
    "promises": ("account_id", "made_at", "due_at", "amount", "kept"),
    "contacts": ("account_id", "channel", "direction", "attempted_at", "outcome"),
    "offers": ("account_id", "kind", "discount_pct", "offered_at", "accepted_at"),
    "account_events": ("account_id", "occurred_at", "kind", "amount_forgiven"),
    "statements": (
        "account_id",
        "statement_at",
        "balance",
        "credit_limit",
        "status",
        "days_past_due",
    ),
}
"""The columns the features read; `feature_inputs` keeps only these (less memory)."""
GRACE_MICROS = GRACE_PERIOD.value // 1000


def _plain(values: pd.Series) -> np.ndarray:
    """A column as a plain numpy array: timestamps as UTC microseconds (NaT as NAT_MICROS),
    nullable numbers and booleans as float with NaN."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return micros(values)
    if isinstance(values.dtype, pd.api.extensions.ExtensionDtype) and not isinstance(
        values.dtype, pd.CategoricalDtype
    ):
        return values.to_numpy(dtype="float64", na_value=np.nan)
    return values.to_numpy()


NAT_MICROS = np.iinfo(np.int64).min


def micros(stamps: pd.Series) -> np.ndarray:
    """UTC microseconds since the epoch of a tz-aware timestamp column (NaT -> min int64)."""
    return stamps.dt.as_unit("us").array.asi8


class _Accounts:
    """Per-account aggregation of events (bincount over account positions)."""

    def __init__(self, accounts: pd.DataFrame, as_of: pd.Timestamp) -> None:
        self.accounts = accounts
        self.n = len(accounts)
        self.as_of = as_of
        self.as_of_us = pd.Timestamp(as_of).value // 1000  # .value is in nanoseconds

    def events(
        self, frame: pd.DataFrame, time_column: str, columns: dict[str, tuple[str, ...] | None]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """Events of known accounts strictly before as_of, as numpy arrays.

        Args:
            frame: An event table.
            time_column: Its timestamp column.
            columns: Column -> allowed values (returned as codes into them, -1 otherwise), or
                None for the raw values. Only these columns are copied.

        Returns:
            The requested columns (plus `time_column` as UTC microseconds), the account
            position of each event and its age in days at as_of.
        """
        times = micros(frame[time_column])
        positions = account_positions(self.accounts, frame["account_id"])
        keep = (times < self.as_of_us) & (positions >= 0)
        selected = {time_column: times[keep]}
        for name, categories in columns.items():
            values = frame[name]
            if categories is None:
                selected[name] = _plain(values)[keep]
            else:
                selected[name] = pd.Categorical(values, categories=list(categories)).codes[keep]
        age_days = (self.as_of_us - selected[time_column]) / 86_400e6
        return selected, positions[keep], age_days

    def count(self, positions: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        chosen = positions if mask is None else positions[mask]
        return np.bincount(chosen, minlength=self.n).astype(np.int64)

    def total(
        self, positions: np.ndarray, values: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        if mask is not None:
            positions, values = positions[mask], values[mask]
        # bincount of no events returns integers; amounts are always float
        return np.bincount(positions, weights=values, minlength=self.n).astype(np.float64)

    def smallest(
        self, positions: np.ndarray, values: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-account minimum of `values` (NaN where the account has none)."""
        if mask is not None:
            positions, values = positions[mask], values[mask]
        result = np.full(self.n, np.inf)
        np.minimum.at(result, positions, values)
        return np.where(np.isinf(result), np.nan, result)

    def largest(
        self, positions: np.ndarray, values: np.ndarray, mask: np.ndarray | None = None
    ) -> np.ndarray:
        if mask is not None:
            positions, values = positions[mask], values[mask]
        result = np.full(self.n, -np.inf)
        np.maximum.at(result, positions, values)
        return np.where(np.isinf(result), np.nan, result)


def _as_kind(values: object, kind: str) -> object:
    """Every snapshot has the catalog's dtypes, whatever the data (Feast reads them as one)."""
    if kind == "int":
        return np.asarray(values).astype(np.int64)
    if kind == "float":
        return np.asarray(values).astype(np.float64)
    return values


def _rate(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


def _state_features(
    agg: _Accounts, paid_since_placement: np.ndarray, forgiven: np.ndarray
) -> dict[str, np.ndarray]:
    accounts = agg.accounts
    original = accounts["original_balance"].to_numpy(dtype=float)

    def days_since(column: str) -> np.ndarray:
        return ((agg.as_of - accounts[column]) / DAY).to_numpy(dtype=float, na_value=np.nan)

    return {
        "product": accounts["product"].astype(str).to_numpy(),
        "creditor": accounts["creditor"].astype(str).to_numpy(),
        "original_balance": original,
        "current_balance": np.maximum(original - paid_since_placement - forgiven, 0.0),
        "paid_share_of_placed_balance": _rate(paid_since_placement, original),
        "days_past_due": np.nan_to_num(days_since("delinquent_since"), nan=0.0),
        "days_since_placement": days_since("placed_at"),
        "days_since_opened": days_since("opened_at"),
    }


def _account_event_features(agg: _Accounts, events: pd.DataFrame | None) -> dict[str, np.ndarray]:
    """The account's events before as_of: forgiven amounts, the latest event, closure."""
    status = account_status(events, agg.accounts["account_id"], agg.as_of)
    last_at = micros(status["last_event_at"])
    return {
        "amount_forgiven_total": status["amount_forgiven"].to_numpy(np.float64),
        "last_account_event_kind": status["last_event_kind"].to_numpy(object),
        "days_since_last_account_event": np.where(
            last_at == NAT_MICROS, np.nan, (agg.as_of_us - last_at) / 86_400e6
        ),
        "account_closed": status["closed"].to_numpy(np.int64),
        "closed_kind": status["closed_kind"].to_numpy(object),
        "closed_at": status["closed_at"].array,
    }


def _payment_features(
    agg: _Accounts, payments: pd.DataFrame
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rows, pos, age = agg.events(payments, "paid_at", {"amount": None})
    amount = rows["amount"].astype(np.float64)
    out: dict[str, np.ndarray] = {}
    for window in PAYMENT_WINDOWS:
        inside = age <= window
        out[f"payments_count_{window}d"] = agg.count(pos, inside)
        out[f"payments_sum_{window}d"] = agg.total(pos, amount, inside)
    out["days_since_last_payment"] = agg.smallest(pos, age)
    placed = micros(agg.accounts["placed_at"])[pos]
    after_placement = rows["paid_at"] >= placed
    out["payments_count_before_placement"] = agg.count(pos, ~after_placement)
    recent = agg.total(pos, amount, age <= 30)
    earlier = agg.total(pos, amount, (age > 30) & (age <= 90))
    out["payments_sum_trend_90d"] = recent - earlier / 2.0
    return out, agg.total(pos, amount, after_placement)


def _promise_features(agg: _Accounts, promises: pd.DataFrame) -> dict[str, np.ndarray]:
    rows, pos, made_age = agg.events(
        promises, "made_at", {"amount": None, "due_at": None, "kept": None}
    )
    resolved_at = rows["due_at"] + GRACE_MICROS
    kept_flag = rows["kept"]
    resolved = resolved_at <= agg.as_of_us
    resolved_age = (agg.as_of_us - resolved_at) / 86_400e6
    kept = resolved & (kept_flag == 1.0)
    broken = resolved & (kept_flag == 0.0)
    out: dict[str, np.ndarray] = {}
    for window in PROMISE_WINDOWS:
        out[f"promises_made_{window}d"] = agg.count(pos, made_age <= window)
        in_window = resolved & (resolved_age <= window)
        out[f"promises_kept_{window}d"] = agg.count(pos, kept & in_window)
        out[f"promises_broken_{window}d"] = agg.count(pos, broken & in_window)
    out["promises_kept_rate_365d"] = _rate(
        out["promises_kept_365d"], out["promises_kept_365d"] + out["promises_broken_365d"]
    )
    out["days_since_last_broken_promise"] = agg.smallest(pos, resolved_age, broken)
    out["open_promise_amount"] = agg.total(pos, rows["amount"].astype(np.float64), ~resolved)
    return out


_RESPONDED = np.isin(np.array(OUTCOMES), list(RESPONSE_OUTCOMES))
_GOT_THROUGH = ~np.isin(np.array(OUTCOMES), list(NOT_REACHED_OUTCOMES))
_CONVERSATION = np.isin(np.array(OUTCOMES), list(CONVERSATION_OUTCOMES))
_TELEPHONE = np.isin(np.array(OUTCOMES), list(TELEPHONE_CONVERSATIONS))


def _lookup(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """table[code], False for unknown codes (-1)."""
    return np.where(codes >= 0, table[np.maximum(codes, 0)], False)


def _local_hour_and_weekday(
    agg: _Accounts, positions: np.ndarray, times: np.ndarray, debtors: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Local hour and weekday (Monday 0) of UTC microsecond `times`, per debtor time zone."""
    debtor_rows = id_positions(agg.accounts["debtor_id"], debtors["debtor_id"])
    debtor_zone, zone_names = pd.factorize(debtors["timezone"].astype(str))
    zone_codes = np.full(len(debtor_rows), -1, dtype=np.intp)  # -1: no such debtor
    known = debtor_rows >= 0
    zone_codes[known] = debtor_zone[debtor_rows[known]]
    event_zone = zone_codes[positions]
    hour = np.zeros(len(times), np.int64)
    weekday = np.zeros(len(times), np.int64)
    for code, name in enumerate(zone_names):
        rows = event_zone == code
        local = pd.DatetimeIndex(times[rows].astype("datetime64[us]")).tz_localize("UTC")
        local = local.tz_convert(str(name))
        hour[rows] = local.hour
        weekday[rows] = local.dayofweek
    return hour, weekday


def _contact_features(
    agg: _Accounts, contacts: pd.DataFrame, debtors: pd.DataFrame
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rows, pos, age = agg.events(
        contacts,
        "attempted_at",
        {"channel": CONTACT_CHANNELS, "outcome": OUTCOMES, "direction": ("outbound", "inbound")},
    )
    channel, outcome = rows["channel"], rows["outcome"]
    outbound = rows["direction"] == 0
    responded = _lookup(_RESPONDED, outcome)
    got_through = _lookup(_GOT_THROUGH, outcome)
    out: dict[str, np.ndarray] = {}
    for code, name in enumerate(CONTACT_CHANNELS):
        attempt = outbound & (channel == code)
        for window in CONTACT_WINDOWS:
            inside = attempt & (age <= window)
            out[f"{name}_attempts_{window}d"] = agg.count(pos, inside)
            out[f"{name}_responses_{window}d"] = agg.count(pos, inside & responded)
        recent = attempt & (age <= 90)
        attempts = agg.count(pos, recent)
        out[f"{name}_contact_rate_90d"] = _rate(agg.count(pos, recent & got_through), attempts)
        out[f"{name}_response_rate_90d"] = _rate(agg.count(pos, recent & responded), attempts)

    # reachability by local hour band and day type (calls of the last 365 days)
    call = CONTACT_CHANNELS.index("call")
    calls = outbound & (channel == call) & (age <= 365)
    call_pos, call_responded = pos[calls], responded[calls]
    hour, weekday = _local_hour_and_weekday(agg, call_pos, rows["attempted_at"][calls], debtors)
    weekend = weekday >= 5
    counts: dict[str, np.ndarray] = {}  # raw counts, for debtor-level rates
    for band, (start, end) in HOUR_BANDS.items():
        in_band = (hour >= start) & (hour < end)
        counts[f"{band}_attempts"] = agg.count(call_pos, in_band)
        counts[f"{band}_responses"] = agg.count(call_pos, in_band & call_responded)
        out[f"call_attempts_{band}_365d"] = counts[f"{band}_attempts"]
        out[f"call_response_rate_{band}_365d"] = _rate(
            counts[f"{band}_responses"], counts[f"{band}_attempts"]
        )
    for day_type, chosen in (("weekday", ~weekend), ("weekend", weekend)):
        counts[f"{day_type}_attempts"] = agg.count(call_pos, chosen)
        counts[f"{day_type}_responses"] = agg.count(call_pos, chosen & call_responded)
        out[f"call_attempts_{day_type}_365d"] = counts[f"{day_type}_attempts"]
        out[f"call_response_rate_{day_type}_365d"] = _rate(
            counts[f"{day_type}_responses"], counts[f"{day_type}_attempts"]
        )
    for name in ("sms", "email"):
        counts[f"{name}_attempts_90d"] = out[f"{name}_attempts_90d"]
        counts[f"{name}_responses_90d"] = out[f"{name}_responses_90d"]

    conversation = _lookup(_CONVERSATION, outcome)
    out["inbound_contacts_90d"] = agg.count(pos, ~outbound & (age <= 90))
    out["days_since_last_attempt"] = agg.smallest(pos, age, outbound)
    out["days_since_last_conversation"] = agg.smallest(pos, age, conversation)
    dispute = outcome == OUTCOMES.index("dispute")
    out["disputes_total"] = agg.count(pos, dispute)
    out["days_since_last_dispute"] = agg.smallest(pos, age, dispute)
    opted_out = outcome == OUTCOMES.index("opted_out")
    for name in OPT_OUT_CHANNELS:
        chosen = opted_out & (channel == CONTACT_CHANNELS.index(name))
        out[f"opted_out_{name}"] = (agg.count(pos, chosen) > 0).astype(np.int64)
    out["call_attempts_7d_compliance"] = out["call_attempts_7d"].copy()
    telephone = (channel == call) & _lookup(_TELEPHONE, outcome)
    last = agg.largest(pos, rows["attempted_at"].astype(np.float64), telephone)  # exact < 2**53
    last_at = pd.Series(np.nan_to_num(last, nan=0).astype(np.int64).astype("datetime64[us]"))
    out["last_telephone_conversation_at"] = (
        last_at.dt.tz_localize("UTC").where(~np.isnan(last)).array
    )
    counts["days_since_last_conversation"] = out["days_since_last_conversation"]
    return out, counts


def _offer_features(agg: _Accounts, offers: pd.DataFrame) -> dict[str, np.ndarray]:
    rows, pos, age = agg.events(
        offers,
        "offered_at",
        {"kind": ("discount", "payment_plan"), "discount_pct": None, "accepted_at": None},
    )
    kind = rows["kind"]
    accepted_at = rows["accepted_at"]
    accepted = (accepted_at != NAT_MICROS) & (accepted_at < agg.as_of_us)
    discount = np.nan_to_num(rows["discount_pct"].astype(np.float64))
    return {
        "offers_made_total": agg.count(pos),
        "discount_offers_made_total": agg.count(pos, kind == 0),
        "plan_offers_made_total": agg.count(pos, kind == 1),
        "offers_accepted_total": agg.count(pos, accepted),
        "best_accepted_discount_pct": agg.largest(pos, discount, accepted & (kind == 0)),
        "days_since_last_offer": agg.smallest(pos, age),
    }


_Events = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]
"""What `_Accounts.events` returns: the columns, account positions and ages in days."""
_STATEMENT_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "balance": None,
    "credit_limit": None,
    "days_past_due": None,
    "status": STATEMENT_STATUSES,
}
"""The statement columns both statement feature families read."""


def _statement_events(agg: _Accounts, statements: pd.DataFrame | None) -> _Events | None:
    """The statements of known accounts before as_of, read once for both statement feature
    families; None when the portfolio has no statements (most portfolios)."""
    if statements is None or not len(statements):
        return None
    return agg.events(statements, "statement_at", _STATEMENT_COLUMNS)


def _statement_features(agg: _Accounts, statements: _Events | None) -> dict[str, np.ndarray]:
    """The latest statement and the statements of the last STATEMENT_WINDOW days."""
    window = STATEMENT_WINDOW
    names = (
        "statement_balance_last",
        "credit_limit_last",
        "utilization_last",
        "statement_days_past_due_last",
        f"statement_days_past_due_max_{window}d",
        f"statements_delinquent_{window}d",
        f"statements_paid_in_full_{window}d",
        f"statements_no_use_{window}d",
        f"statement_balance_mean_{window}d",
        f"statement_balance_trend_{window}d",
    )
    if statements is None:
        out = {name: np.full(agg.n, np.nan) for name in names}
        for name in names[5:8]:
            out[name] = np.zeros(agg.n, np.int64)
        return out
    rows, pos, age = statements
    order = np.lexsort((age, pos))  # per account, newest (smallest age) first
    pos, age = pos[order], age[order]
    first = np.r_[True, pos[1:] != pos[:-1]][: len(pos)]  # first row of each account
    balance = rows["balance"][order].astype(np.float64)
    limit = rows["credit_limit"][order].astype(np.float64)
    dpd = rows["days_past_due"][order].astype(np.float64)
    status = rows["status"][order]

    def latest(values: np.ndarray) -> np.ndarray:
        result = np.full(agg.n, np.nan)
        result[pos[first]] = values[first]
        return result

    inside = age <= window
    count = agg.count(pos, inside)
    oldest = np.full(agg.n, np.nan)
    within = np.flatnonzero(inside)
    oldest[pos[within][::-1]] = balance[within][::-1]  # last write wins: the oldest in window
    last_balance = latest(balance)
    code = STATEMENT_STATUSES.index
    return {
        "statement_balance_last": last_balance,
        "credit_limit_last": latest(limit),
        "utilization_last": _rate(last_balance, latest(limit)),
        "statement_days_past_due_last": latest(dpd),
        f"statement_days_past_due_max_{window}d": agg.largest(pos, dpd, inside),
        f"statements_delinquent_{window}d": agg.count(pos, inside & (status == code("delinquent"))),
        f"statements_paid_in_full_{window}d": agg.count(
            pos, inside & (status == code("paid_in_full"))
        ),
        f"statements_no_use_{window}d": agg.count(pos, inside & (status == code("no_use"))),
        f"statement_balance_mean_{window}d": _rate(agg.total(pos, balance, inside), count),
        f"statement_balance_trend_{window}d": last_balance - oldest,
    }


_STATUS_LEVELS = {"no_use": -2.0, "paid_in_full": -1.0, "revolving": 0.0}
"""Repayment status levels below delinquency; delinquent statements count months past due."""


def _status_level(status: np.ndarray, days_past_due: np.ndarray) -> np.ndarray:
    """Ordinal repayment status: -2 no use, -1 paid in full, 0 revolving, n months past due.

    A delinquent statement is at least one month past due, however few days it reports.
    """
    levels = np.array([_STATUS_LEVELS.get(name, np.nan) for name in STATEMENT_STATUSES])
    level = np.where(status >= 0, levels[np.maximum(status, 0)], np.nan)
    delinquent = status == STATEMENT_STATUSES.index("delinquent")
    months = np.maximum(np.ceil(np.nan_to_num(days_past_due) / 30.0), 1.0)
    return np.where(delinquent, months, level)


class _StatementMatrices(NamedTuple):
    """(account, rank) matrices of the latest STATEMENT_LAGS + 1 statements, newest first.

    The extra column is the statement before the oldest lag, whose balance that lag's
    payments answer. NaN where an account has fewer statements.
    """

    balance: np.ndarray
    limit: np.ndarray
    level: np.ndarray
    closed: np.ndarray
    """Closing time, UTC microseconds (exact < 2**53)."""


class _Cycles(NamedTuple):
    """What happened in the cycle of each lag (account, lag) and the balance it answered."""

    known: np.ndarray
    """Whether the lag's statement exists."""
    paid: np.ndarray
    previous: np.ndarray
    """Balance of the statement before the lag's."""
    owed: np.ndarray
    """The cycle started with something to pay."""
    utilization: np.ndarray
    """Balance / credit limit of every column of the matrices (the extra one included)."""
    ratio: np.ndarray
    new_charges: np.ndarray


def _statement_matrices(agg: _Accounts, statements: _Events) -> _StatementMatrices:
    """The latest STATEMENT_LAGS + 1 statements of each account laid out as matrices."""
    width = STATEMENT_LAGS + 1
    rows, pos, _ = statements
    at = rows["statement_at"]
    order = np.lexsort((-at, pos))  # per account, newest first
    pos = pos[order]
    starts = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])  # first row of each account
    rank = np.arange(len(pos)) - np.repeat(starts, np.diff(np.r_[starts, len(pos)]))
    keep = rank < width
    cell = (pos[keep], rank[keep])
    chosen = order[keep]

    def matrix(values: np.ndarray) -> np.ndarray:
        result = np.full((agg.n, width), np.nan)
        result[cell] = values
        return result

    level = _status_level(rows["status"][chosen], rows["days_past_due"][chosen].astype(np.float64))
    return _StatementMatrices(
        balance=matrix(rows["balance"][chosen].astype(np.float64)),
        limit=matrix(rows["credit_limit"][chosen].astype(np.float64)),
        level=matrix(level),
        closed=matrix(at[chosen].astype(np.float64)),
    )


def _statement_cycles(matrices: _StatementMatrices, paid_per_cycle: np.ndarray) -> _Cycles:
    """Payments, payment ratio and new charges of each lag's cycle (NaN without a statement)."""
    lags = STATEMENT_LAGS
    balance, limit = matrices.balance, matrices.limit
    known = ~np.isnan(balance[:, :lags])
    paid = np.where(known, paid_per_cycle, np.nan)
    previous = balance[:, 1:]
    owed = previous > 0  # the cycle started with something to pay
    with np.errstate(divide="ignore", invalid="ignore"):
        utilization = np.where(limit > 0, balance / limit, np.nan)
        ratio = np.where(owed, paid / previous, np.nan)
    new_charges = balance[:, :lags] - previous + paid
    return _Cycles(known, paid, previous, owed, utilization, ratio, new_charges)


def _lag_features(matrices: _StatementMatrices, cycles: _Cycles) -> dict[str, np.ndarray]:
    """The latest STATEMENT_LAGS statements one by one (`_lag<k>`)."""
    out: dict[str, np.ndarray] = {}
    for lag in range(1, STATEMENT_LAGS + 1):
        column = lag - 1
        out[f"statement_balance_lag{lag}"] = matrices.balance[:, column]
        out[f"statement_utilization_lag{lag}"] = cycles.utilization[:, column]
        out[f"statement_status_level_lag{lag}"] = matrices.level[:, column]
        out[f"statement_cycle_paid_lag{lag}"] = cycles.paid[:, column]
        out[f"statement_cycle_payment_ratio_lag{lag}"] = cycles.ratio[:, column]
        out[f"statement_cycle_new_charges_lag{lag}"] = cycles.new_charges[:, column]
    return out


def _delinquent_streaks(delinquent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of an (account, lag) matrix, newest first: the run of delinquent statements
    ending with the latest one, and the longest run."""
    accounts, lags = delinquent.shape
    streak = np.zeros(accounts, np.int64)
    longest = np.zeros(accounts, np.int64)
    latest_run = np.ones(accounts, bool)
    latest = np.zeros(accounts, np.int64)
    for column in range(lags):  # newest to oldest
        streak = np.where(delinquent[:, column], streak + 1, 0)
        longest = np.maximum(longest, streak)
        latest_run = latest_run & delinquent[:, column]
        latest = latest + latest_run
    return latest, longest


def _history_summaries(matrices: _StatementMatrices, cycles: _Cycles) -> dict[str, np.ndarray]:
    """Status, streaks, payments and peaks over the latest STATEMENT_LAGS statements."""
    lags = STATEMENT_LAGS
    recent = matrices.level[:, :lags]
    statements_seen = cycles.known.sum(axis=1)
    latest, longest = _delinquent_streaks(recent >= 1)  # NaN (no statement) is not delinquent
    paid, owed = cycles.paid, cycles.owed
    paid_owed = np.where(owed, np.nan_to_num(paid), 0.0).sum(axis=1)
    total_owed = np.where(owed, cycles.previous, 0.0).sum(axis=1)
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        out[f"statement_status_level_max_last{lags}"] = np.fmax.reduce(recent, axis=1)
        out[f"statement_status_level_mean_last{lags}"] = _rate(
            np.nan_to_num(recent).sum(axis=1), statements_seen
        )
        out[f"statement_cycle_payment_ratio_last{lags}"] = _rate(paid_owed, total_owed)
    out[f"statements_delinquent_streak_last{lags}"] = latest
    out[f"statements_delinquent_streak_max_last{lags}"] = longest
    out[f"statement_cycle_paid_sum_last{lags}"] = np.where(
        statements_seen > 0, np.nan_to_num(paid).sum(axis=1), np.nan
    )
    out[f"statement_cycles_unpaid_last{lags}"] = (owed & (np.nan_to_num(paid) <= 0)).sum(axis=1)
    out[f"statement_balance_max_last{lags}"] = np.fmax.reduce(matrices.balance[:, :lags], axis=1)
    out[f"statement_utilization_max_last{lags}"] = np.fmax.reduce(
        cycles.utilization[:, :lags], axis=1
    )
    return out


def _statement_history_features(
    agg: _Accounts, statements: _Events | None, payments: pd.DataFrame
) -> dict[str, np.ndarray]:
    """The latest STATEMENT_LAGS statements one by one, and what was paid in each cycle.

    Statements are laid out as (account, lag) matrices with one extra column: the statement
    before the oldest lag, whose balance that lag's payments answer. Empty (NaN) where an
    account has fewer statements.
    """
    if statements is None:  # most portfolios: skip the matrices
        return {
            spec.name: np.zeros(agg.n, np.int64) if spec.kind == "int" else np.full(agg.n, np.nan)
            for spec in STATEMENT_HISTORY_FEATURES
        }
    matrices = _statement_matrices(agg, statements)
    cycles = _statement_cycles(matrices, _paid_per_cycle(agg, payments, matrices.closed))
    return {
        **_lag_features(matrices, cycles),
        **_history_summaries(matrices, cycles),
        "days_since_last_statement": (agg.as_of_us - matrices.closed[:, 0]) / 86_400e6,
    }


def _paid_per_cycle(agg: _Accounts, payments: pd.DataFrame, closed: np.ndarray) -> np.ndarray:
    """Amount paid per account and statement cycle (lag 1..STATEMENT_LAGS), 0 if nothing.

    Cycle k runs from statement k + 1 (exclusive) to statement k (inclusive); when statement
    k + 1 is unknown it starts FIRST_CYCLE_DAYS before statement k. Payments after the latest
    statement belong to no cycle yet.
    """
    lags = STATEMENT_LAGS
    paid = np.zeros((agg.n, lags))
    has_statement = ~np.isnan(closed[:, 0])
    if not has_statement.any() or not len(payments):
        return paid
    rows, pos, _ = agg.events(payments, "paid_at", {"amount": None})
    mine = has_statement[pos]
    pos, at = pos[mine], rows["paid_at"][mine].astype(np.float64)
    amount = rows["amount"][mine].astype(np.float64)
    times = closed[pos]  # newest first, NaN after the oldest statement
    cycle = (times >= at[:, None]).sum(axis=1)  # statements closed at or after the payment
    inside = (cycle >= 1) & (cycle <= lags)
    row = np.arange(len(pos))
    column = np.clip(cycle, 1, lags)
    start = times[row, column]  # the statement before the cycle (NaN: none known)
    fallback = times[row, column - 1] - FIRST_CYCLE_DAYS * 86_400e6
    inside &= np.where(np.isnan(start), at > fallback, True)
    flat = pos[inside].astype(np.int64) * lags + (cycle[inside] - 1)
    totals = np.bincount(flat, weights=amount[inside], minlength=agg.n * lags)
    return totals.reshape(agg.n, lags)


def _placed_accounts(tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    accounts = tables["accounts"]
    return accounts[accounts["placed_at"] <= as_of].reset_index(drop=True)


def _account_frame(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    accounts = _placed_accounts(tables, as_of)
    agg = _Accounts(accounts, as_of)
    payments, paid_since_placement = _payment_features(agg, tables["payments"])
    contacts, counts = _contact_features(agg, tables["contacts"], tables["debtors"])
    statements = _statement_events(agg, tables.get("statements"))
    events = _account_event_features(agg, tables.get("account_events"))
    columns = {
        **_state_features(agg, paid_since_placement, events["amount_forgiven_total"]),
        **payments,
        **_promise_features(agg, tables["promises"]),
        **contacts,
        **_offer_features(agg, tables["offers"]),
        **_statement_features(agg, statements),
        **_statement_history_features(agg, statements, tables["payments"]),
        **events,
    }
    frame = pd.DataFrame(
        {
            "account_id": accounts["account_id"].to_numpy(),
            ENTITY_TIMESTAMP: pd.Series(as_of, index=accounts.index).astype("datetime64[us, UTC]"),
            **{spec.name: _as_kind(columns[spec.name], spec.kind) for spec in ACCOUNT_FEATURES},
        }
    )
    counts["debtor_id"] = accounts["debtor_id"].array  # a categorical: grouped by its codes
    counts["current_balance"] = columns["current_balance"]
    counts["payments_sum_90d"] = columns["payments_sum_90d"]
    counts["payments_count_365d"] = columns["payments_count_365d"]
    counts["promises_broken_365d"] = columns["promises_broken_365d"]
    return frame, counts


def feature_inputs(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tables reduced to the columns the features read."""
    return {
        name: tables[name][list(columns)]
        for name, columns in FEATURE_INPUTS.items()
        if name in tables
    }


def account_features(tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per account placed at or before `as_of`: every account feature as of then.

    Args:
        tables: Validated contract tables (`statements` and `account_events` optional).
        as_of: UTC timestamp; only events strictly before it are used.
    """
    frame, _ = _account_frame(tables, pd.Timestamp(as_of))
    return frame


def debtor_features(tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per debtor with an account placed at or before `as_of`, summed over accounts."""
    _, counts = _account_frame(tables, pd.Timestamp(as_of))
    return debtor_features_from_counts(counts, pd.Timestamp(as_of))


def debtor_features_from_counts(counts: dict[str, np.ndarray], as_of: pd.Timestamp) -> pd.DataFrame:
    """Debtor rows from the per-account counts that `_account_frame` gathers."""
    frame = pd.DataFrame(counts)
    debtor_codes, debtor_ids = _codes(frame.pop("debtor_id"))
    grouped = frame.groupby(debtor_codes, sort=True)  # integers hash faster than text
    sums = grouped.sum(numeric_only=True)
    columns: dict[str, object] = {
        "debtor_accounts_placed": grouped.size().to_numpy(),
        "debtor_current_balance": sums["current_balance"].to_numpy(),
        "debtor_payments_sum_90d": sums["payments_sum_90d"].to_numpy(),
        "debtor_payments_count_365d": sums["payments_count_365d"].to_numpy().astype(np.int64),
        "debtor_promises_broken_365d": sums["promises_broken_365d"].to_numpy().astype(np.int64),
    }
    for band in HOUR_BANDS:
        attempts = sums[f"{band}_attempts"].to_numpy()
        columns[f"debtor_call_attempts_{band}_365d"] = attempts.astype(np.int64)
        columns[f"debtor_call_response_rate_{band}_365d"] = _rate(
            sums[f"{band}_responses"].to_numpy(), attempts
        )
    for day_type in ("weekday", "weekend"):
        columns[f"debtor_call_response_rate_{day_type}_365d"] = _rate(
            sums[f"{day_type}_responses"].to_numpy(), sums[f"{day_type}_attempts"].to_numpy()
        )
    for name in ("sms", "email"):
        columns[f"debtor_{name}_response_rate_90d"] = _rate(
            sums[f"{name}_responses_90d"].to_numpy(), sums[f"{name}_attempts_90d"].to_numpy()
        )
    columns["debtor_days_since_last_conversation"] = (
        grouped["days_since_last_conversation"].min().to_numpy()
    )
    result = pd.DataFrame(
        {
            "debtor_id": np.asarray(debtor_ids, dtype=object)[sums.index.to_numpy()],
            ENTITY_TIMESTAMP: pd.Series(as_of, index=range(len(sums))).astype(
                "datetime64[us, UTC]"
            ),
        }
    )
    return result.assign(**{s.name: _as_kind(columns[s.name], s.kind) for s in DEBTOR_FEATURES})


def _codes(ids: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Each id's code and the ids the codes point to (a categorical's own codes)."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        return ids.cat.codes.to_numpy(), ids.cat.categories
    codes, uniques = pd.factorize(ids, sort=True)
    return codes, pd.Index(uniques)


def feature_snapshots(
    tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Account and debtor snapshots as of one moment, computing the shared work once."""
    as_of = pd.Timestamp(as_of)
    accounts, counts = _account_frame(tables, as_of)
    return accounts, debtor_features_from_counts(counts, as_of)
