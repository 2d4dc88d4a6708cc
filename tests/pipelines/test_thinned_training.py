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
from training.sampling import WEIGHT, period_of, stratum_factors
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


def _strata(whole: pd.DataFrame, kind: str) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """(rows of the whole set, rows of the thinned set, k) for each stratum thinned apart:
    one for snapshot rows; contacts that reached the debtor and the others for contacts."""
    train = whole[whole["split"] == TRAIN]
    if kind == "propensity":
        return [(np.ones(len(whole), bool), None, -(-len(train) // 4_000))]
    counts = [int(train["reached"].sum()), int((~train["reached"]).sum())]
    k_reached, k_missed = stratum_factors(counts, 4_000)
    reached = whole["reached"].to_numpy(bool)
    return [(reached, True, k_reached), (~reached, False, k_missed)]


@pytest.mark.parametrize("kind", ["propensity", "actions"])
def test_training_and_validation_rows_are_thinned_and_the_test_window_kept_whole(
    both: tuple[PreparedData, PreparedData], kind: str, featured_portfolio: Path
) -> None:
    whole, thinned = (getattr(prepared, kind) for prepared in both)
    assert whole is not None and thinned is not None
    assert _keys(thinned, TEST) == _keys(whole, TEST)
    assert (thinned.loc[thinned["split"] == TEST, WEIGHT] == 1.0).all()
    times = snapshot_times(featured_portfolio)
    factors = []
    for in_whole, reached, every in _strata(whole, kind):
        factors.append(every)
        part_whole = whole[in_whole]
        part = thinned if reached is None else thinned[thinned["reached"] == reached]
        for split in (TRAIN, VALID):
            kept, full = _keys(part, split), _keys(part_whole, split)
            assert kept <= full
            assert len(kept) == pytest.approx(len(full) / every, rel=0.2, abs=3)
            assert (part.loc[part["split"] == split, WEIGHT] == every).all()
        # each account keeps every k-th period: its kept periods are multiples of k apart
        sampled = part.assign(period=period_of(part["event_timestamp"], times))
        sampled = sampled[sampled["split"] != TEST]
        offsets = sampled.groupby("account_id", observed=True)["period"].agg(
            lambda p, k=every: set(p % k)
        )
        assert (offsets.map(len) == 1).all()
    assert max(factors) > 1  # the budget did thin
    if kind == "actions":  # the rare contacts that got through are thinned least
        assert factors[0] < factors[1]
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
