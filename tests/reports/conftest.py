"""A real MLflow registry with a propensity champion trained on the session's simulated
portfolio, for the audit, report, gate and notebook tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.config import ExperimentConfig

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "data_contracts" / "contact_rules.yaml"
QUICK = {
    "name": "reports-quick",
    "split": {"valid_periods": 4, "test_periods": 4},
    "lightgbm": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7},
    "audit": {"bootstrap": 100},
}
OLDER = ("65+",)
SHIFT = 1.5
"""The planted bias: debtors aged 65 and over get scores 1.5 lower in log-odds (about a
quarter of what they deserve at these payment rates)."""


@dataclass
class Registry:
    portfolio: Path
    tracking_uri: str
    config: ExperimentConfig
    root: Path


@pytest.fixture(scope="package")
def registry(featured_portfolio: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    from pipelines.train import train_portfolio

    root = tmp_path_factory.mktemp("reports")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = ExperimentConfig.model_validate(QUICK)
    train_portfolio(featured_portfolio, config, "", tracking_uri=uri)
    return Registry(featured_portfolio, uri, config, root)


def older_debtors_pushed_down(folder: Path):  # type: ignore[no-untyped-def]
    """The planted bias as a `score_shift` for `run_audit`."""
    debtors = pd.read_parquet(folder / "debtors.parquet").set_index("debtor_id")

    def shift(rows: pd.DataFrame, scores: np.ndarray) -> np.ndarray:
        older = rows["debtor_id"].map(debtors["age_band"]).astype(str).isin(OLDER).to_numpy()
        clipped = np.clip(scores, 1e-6, 1 - 1e-6)
        shifted = 1 / (1 + np.exp(-(np.log(clipped / (1 - clipped)) - SHIFT)))
        return np.where(older, shifted, scores)

    return shift
