"""The code MLflow stores with every cobranza model version (models from code).

MLflow runs this file when it loads a version: it builds the wrapper, which then loads the
fitted model from the version's `fitted.pkl` artifact. Never imported by cobranza itself.
"""

import mlflow

from training.pyfunc import RegisteredModel

mlflow.models.set_model(RegisteredModel())
