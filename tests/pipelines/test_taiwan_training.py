"""The real Taiwan portfolio through our own pipeline: import, features, cross-validated
training, with the experiment file the README gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.features_build import build_snapshots
from pipelines.taiwan import import_taiwan_to_folder
from pipelines.train import prepare_data
from training.config import load_experiment
from training.fit import cross_validate

pytestmark = [pytest.mark.slow, pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]


def test_taiwan_reaches_the_published_auc_through_the_pipeline(
    taiwan_csv: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "taiwan"
    import_taiwan_to_folder(taiwan_csv, folder)
    build_snapshots(folder, None, None, "7d")
    config, _ = load_experiment(REPO / "experiments" / "taiwan.yaml")
    prepared = prepare_data(folder, config)
    assert len(prepared.propensity) == 30_000 and prepared.split is None
    assert not {"gender", "age_band", "marital_status", "education"} & set(prepared.features)
    result = cross_validate(
        prepared.propensity,
        prepared.features,
        prepared.categorical,
        config,
        dict(config.lightgbm),
        threads=2,
    )
    # gradient boosting is commonly reported at about 0.78; the issue asks for 0.785
    assert result["cv_roc_auc_mean"] >= 0.785, result
    assert result["cv_roc_auc_std"] < 0.02
