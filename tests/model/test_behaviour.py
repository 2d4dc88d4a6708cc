"""Behavioural tests of a trained propensity model (direction and invariance)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.train import prepare_data
from training.config import ExperimentConfig
from training.fit import fit_propensity
from training.model import PropensityModel
from training.splits import TEST

pytestmark = pytest.mark.slow

CONFIG = ExperimentConfig.model_validate(
    {
        "split": {"valid_periods": 4, "test_periods": 4},
        "lightgbm": {"n_estimators": 150, "learning_rate": 0.08, "num_leaves": 15},
        "train_next_best_action": False,
    }
)


@pytest.fixture(scope="module")
def trained(featured_portfolio: Path) -> tuple[PropensityModel, pd.DataFrame]:
    prepared = prepare_data(featured_portfolio, CONFIG)
    frame = prepared.propensity
    model = fit_propensity(frame, prepared.features, prepared.categorical, CONFIG, {}, 1)
    return model, frame[frame["split"] == TEST].reset_index(drop=True)


def with_recent_payment(rows: pd.DataFrame, amount: float) -> pd.DataFrame:
    """The same accounts, had each paid `amount` yesterday."""
    changed = rows.copy()
    for window in (7, 30, 90, 180, 365):
        changed[f"payments_count_{window}d"] += 1
        changed[f"payments_sum_{window}d"] += amount
    changed["days_since_last_payment"] = 1.0
    changed["paid_share_of_placed_balance"] += amount / changed["original_balance"]
    changed["debtor_payments_sum_90d"] += amount
    changed["debtor_payments_count_365d"] += 1
    return changed


def test_a_recent_payment_does_not_lower_the_propensity(
    trained: tuple[PropensityModel, pd.DataFrame],
) -> None:
    model, rows = trained
    before = model.predict_proba(rows)[:, 1]
    after = model.predict_proba(with_recent_payment(rows, 50.0))[:, 1]
    assert (after >= before - 1e-12).all()
    assert after.mean() > before.mean()  # and it does raise it on the whole


def test_shuffling_account_ids_and_row_order_changes_nothing(
    trained: tuple[PropensityModel, pd.DataFrame],
) -> None:
    model, rows = trained
    rng = np.random.default_rng(0)
    expected = model.predict_frame(rows)
    shuffled_ids = rows.assign(
        account_id=rng.permutation(rows["account_id"].to_numpy()),
        debtor_id=rng.permutation(rows["debtor_id"].to_numpy()),
    )
    pd.testing.assert_frame_equal(model.predict_frame(shuffled_ids), expected)
    order = rng.permutation(len(rows))
    reordered = model.predict_frame(rows.iloc[order])
    pd.testing.assert_frame_equal(reordered, expected.iloc[order])


def test_protected_attributes_are_not_inputs(
    trained: tuple[PropensityModel, pd.DataFrame],
) -> None:
    model, rows = trained
    for attribute in ("age_band", "gender", "region", "marital_status", "education"):
        assert attribute not in model.feature_names_
    # and adding them to the rows changes nothing
    noisy = rows.assign(age_band="65+", gender="female")
    pd.testing.assert_frame_equal(model.predict_frame(noisy), model.predict_frame(rows))


def test_missing_model_inputs_are_a_clear_error(
    trained: tuple[PropensityModel, pd.DataFrame],
) -> None:
    from training.model import MissingFeaturesError

    model, rows = trained
    with pytest.raises(MissingFeaturesError, match="2 model input columns missing"):
        model.predict_frame(rows.drop(columns=["payments_count_30d", "product"]))


def test_unseen_categories_are_treated_as_missing(
    trained: tuple[PropensityModel, pd.DataFrame],
) -> None:
    model, rows = trained
    unseen = model.predict_frame(rows.head(20).assign(product="a product never seen"))
    missing = model.predict_frame(rows.head(20).assign(product=None))
    pd.testing.assert_frame_equal(unseen, missing)


def test_an_accepted_discount_is_not_a_strong_reason_against_paying(
    trained: tuple[PropensityModel, pd.DataFrame],
) -> None:
    """A settled account is closed, not an account that never pays: once settlements close
    accounts (and leave the training rows), an accepted discount stops being one of the
    strongest reasons against paying. Measured on these test rows (1,200 accounts, seed 3):
    before, its mean SHAP on the 456 rows with an accepted discount was -0.244, the second
    strongest negative after days since placement (-1.08); now about -0.01, outside the top 5."""
    model, rows = trained
    accepted = rows[rows["best_accepted_discount_pct"].notna()]
    assert len(accepted) >= 100
    values, _ = model.explain(accepted)
    mean = pd.Series(values.mean(axis=0), index=list(model.feature_names_))
    strongest_negative = mean.nsmallest(2).index
    assert "best_accepted_discount_pct" not in strongest_negative, mean.nsmallest(5)
    assert "offers_accepted_total" not in strongest_negative, mean.nsmallest(5)
    assert mean["best_accepted_discount_pct"] > -0.1
