"""Propensity-to-pay and next-best-action models: labels, out-of-time splits, LightGBM models
with calibration, Optuna tuning, SHAP reason codes and off-policy evaluation (pure code; the
runs that read data and write to MLflow live in `pipelines.train`)."""

import os as _os

# LightGBM's OpenMP threads spin while they wait; when another process shares the cores (a
# second worker, a test runner) training slowed 10x here (4.5 s -> 51 s). Passive waiting
# keeps it at 4.5 s and costs nothing alone. It must be set before LightGBM loads OpenMP.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__: list[str] = []
