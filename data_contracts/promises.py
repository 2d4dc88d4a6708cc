"""Whether a promise to pay was kept, derived from the payments (pure)."""

from __future__ import annotations

import pandas as pd

GRACE_PERIOD = pd.Timedelta(days=3)
"""A promise counts payments from `made_at` until 3 days after `due_at` (the due day's local
midnight): the due day itself plus two days of grace for payments in transit."""


def derive_promise_kept(
    promises: pd.DataFrame, payments: pd.DataFrame, data_end: pd.Timestamp
) -> pd.Series:
    """Kept flag of each promise: payments in its window add up to the promised amount.

    Args:
        promises: Rows with `promise_id`, `account_id`, `made_at`, `due_at`, `amount`.
        payments: Rows with `account_id`, `paid_at`, `amount`.
        data_end: End of the data; a promise whose window is still open then is null (unknown).

    Returns:
        A nullable boolean Series aligned with `promises`.
    """
    window_end = promises["due_at"] + GRACE_PERIOD
    pairs = (
        promises[["promise_id", "account_id", "made_at"]]
        .assign(window_end=window_end)
        .merge(payments[["account_id", "paid_at", "amount"]], on="account_id", how="inner")
    )
    inside = (pairs["paid_at"] >= pairs["made_at"]) & (pairs["paid_at"] < pairs["window_end"])
    paid = pairs[inside].groupby("promise_id", observed=True)["amount"].sum()
    paid_per_promise = promises["promise_id"].map(paid).fillna(0.0)
    kept = (paid_per_promise >= promises["amount"] - 0.005).astype("boolean")
    return kept.mask(window_end > data_end, pd.NA)
