"""Out-of-time splits never let a training label see the validation or test window."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.splits import EMBARGO, TEST, TRAIN, VALID, SplitError, assign_split, time_split

WEEK = pd.Timedelta(days=7)


def _weekly(count: int) -> list[pd.Timestamp]:
    start = pd.Timestamp("2025-01-06", tz="UTC")
    return [start + i * WEEK for i in range(count)]


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=14, max_value=60),
    valid=st.integers(min_value=1, max_value=6),
    test=st.integers(min_value=1, max_value=6),
    horizon_days=st.sampled_from([7, 30, 45]),
    jitter_hours=st.lists(st.integers(min_value=0, max_value=24 * 7 - 1), min_size=50, max_size=50),
)
def test_split_is_leak_free(
    count: int, valid: int, test: int, horizon_days: int, jitter_hours: list[int]
) -> None:
    horizon = pd.Timedelta(days=horizon_days)
    times = _weekly(count)
    try:
        split = time_split(times, valid, test, horizon)
    except SplitError:
        return  # too few times for this split: refused, not silently leaky
    # rows at any time, e.g. contacts between snapshots
    rows = pd.Series([times[i % count] + pd.Timedelta(hours=h) for i, h in enumerate(jitter_hours)])
    parts = pd.Series(assign_split(rows, split))
    train, valid_rows, test_rows = rows[parts == TRAIN], rows[parts == VALID], rows[parts == TEST]
    assert (train + horizon <= split.valid_start).all()  # training labels end before valid
    assert (valid_rows >= split.valid_start).all()
    assert (valid_rows + horizon <= split.test_start).all()
    assert (test_rows >= split.test_start).all()
    if len(train) and len(valid_rows):
        assert train.max() < valid_rows.min()
    if len(valid_rows) and len(test_rows):
        assert valid_rows.max() < test_rows.min()
    # every snapshot time lands somewhere, and the last ones are the test window
    snapshot_parts = assign_split(pd.Series(times), split)
    assert list(snapshot_parts[-test:]) == [TEST] * test
    assert TRAIN in set(snapshot_parts)


def test_embargo_drops_rows_whose_label_reaches_the_next_window() -> None:
    times = _weekly(24)
    split = time_split(times, 4, 4, pd.Timedelta(days=30))
    parts = list(assign_split(pd.Series(times), split))
    # test: the last 4; the 4 weekly times before it have labels reaching into it (28 days
    # < 30), so validation is the 4 before those, and 4 more keep training labels clear
    assert parts[20:] == [TEST] * 4
    assert parts[16:20] == [EMBARGO] * 4
    assert parts[12:16] == [VALID] * 4
    assert parts[8:12] == [EMBARGO] * 4
    assert parts[:8] == [TRAIN] * 8


def test_too_few_times_is_a_clear_error() -> None:
    with pytest.raises(SplitError, match="needs at least 13"):
        time_split(_weekly(8), 6, 6, pd.Timedelta(days=30))
    with pytest.raises(SplitError, match="6 are needed to validate"):
        time_split(_weekly(13), 6, 6, pd.Timedelta(days=30))
    with pytest.raises(SplitError, match="nothing left to train on"):
        time_split(_weekly(17), 6, 6, pd.Timedelta(days=30))
