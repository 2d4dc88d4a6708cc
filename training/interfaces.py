"""What the scoring service calls on a registered model: the contract between training and
serving.

The registry stores fitted model objects (preprocessing and LightGBM together); serving loads
them from MLflow and calls only the members declared here, typing against these protocols under
`TYPE_CHECKING` (it never imports training code at run time). `PropensityModel` and
`NextBestActionModel` satisfy them, and a test checks it. A new model kind implements one of
these protocols (or declares a new one here) and registers its pyfunc wrapper in
`training.pyfunc.MODEL_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd


@runtime_checkable
class RowEncoder(Protocol):
    """Turns feature rows into the numeric matrix a model predicts from."""

    categories_: Mapping[str, Any]
    """Known categories of each categorical input."""

    def to_array(self, X: pd.DataFrame, leading: int | None = None) -> np.ndarray:
        """Rows as a float matrix in the model's input order (unknown categories missing)."""
        ...


@runtime_checkable
class ScoringModel(Protocol):
    """A probability-of-payment model: calibrated probability, expected amount and reasons."""

    features: Sequence[str]
    feature_names_: list[str]
    horizon_days: int
    encoder_: RowEncoder

    def predict_encoded(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probability and expected amount of rows encoded by `encoder_`."""
        ...

    def reasons_encoded(
        self, encoded: np.ndarray, X: pd.DataFrame, top: int = 3
    ) -> list[list[dict[str, Any]]]:
        """The `top` reasons up and down of each encoded row (`X` holds the raw values)."""
        ...


@runtime_checkable
class ActionModel(Protocol):
    """A next-best-action model: the expected net value of every candidate action."""

    features: Sequence[str]
    actions_: pd.DataFrame
    """The candidate actions, one row each (`channel`, `hour_band`, `offer`, terms)."""
    contact_encoder_: RowEncoder

    def encode_accounts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Account rows encoded for the contact and the value models."""
        ...

    def action_matrix(
        self,
        contact_rows: np.ndarray,
        value_rows: np.ndarray,
        weekday: np.ndarray | int,
        chunk_cells: int = ...,
    ) -> dict[str, np.ndarray]:
        """Each prediction (`p_contact`, `expected_net`, ...) as a rows x actions matrix."""
        ...

    def action_columns(self) -> dict[str, np.ndarray]:
        """Each column of `actions_` as an array (channel, hour band, offer, terms)."""
        ...

    def best_choice(
        self,
        matrix: dict[str, np.ndarray],
        blocked_channels: Mapping[str, np.ndarray] | None = None,
        channel: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Position of each row's best allowed action, and the expected net matrix."""
        ...
