"""Fitting and evaluating on prepared frames (pure: frames in, models and metrics out).

A prepared frame holds the feature columns, the labels and a `split` column (`train`, `valid`,
`test`), decided out of time by `training.splits`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.config import ExperimentConfig
from training.labels import label_names
from training.metrics import classification_metrics, regression_metrics
from training.model import FrameEncoder, NextBestActionModel, PropensityModel
from training.policy import off_policy_estimates, target_probability
from training.sampling import WEIGHT, account_sample
from training.splits import TEST, TRAIN, VALID, window
from training.tune import tune


def _part(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    part = window(frame, name)
    if not len(part):
        raise ValueError(f"the {name} window has no rows")
    return part


def _weights(part: pd.DataFrame) -> np.ndarray | None:
    """The rows each row stands for, when the window was thinned (`training.sampling`)."""
    return part[WEIGHT].to_numpy(float) if WEIGHT in part else None


def with_monotone_constraints(
    params: dict[str, Any], features: Sequence[str], config: ExperimentConfig
) -> dict[str, Any]:
    """LightGBM parameters with the experiment's monotone constraints, in feature order."""
    up, down = set(config.monotone_increasing), set(config.monotone_decreasing)
    constraints = [1 if name in up else -1 if name in down else 0 for name in features]
    if not any(constraints):
        return dict(params)
    return {**params, "monotone_constraints": constraints}


def tune_propensity(
    frame: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    config: ExperimentConfig,
    threads: int,
    trials: int | None = None,
    timeout: float | None = None,
    on_trial: Callable[[int, float, dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Optuna search on the training window, scored on the validation window."""
    paid, _ = label_names(config.horizon_days)
    train, valid = _part(frame, TRAIN), _part(frame, VALID)
    encoder = FrameEncoder(features, categorical).fit(train)
    return tune(
        (encoder.transform(train), train[paid].to_numpy()),
        (encoder.transform(valid), valid[paid].to_numpy()),
        with_monotone_constraints(dict(config.lightgbm), features, config),
        config.search_space,
        config.tuning,
        config.seed,
        threads,
        trials,
        timeout,
        on_trial,
        (_weights(train), _weights(valid)),
    )


def fit_propensity(
    frame: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    config: ExperimentConfig,
    params: dict[str, Any],
    threads: int,
    with_amount: bool = True,
) -> PropensityModel:
    paid, amount = label_names(config.horizon_days)
    train, valid = _part(frame, TRAIN), _part(frame, VALID)
    model = PropensityModel(
        features=list(features),
        categorical=list(categorical),
        params=with_monotone_constraints(params, features, config),
        calibration=config.calibration,
        seed=config.seed,
        threads=threads,
        horizon_days=config.horizon_days,
        early_stopping=config.early_stopping,
    )
    return model.fit(
        train,
        train[paid].to_numpy(),
        amount=train[amount].to_numpy() if with_amount else None,
        eval_set=(
            valid,
            valid[paid].to_numpy(),
            valid[amount].to_numpy() if with_amount else None,
        ),
        sample_weight=_weights(train),
        eval_sample_weight=_weights(valid),
    )


def propensity_scores(model: PropensityModel, rows: pd.DataFrame) -> pd.DataFrame:
    """The model's calibrated probability, expected amount and uncalibrated probability on
    `rows` (`p`, `expected`, `uncalibrated`): what its metrics and figures are made of."""
    predicted = model.predict_frame(rows)
    h = model.horizon_days
    return pd.DataFrame(
        {
            "p": predicted[f"p_payment_{h}d"].to_numpy(),
            "expected": predicted[f"expected_amount_{h}d"].to_numpy(),
            "uncalibrated": model.predict_uncalibrated(rows),
        },
        index=rows.index,
    )


def evaluate_propensity(
    model: PropensityModel,
    rows: pd.DataFrame,
    horizon_days: int,
    prefix: str = "test_",
    scores: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Metrics of the calibrated model on `rows`, plus the uncalibrated Brier score and the
    amount model's errors; the top decile is ranked by expected amount where there is one.
    `scores`: the rows' `propensity_scores`, when already computed."""
    paid, amount = label_names(horizon_days)
    y = rows[paid].to_numpy()
    scores = propensity_scores(model, rows) if scores is None else scores
    p = scores["p"].to_numpy()
    expected = scores["expected"].to_numpy()
    has_amount = amount in rows and rows[amount].notna().all() and np.isfinite(expected).all()
    metrics = classification_metrics(
        y,
        p,
        amount=rows[amount].to_numpy() if has_amount else None,
        score=expected if has_amount else None,
    )
    metrics["brier_uncalibrated"] = classification_metrics(y, scores["uncalibrated"].to_numpy())[
        "brier"
    ]
    if has_amount:
        for key, value in regression_metrics(rows[amount].to_numpy(), expected).items():
            metrics[f"amount_{key}"] = value
    return {f"{prefix}{key}": value for key, value in metrics.items()}


def cross_validate(
    frame: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    config: ExperimentConfig,
    params: dict[str, Any],
    threads: int,
    seed: int | None = None,
    on_fold: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Stratified k-fold ROC AUC for data with a single as-of time (no later window exists).

    In each fold, a stratified fifth of the training part stops boosting and fits the
    calibration; the test fold is never seen before it is scored.
    """
    from sklearn.model_selection import StratifiedKFold, train_test_split

    paid, _ = label_names(config.horizon_days)
    y = frame[paid].to_numpy()
    folds = StratifiedKFold(
        config.cv_folds, shuffle=True, random_state=config.seed if seed is None else seed
    )
    aucs = []
    for fold, (train_index, test_index) in enumerate(folds.split(frame, y)):
        inner_train, inner_valid = train_test_split(
            train_index, test_size=0.2, stratify=y[train_index], random_state=config.seed
        )
        split = np.full(len(frame), "unused", dtype=object)
        split[inner_train], split[inner_valid], split[test_index] = TRAIN, VALID, TEST
        part = frame.assign(split=split)
        model = fit_propensity(part, features, categorical, config, params, threads, False)
        metrics = evaluate_propensity(model, window(part, TEST), config.horizon_days, "")
        aucs.append(metrics["roc_auc"])
        if on_fold is not None:
            on_fold(fold, metrics["roc_auc"])
    return {
        "cv_roc_auc_mean": float(np.mean(aucs)),
        "cv_roc_auc_std": float(np.std(aucs, ddof=1)),
        "cv_roc_auc_folds": [float(a) for a in aucs],
    }


def fit_next_best_action(
    actions: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    config: ExperimentConfig,
    params: dict[str, Any],
    threads: int,
) -> NextBestActionModel:
    net = f"net_{config.horizon_days}d"
    train, valid = _part(actions, TRAIN), _part(actions, VALID)
    model = NextBestActionModel(
        features=list(features),
        categorical=list(categorical),
        params=params,
        calibration=config.calibration,
        seed=config.seed,
        threads=threads,
        horizon_days=config.horizon_days,
    )
    return model.fit(
        train,
        train["reached"].to_numpy(),
        train[net].to_numpy(),
        eval_set=(valid, valid["reached"].to_numpy(), valid[net].to_numpy()),
        sample_weight=_weights(train),
        eval_sample_weight=_weights(valid),
    )


OPT_OUT_COLUMNS = {"call": "opted_out_call", "sms": "opted_out_sms", "email": "opted_out_email"}


def blocked_channels(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Channels the policy may not choose for each row: the debtor opted out of them."""
    return {
        channel: (pd.to_numeric(rows[column], errors="coerce").fillna(0) > 0).to_numpy()
        for channel, column in OPT_OUT_COLUMNS.items()
        if column in rows
    }


POLICY_CONTACTS = 100_000
"""Logged contacts the off-policy estimates use at most: beyond it, those of a fixed sample of
accounts (valuing every candidate action of every contact of a large book takes minutes)."""


def evaluate_next_best_action(
    model: NextBestActionModel,
    rows: pd.DataFrame,
    horizon_days: int,
    seed: int = 0,
    policy_contacts: int | None = POLICY_CONTACTS,
) -> tuple[dict[str, float], pd.DataFrame]:
    """Contactability and value metrics on every logged contact of `rows`, and off-policy
    estimates of the learned policy on those of a fixed sample of accounts holding about
    `policy_contacts` of them (all when they fit); returns the metrics and the chosen action
    per row of that sample, whose size is `policy_rows`."""
    net = f"net_{horizon_days}d"
    reached = rows["reached"].to_numpy().astype(int)
    contact = classification_metrics(reached, model.predict_contact(rows))
    metrics = {f"contact_{key}": value for key, value in contact.items()}
    logged_value = model.predict_value(rows)
    metrics.update(
        {
            f"value_{key}": value
            for key, value in regression_metrics(
                rows[net].to_numpy(), logged_value["expected_net"].to_numpy()
            ).items()
        }
    )
    rows = rows[account_sample(rows["account_id"], policy_contacts)]
    chosen = model.best_actions(rows, rows["weekday"].to_numpy(), blocked_channels(rows))
    pi = target_probability(rows.reset_index(drop=True), chosen, model.hours_)
    estimates = off_policy_estimates(
        rows[net].to_numpy(),
        rows["action_probability"].to_numpy(),
        pi,
        chosen["expected_net"].to_numpy(),
        chosen["expected_net"].to_numpy(),  # where pi > 0 the logged action is the chosen one
        seed=seed,
    )
    metrics.update({f"policy_{key}": value for key, value in estimates.items()})
    shares = chosen["channel"].value_counts(normalize=True)
    metrics.update({f"policy_share_{channel}": float(share) for channel, share in shares.items()})
    offers = chosen["offer"].value_counts(normalize=True)
    metrics.update({f"policy_share_offer_{offer}": float(share) for offer, share in offers.items()})
    return metrics, chosen
