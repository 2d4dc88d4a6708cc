"""Out-of-time splits: train on earlier as-of times, validate and test on later ones.

Never a random split of rows from the same time. Labels look `horizon` ahead, so a training
row whose label window reaches into the validation window would leak the future: such rows are
put in an embargo and used nowhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

TRAIN, VALID, TEST, EMBARGO = "train", "valid", "test", "embargo"


class SplitError(ValueError):
    """The data has too few as-of times for the requested split."""


@dataclass(frozen=True)
class TimeSplit:
    """Window boundaries (UTC): validation rows start at `valid_start` and their labels end by
    `test_start`; test rows are in [test_start, end]; training labels end by `valid_start`."""

    valid_start: pd.Timestamp
    test_start: pd.Timestamp
    end: pd.Timestamp
    horizon: pd.Timedelta

    def as_dict(self) -> dict[str, str]:
        return {
            "valid_start": self.valid_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.end.isoformat(),
            "embargo_days": str(self.horizon.days),
        }


def time_split(
    as_of_times: Sequence[pd.Timestamp],
    valid_periods: int,
    test_periods: int,
    horizon: pd.Timedelta,
) -> TimeSplit:
    """The split of the labelable as-of times: the last `test_periods` are the test window; the
    validation window is the `valid_periods` latest times whose labels end before the test
    window starts; training takes every time whose label ends before validation starts."""
    times = sorted(pd.Timestamp(t) for t in set(as_of_times))
    if len(times) < test_periods + valid_periods + 1:
        raise SplitError(
            f"{len(times)} labelable as-of times; an out-of-time split with {valid_periods} "
            f"validation and {test_periods} test times needs at least "
            f"{test_periods + valid_periods + 1} plus a {horizon.days}-day gap before each "
            "window (build snapshots more often, e.g. --every 7d, or shorten the windows)"
        )
    test_start = times[-test_periods]
    before_test = [t for t in times if t + horizon <= test_start]
    if len(before_test) < valid_periods:
        raise SplitError(
            f"only {len(before_test)} as-of times end their {horizon.days}-day label before "
            f"the test window ({test_start.date()}); {valid_periods} are needed to validate"
        )
    valid_start = before_test[-valid_periods]
    split = TimeSplit(valid_start, test_start, times[-1], horizon)
    if not (assign_split(pd.Series(times), split) == TRAIN).any():
        raise SplitError(
            f"no as-of time is at least {horizon.days} days before the validation window "
            f"({valid_start.date()}): nothing left to train on"
        )
    return split


def assign_split(times: pd.Series, split: TimeSplit) -> np.ndarray:
    """`train`, `valid`, `test` or `embargo` for each row's time (its as-of or contact time)."""
    times = pd.to_datetime(times, utc=True)
    label_end = times + split.horizon
    return np.select(
        [
            times > split.end,
            times >= split.test_start,
            (times >= split.valid_start) & (label_end <= split.test_start),
            times >= split.valid_start,
            label_end <= split.valid_start,
        ],
        [EMBARGO, TEST, VALID, EMBARGO, TRAIN],
        EMBARGO,
    )


def window(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one window (`frame["split"] == name`): a slice of the frame, not a copy,
    when they are contiguous, as in time-ordered training sets (a large book's test window
    is gigabytes)."""
    positions = np.flatnonzero((frame["split"] == name).to_numpy())
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
        return frame.iloc[positions[0] : positions[-1] + 1]
    return frame.iloc[positions]
