"""What the MLflow registry stores for each model, and the kinds of model cobranza trains.

Models are logged from code (MLflow's models-from-code): `logged_model.py` beside this module
is stored with every version and builds a `RegisteredModel`, which loads the fitted object
(preprocessing and LightGBM together) from the version's `fitted.pkl` artifact and returns
probabilities and amounts, never 0/1 labels. `unwrap_python_model().model` gives serving the
fitted object itself for its fast paths. `PropensityPyfunc` and `NextBestActionPyfunc` load
versions registered before models were logged from code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.pyfunc import PythonModelContext

from training.model import NextBestActionModel, PropensityModel

MODEL_CODE = Path(__file__).with_name("logged_model.py")
"""The file MLflow stores as each version's code (it only builds a `RegisteredModel`)."""
FITTED_ARTIFACT = "fitted"
"""Name of the artifact holding the pickled fitted model."""


@dataclass(frozen=True)
class ModelKind:
    """One kind of model cobranza trains: its class, and how MLflow stores and calls it."""

    name: str
    """As the command line and the registry's `MODEL_NAMES` call it."""
    artifact: str
    """Name of the logged model in its MLflow run."""
    model_class: type
    output: str
    """The model's method MLflow's `predict` calls: rows in, one output frame out."""


MODEL_KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind("propensity", "propensity", PropensityModel, "predict_frame"),
        ModelKind("next-best-action", "next_best_action", NextBestActionModel, "predict_value"),
    )
}
"""Every model kind; a new one is a class and a line here (and its registered name in
`pipelines.registry.MODEL_NAMES`)."""


def kind_of(model: object) -> ModelKind:
    """The kind a fitted model object belongs to."""
    for kind in MODEL_KINDS.values():
        if isinstance(model, kind.model_class):
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model kind")


def model_output(model: Any, model_input: pd.DataFrame) -> pd.DataFrame:
    """What MLflow's `predict` returns for a fitted model of any kind."""
    return getattr(model, kind_of(model).output)(model_input).reset_index(drop=True)


def save_fitted(model: object, folder: Path) -> Path:
    """Pickle a fitted model into `folder` for logging as its version's artifact."""
    kind_of(model)  # only registered kinds
    path = Path(folder) / f"{FITTED_ARTIFACT}.pkl"
    with path.open("wb") as handle:
        pickle.dump(model, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return path


class _FittedModelPyfunc(mlflow.pyfunc.PythonModel):
    """Holds a fitted model (`model`) and answers with its kind's prediction frame."""

    model: Any

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return model_output(self.model, model_input)


class RegisteredModel(_FittedModelPyfunc):
    """Any registered cobranza model. Input: rows of the feature service's columns (plus an
    action for the next-best-action model). Output: the kind's prediction frame."""

    def load_context(self, context: PythonModelContext) -> None:
        with Path(context.artifacts[FITTED_ARTIFACT]).open("rb") as handle:
            self.model = pickle.load(handle)


class PropensityPyfunc(_FittedModelPyfunc):
    """A propensity model registered before models were logged from code (pickled whole).
    Output: `p_payment_30d`, `expected_amount_30d`."""

    def __init__(self, model: PropensityModel) -> None:
        self.model = model


class NextBestActionPyfunc(_FittedModelPyfunc):
    """A next-best-action model registered before models were logged from code. Output:
    `p_contact`, `value_if_reached`, `value_if_missed`, `expected_net`, `uplift`."""

    def __init__(self, model: NextBestActionModel) -> None:
        self.model = model
