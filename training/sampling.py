"""Thinning the training rows of a large portfolio per account, keeping the model calibrated.

An account owing for a year is a training row at every weekly as-of time, and neighbouring
rows of one account are close to copies of each other: a book of a million accounts gives
tens of millions of rows that teach little more than a tenth of them. Training and validation
rows are therefore thinned by *systematic sampling per account*:

- every account gets a phase `h(account) mod k` (a fixed hash of its id, so the same rows are
  chosen on every run and machine);
- a row of that account in period `j` (the index of its as-of time among the snapshot times;
  a logged contact takes the period of the snapshot it is joined to) is kept when
  `(j + phase) mod k == 0`, so each account keeps every k-th period, with its own offset.

Over the hash, every row is kept with the same probability `1/k`, whatever its features, its
label or its account. The kept rows are therefore a sample of the full set, and any average
over them (the training loss, a calibration curve, a payment rate) estimates the full set's
with the Horvitz-Thompson weight `1/(1/k) = k` per row. The weight is the same for every row,
so the fitted model is the one an unweighted fit would give; it is still carried (`weight`
column, LightGBM's and the calibrator's `sample_weight`) so that figures over rows count the
full book, and so a non-uniform design could replace this one without touching the fit.
Because inclusion does not depend on the label, P(paid | features) is the same in the sample
as in the book: a model fitted and calibrated on thinned rows stays calibrated on all rows
(`tests/training/test_sampling.py` checks this on a simulated book). The test window is never
thinned: its figures are measured on every row.

`k` comes from a row budget: the smallest k whose thinned training window fits in it.

Logged contacts are thinned the same way within two strata, those that reached the debtor and
those that did not, each with its own k (`stratum_factors`): the rare contacts that got through
are what the contactability model learns most from, so they are kept whole while they fit in
their share of the budget, and the others thinned harder. Inclusion then depends on the
outcome, so the weights are what keeps the models calibrated: each row weighs its stratum's k,
and the weighted fit estimates the fit on every contact (checked by the same test, with a
thinning that depends on the label and the weights that undo it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

WEIGHT = "weight"
"""Column holding each training row's Horvitz-Thompson weight (rows it stands for)."""


def thinning_factor(rows: int, budget: int | None) -> int:
    """The smallest k such that `rows / k` fits in `budget` rows (1: keep every row)."""
    if budget is None or rows <= budget:
        return 1
    return math.ceil(rows / budget)


def stratum_factors(counts: list[int], budget: int | None) -> list[int]:
    """A thinning factor per stratum (rows in each, in any order) so that together they fit
    in `budget`: strata are served from the smallest, each taking an equal share of what is
    left, so a rare stratum is kept whole while it fits in its share."""
    factors = [1] * len(counts)
    if budget is None or sum(counts) <= budget:
        return factors
    left = float(budget)
    order = sorted(range(len(counts)), key=lambda i: counts[i])
    for served, index in enumerate(order):
        share = left / (len(order) - served)
        factors[index] = math.ceil(counts[index] / share) if counts[index] > share else 1
        left -= counts[index] / factors[index]
    return factors


def account_phase(account_ids: pd.Series | np.ndarray, every: int) -> np.ndarray:
    """Each account's phase in [0, every): a fixed hash of its id (as text), the same on every
    run, machine and Python process."""
    values = pd.Series(account_ids)
    if isinstance(values.dtype, pd.CategoricalDtype):  # hash each distinct id once
        categories = values.cat.categories.astype(str).to_numpy(dtype=object)
        hashed = pd.util.hash_array(categories)[values.cat.codes.to_numpy()]
    else:
        hashed = pd.util.hash_array(values.astype(str).to_numpy(dtype=object))
    return (hashed % np.uint64(every)).astype(np.int64)


def period_of(times: pd.Series, period_starts: pd.Series | np.ndarray) -> np.ndarray:
    """The index of the latest period start at or before each time (-1 before the first)."""
    starts = pd.DatetimeIndex(pd.to_datetime(pd.Series(period_starts), utc=True)).sort_values()
    moments = pd.DatetimeIndex(pd.to_datetime(pd.Series(times), utc=True))
    return np.searchsorted(starts.asi8, moments.as_unit(starts.unit).asi8, side="right") - 1


def kept_rows(account_ids: pd.Series | np.ndarray, periods: np.ndarray, every: int) -> np.ndarray:
    """Which rows systematic sampling per account keeps (see the module docstring)."""
    if every <= 1:
        return np.ones(len(periods), dtype=bool)
    phase = account_phase(account_ids, every)
    return (np.asarray(periods, dtype=np.int64) + phase) % every == 0


def thin(rows: pd.DataFrame, periods: np.ndarray, every: int, thinned: np.ndarray) -> pd.DataFrame:
    """`rows` with the `thinned` ones sampled every `every` periods per account, and a
    `weight` column: `every` for the sampled rows, 1 for the rows kept whole."""
    keep = ~thinned | kept_rows(rows["account_id"], periods, every)
    weight = np.where(thinned, float(every), 1.0)
    return rows.assign(**{WEIGHT: weight})[keep].reset_index(drop=True)


def account_sample(account_ids: pd.Series | np.ndarray, budget: int | None) -> np.ndarray:
    """Which rows belong to a fixed sample of accounts holding about `budget` rows: all rows
    when they fit, else the accounts of phase 0 for the smallest k that fits (every account
    with probability 1/k, the same accounts for every model of the book)."""
    every = thinning_factor(len(account_ids), budget)
    if every == 1:
        return np.ones(len(account_ids), dtype=bool)
    return account_phase(account_ids, every) == 0


EVALUATION_ACCOUNTS = 10_000
"""Accounts a costly comparison (with a simulator's truth: every account's future simulated
again) uses at most: beyond it, a fixed sample of them (`evaluation_sample`)."""


def evaluation_sample(account_ids: pd.Series | np.ndarray) -> np.ndarray:
    """Which rows belong to the accounts a costly comparison uses: all of them up to
    `EVALUATION_ACCOUNTS` accounts, beyond it one account in k by a fixed hash of its id (the
    same accounts for every model of the book, so their figures compare on the same rows)."""
    every = thinning_factor(int(pd.Series(account_ids).nunique()), EVALUATION_ACCOUNTS)
    return account_phase(account_ids, every) == 0
