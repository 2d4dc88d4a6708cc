"""Hyperparameter search with Optuna: parameters from the experiment's search space, pruning
of unpromising trials, and a trial count or time budget.

The objective only builds, fits and scores (`build_classifier`, `suggest_params`); the sampler
is seeded, so the same seed, data and trial count give the same trials.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from training.config import ParamRange, TuningSettings
from training.model import EARLY_STOPPING_ROUNDS, build_classifier

REPORT_EVERY = 10


def suggest_params(trial: Any, space: Mapping[str, ParamRange]) -> dict[str, Any]:
    """One parameter set drawn by an Optuna trial from the search space."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if spec.integer:
            params[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
        else:
            params[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return params


def _pruning_callback(trial: Any, metric: str, warmup: int) -> Callable[[Any], None]:
    """Reports the validation metric to Optuna every few rounds; stops a pruned trial."""
    import optuna

    def callback(env: Any) -> None:
        if env.iteration % REPORT_EVERY or env.iteration < warmup:
            return
        for _, name, value, _ in env.evaluation_result_list:
            if name == metric:
                trial.report(value if metric == "binary_logloss" else -value, env.iteration)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at round {env.iteration}")

    return callback


def tune(
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    base_params: Mapping[str, Any],
    space: Mapping[str, ParamRange],
    settings: TuningSettings,
    seed: int,
    threads: int,
    trials: int | None = None,
    timeout: float | None = None,
    on_trial: Callable[[int, float, dict[str, Any]], None] | None = None,
    weights: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
) -> tuple[dict[str, Any], Any]:
    """Search the space; returns the best parameters (base overridden) and the study.

    `train` and `valid` are encoded frames and labels (the validation window is later in
    time); `weights` the rows each training and validation row stands for, when thinned.
    With an empty search space the base parameters are returned without a study.
    """
    import lightgbm
    import optuna
    from sklearn.metrics import log_loss, roc_auc_score

    if not space:
        return dict(base_params), None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = "binary_logloss" if settings.metric == "log_loss" else "auc"
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=3, n_warmup_steps=settings.pruning_warmup_rounds
        ),
    )
    (X, y), (X_valid, y_valid) = train, valid
    weight, weight_valid = weights

    def objective(trial: Any) -> float:
        params = {**base_params, **suggest_params(trial, space)}
        model = build_classifier(params, seed, threads)
        model.fit(
            X,
            y,
            sample_weight=weight,
            eval_X=(X_valid,),
            eval_y=(y_valid,),
            eval_sample_weight=None if weight_valid is None else [weight_valid],
            eval_metric=metric,
            callbacks=[
                lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False),
                _pruning_callback(trial, metric, settings.pruning_warmup_rounds),
            ],
        )
        p = model.predict_proba(X_valid)[:, 1]
        trial.set_user_attr("best_iteration", int(model.best_iteration_ or 0))
        if settings.metric == "log_loss":
            return float(log_loss(y_valid, p, labels=[0, 1], sample_weight=weight_valid))
        return -float(roc_auc_score(y_valid, p, sample_weight=weight_valid))

    def report(study: Any, trial: Any) -> None:
        if on_trial is not None:
            on_trial(trial.number, trial.value if trial.value is not None else np.nan, trial.params)

    study.optimize(
        objective,
        n_trials=trials if trials is not None else (None if timeout else settings.trials),
        timeout=timeout if timeout is not None else settings.timeout_seconds,
        callbacks=[report],
        gc_after_trial=False,
    )
    return {**base_params, **study.best_params}, study
