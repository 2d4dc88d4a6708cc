"""Figures logged with every run: calibration, feature importance, SHAP summary.

Each function returns a matplotlib figure; the caller saves or logs it (I/O at the edges).
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    if "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no screen: render to files (notebooks keep their backend)
    import matplotlib.pyplot as plt

    return plt


def _finished(figure: Any) -> Any:
    """Take a finished figure out of pyplot's registry (it still saves and displays), so
    audits that draw dozens of figures leave nothing open."""
    import matplotlib.pyplot as plt

    plt.close(figure)
    return figure


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
    return _finished(figure)


def importance_figure(names: Sequence[str], gains: np.ndarray, top: int = 20) -> Any:
    """Horizontal bars of the top features by total gain."""
    plt = _pyplot()
    order = np.argsort(gains)[::-1][:top][::-1]
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(order) + 1.2))
    axis.barh([names[i] for i in order], np.asarray(gains)[order])
    axis.set_xlabel("total gain")
    axis.set_title("Feature importance")
    figure.tight_layout()
    return _finished(figure)


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
    return _finished(figure)


def mean_shap_figure(mean_abs: pd.Series, top: int = 15) -> Any:
    """Horizontal bars of the mean |SHAP| (log-odds) of the top features."""
    plt = _pyplot()
    shown = mean_abs.sort_values(ascending=False).head(top)[::-1]
    figure, axis = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.2))
    axis.barh(shown.index, shown.to_numpy(), color="#4c72b0")
    axis.set_xlabel("mean |SHAP value| (log-odds of paying)")
    axis.set_title("What drives the scores")
    figure.tight_layout()
    return _finished(figure)


def dependence_figure(values: np.ndarray, frame: pd.DataFrame, feature: str) -> Any:
    """SHAP value of one feature against its value (categories as codes)."""
    plt = _pyplot()
    column = frame[feature]
    x = (
        column.cat.codes.astype(float).where(column.notna())
        if isinstance(column.dtype, pd.CategoricalDtype)
        else pd.to_numeric(column, errors="coerce")
    )
    position = list(frame.columns).index(feature)
    figure, axis = plt.subplots(figsize=(4.6, 3.4))
    axis.scatter(x, values[:, position], s=6, alpha=0.45, color="#4c72b0")
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlabel(feature)
    axis.set_ylabel("SHAP value (log-odds)")
    axis.set_title(f"Effect of {feature}", fontsize=10)
    figure.tight_layout()
    return _finished(figure)


def adverse_impact_figure(table: pd.DataFrame, attribute: str, minimum: float) -> Any:
    """Adverse impact ratio per group with its interval, and the four-fifths line."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 0.35 * len(table) + 1.4))
    ratio = table["adverse_impact_ratio"].to_numpy(float)
    low = table["adverse_impact_ratio_low"].to_numpy(float)
    high = table["adverse_impact_ratio_high"].to_numpy(float)
    colours = table["status"].map({"pass": "#55a868", "watch": "#dd8452", "flag": "#c44e52"})
    labels = [f"{g} (n={n:,})" for g, n in zip(table["group"], table["size"], strict=True)]
    axis.barh(labels, ratio, color=colours.tolist())
    errors = np.vstack([np.clip(ratio - low, 0, None), np.clip(high - ratio, 0, None)])
    axis.errorbar(ratio, labels, xerr=np.nan_to_num(errors), fmt="none", color="black")
    axis.axvline(minimum, color="#c44e52", linestyle="--", label=f"four-fifths ({minimum})")
    axis.set_xlabel("share at the top of the worklist / most favoured group's")
    axis.set_title(f"Adverse impact ratio by {attribute}")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    return _finished(figure)


def score_distribution_figure(train: np.ndarray, audit: np.ndarray) -> Any:
    """Score histograms of the training and audit windows."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 3.2))
    bins = np.linspace(0, max(float(np.max(train)), float(np.max(audit)), 1e-6), 30)
    axis.hist(train, bins=bins, alpha=0.5, density=True, label="training window")
    axis.hist(audit, bins=bins, alpha=0.5, density=True, label="audit window")
    axis.set_xlabel("probability of a payment")
    axis.set_ylabel("density")
    axis.legend()
    figure.tight_layout()
    return _finished(figure)


def lines_figure(frame: pd.DataFrame, x: str, y: str, by: str, title: str, ylabel: str) -> Any:
    """One line per value of `by` over `x`."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.4))
    for name, part in frame.groupby(by, sort=True, observed=True):
        axis.plot(pd.to_datetime(part[x]), part[y], marker=".", label=str(name))
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8, ncol=3)
    figure.autofmt_xdate()
    figure.tight_layout()
    return _finished(figure)
