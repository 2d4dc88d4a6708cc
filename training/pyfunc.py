"""MLflow pyfunc wrappers: what the registry stores and serving loads.

Each wrapper holds one fitted model object (preprocessing and LightGBM together) and returns
probabilities and amounts, never 0/1 labels. `unwrap_python_model().model` gives serving the
object itself for its fast paths.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import mlflow.pyfunc

from training.model import NextBestActionModel, PropensityModel

# MLflow asks for type hints on `predict` when a subclass is defined; the signature logged with
# each model describes its input instead (type hints would make MLflow infer a second schema).
warnings.filterwarnings("ignore", message=r".*Add type hints to the `predict` method")


class PropensityPyfunc(mlflow.pyfunc.PythonModel):
    """Input: rows of the feature service's columns. Output: `p_payment_30d`,
    `expected_amount_30d` (calibrated probability and amount within the horizon)."""

    def __init__(self, model: PropensityModel) -> None:
        self.model = model

    # No type hints on predict: MLflow would infer a schema from them (and warn about Any);
    # the signature logged with the model describes the input instead.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return self.model.predict_frame(model_input).reset_index(drop=True)


class NextBestActionPyfunc(mlflow.pyfunc.PythonModel):
    """Input: rows of features plus an action (`channel`, `hour_band`, `weekday`, `offer`,
    `discount_pct`, `installments`). Output: `p_contact`, `value_if_reached`,
    `value_if_missed`, `expected_net`, `uplift`."""

    def __init__(self, model: NextBestActionModel) -> None:
        self.model = model

    # No type hints on predict: MLflow would infer a schema from them (and warn about Any);
    # the signature logged with the model describes the input instead.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        return self.model.predict_value(model_input).reset_index(drop=True)


@dataclass(frozen=True)
class ModelKind:
    """One kind of model cobranza trains: its class, and how MLflow stores it."""

    name: str
    """As the command line and the registry's `MODEL_NAMES` call it."""
    artifact: str
    """Name of the logged model in its MLflow run."""
    model_class: type
    wrapper: type[mlflow.pyfunc.PythonModel]


MODEL_KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind("propensity", "propensity", PropensityModel, PropensityPyfunc),
        ModelKind(
            "next-best-action", "next_best_action", NextBestActionModel, NextBestActionPyfunc
        ),
    )
}
"""Every model kind; a new one is a class, a wrapper and a line here (and its registered name
in `pipelines.registry.MODEL_NAMES`)."""


def kind_of(model: object) -> ModelKind:
    """The kind a fitted model object belongs to."""
    for kind in MODEL_KINDS.values():
        if isinstance(model, kind.model_class):
            return kind
    raise TypeError(f"{type(model).__name__} is not a registered model kind")


def wrapped(model: object) -> mlflow.pyfunc.PythonModel:
    """The pyfunc wrapper MLflow stores for a fitted model."""
    return kind_of(model).wrapper(model)
