"""MLflow pyfunc wrappers: what the registry stores and serving loads.

Each wrapper holds one fitted model object (preprocessing and LightGBM together) and returns
probabilities and amounts, never 0/1 labels. `unwrap_python_model().model` gives serving the
object itself for its fast paths.
"""

from __future__ import annotations

import warnings

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
