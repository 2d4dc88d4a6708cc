"""Figures logged with every run: calibration, feature importance, SHAP summary.

Each function returns a matplotlib figure; the caller saves or logs it (I/O at the edges).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no screen: render to files
    import matplotlib.pyplot as plt

    return plt


def calibration_figure(
    y_true: np.ndarray, curves: dict[str, np.ndarray], bins: int = 10, title: str = ""
) -> Any:
    """Reliability diagram: observed payment rate against predicted probability per bin."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5.5, 5))
    axis.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for label, p in curves.items():
        observed, predicted = calibration_curve(y_true, p, n_bins=bins, strategy="quantile")
        axis.plot(predicted, observed, marker="o", label=label)
    axis.set_xlabel("predicted probability")
    axis.set_ylabel("observed rate")
    axis.set_title(title or "Calibration on the test window")
    axis.legend(loc="upper left")
    figure.tight_layout()
    return figure


def importance_figure(names: Sequence[str], gains: np.ndarray, top: int = 20) -> Any:
    """Horizontal bars of the top features by total gain."""
    plt = _pyplot()
    order = np.argsort(gains)[::-1][:top][::-1]
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    axis.barh([names[i] for i in order], np.asarray(gains)[order])
    axis.set_xlabel("total gain")
    axis.set_title("Feature importance")
    figure.tight_layout()
    return figure


def shap_summary_figure(values: np.ndarray, frame: pd.DataFrame, top: int = 20) -> Any:
    """SHAP's beeswarm summary of the top features (categorical columns shown as codes)."""
    import shap

    plt = _pyplot()
    shown = frame.copy()
    for name in shown.columns:
        if isinstance(shown[name].dtype, pd.CategoricalDtype):
            shown[name] = shown[name].cat.codes.astype(float).where(shown[name].notna())
    figure = plt.figure(figsize=(8, 0.35 * min(top, frame.shape[1]) + 1.5))
    with warnings.catch_warnings():
        # features empty for a portfolio (no creditor statements) colour nothing: fine
        warnings.filterwarnings("ignore", message="All-NaN slice", category=RuntimeWarning)
        # SHAP jitters the dots with NumPy's global RNG; NumPy warns once anyone seeded it
        warnings.filterwarnings("ignore", message=".*global RNG was seeded", category=FutureWarning)
        shap.summary_plot(values, shown, max_display=top, show=False, plot_size=None)
    figure.tight_layout()
    return figure
