"""A large book's training rows: thinned per account in training and validation, never in
the test window, weighted, and held compactly (float32 numbers, categorical text)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.feature_store import snapshot_times
from pipelines.train import PreparedData, prepare_data
from training.config import ExperimentConfig, SamplingSettings
from training.sampling import WEIGHT, period_of
from training.splits import TEST, TRAIN, VALID


@pytest.fixture(scope="module")
def both(featured_portfolio: Path) -> tuple[PreparedData, PreparedData]:
    whole = ExperimentConfig(
        sampling=SamplingSettings(max_training_rows=None, max_training_contacts=None)
    )
    thinned = ExperimentConfig(
        sampling=SamplingSettings(max_training_rows=4_000, max_training_contacts=4_000)
    )
    return prepare_data(featured_portfolio, whole), prepare_data(featured_portfolio, thinned)


def _keys(frame: pd.DataFrame, split: str) -> set[tuple[str, int]]:
    part = frame[frame["split"] == split]
    ids, times = part["account_id"].astype(str), part["event_timestamp"].astype("int64")
    return set(zip(ids, times, strict=True))


@pytest.mark.parametrize("kind", ["propensity", "actions"])
def test_training_and_validation_rows_are_thinned_and_the_test_window_kept_whole(
    both: tuple[PreparedData, PreparedData], kind: str, featured_portfolio: Path
) -> None:
    whole, thinned = (getattr(prepared, kind) for prepared in both)
    assert whole is not None and thinned is not None
    every = int(thinned.loc[thinned["split"] == TRAIN, WEIGHT].iloc[0])
    train_rows = int((whole["split"] == TRAIN).sum())
    assert every == -(-train_rows // 4_000) > 1
    assert _keys(thinned, TEST) == _keys(whole, TEST)
    assert (thinned.loc[thinned["split"] == TEST, WEIGHT] == 1.0).all()
    for split in (TRAIN, VALID):
        kept, full = _keys(thinned, split), _keys(whole, split)
        assert kept <= full
        assert len(kept) == pytest.approx(len(full) / every, rel=0.15)
        assert (thinned.loc[thinned["split"] == split, WEIGHT] == every).all()
    # each account keeps every k-th period: its kept periods are multiples of k apart
    periods = period_of(thinned["event_timestamp"], snapshot_times(featured_portfolio))
    sampled = thinned.assign(period=periods)[thinned["split"] != TEST]
    offsets = sampled.groupby("account_id", observed=True)["period"].agg(lambda p: set(p % every))
    assert (offsets.map(len) == 1).all()
    # thinned rows carry the same features as the same rows of the whole set
    same = thinned[thinned["split"] == VALID].head(50)
    merged = same.merge(
        whole, on=["account_id", "event_timestamp"], suffixes=("", "_whole"), how="left"
    )
    np.testing.assert_allclose(
        merged["current_balance"].astype(float),
        merged["current_balance_whole"].astype(float),
        rtol=1e-6,
    )


def test_training_sets_are_compact(both: tuple[PreparedData, PreparedData]) -> None:
    _, thinned = both
    frame = thinned.propensity
    numeric = [name for name in thinned.features if name not in thinned.categorical]
    assert {str(frame[name].dtype) for name in numeric} == {"float32"}
    assert all(isinstance(frame[name].dtype, pd.CategoricalDtype) for name in thinned.categorical)
    assert not any(frame[name].dtype == object for name in thinned.features)
