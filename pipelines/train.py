"""Train, evaluate and register the propensity and next-best-action models of a portfolio.

`train_portfolio` is what `cobranza train` runs: read the validated tables, label every
snapshot row and logged contact, split out of time, join point-in-time features from the
Feast store, tune with Optuna, fit and calibrate, evaluate on the test window (and against the
simulator's truth when the portfolio has one), explain with SHAP, log everything to MLflow and
register both models (a new version is `challenger`, or `champion` when there is none).
Portfolios with a single scoring moment and external labels (the Taiwan import) are evaluated by
stratified cross-validation instead, since no later time exists to test on.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.coerce import coerce_id
from data_contracts.ids import id_codes, id_positions, lookup
from data_contracts.settings import get_settings
from pipelines.feature_store import (
    service_inputs,
    snapshot_root,
    training_set,
)
from pipelines.feature_store import snapshot_times as feature_snapshot_times
from pipelines.portfolio import OffPolicyRefused, require_action_probability, validate_portfolio
from pipelines.portfolio import data_end as manifest_data_end
from pipelines.registry import (
    NEXT_BEST_ACTION_MODEL,
    PROPENSITY_MODEL,
    Store,
    experiment_id,
    open_registry,
    quiet_mlflow,
    register_run,
)
from training.card import next_best_action_card, propensity_card
from training.config import ExperimentConfig
from training.fit import (
    cross_validate,
    evaluate_next_best_action,
    evaluate_propensity,
    fit_next_best_action,
    fit_propensity,
    propensity_scores,
    tune_propensity,
)
from training.labels import (
    ACTION_COLUMNS,
    ELIGIBILITY_COLUMNS,
    label_names,
    logged_actions,
    open_owing_rows,
    payment_labels,
    reached_debtor,
)
from training.model import NextBestActionModel, PropensityModel
from training.plots import calibration_figure, importance_figure, shap_summary_figure
from training.sampling import (
    WEIGHT,
    evaluation_sample,
    kept_rows,
    period_of,
    stratum_factors,
    thin,
    thinning_factor,
)
from training.splits import (
    EMBARGO,
    TEST,
    TRAIN,
    VALID,
    TimeSplit,
    assign_split,
    time_split,
    window,
)

Progress = Callable[[str], None]
TAIWAN_LABELS = Path("labels") / "default_next_month.parquet"
SHAP_SAMPLE = 2000
EXAMPLE_ROWS = 200
"""Rows a logged model keeps as its input example and signature sample."""


class TrainingError(RuntimeError):
    """Training cannot run on this data (no snapshots, too few as-of times, no labels)."""


@dataclass
class PreparedData:
    """Everything a run needs, joined and labelled, with each row's split."""

    propensity: pd.DataFrame
    actions: pd.DataFrame | None
    features: list[str]
    categorical: list[str]
    service: str
    split: TimeSplit | None
    data_end: pd.Timestamp


def data_hash(frame: pd.DataFrame) -> str:
    """A short content hash of a training set (same rows and values -> same hash)."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


def read_valid_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """The portfolio's valid rows (validation writes its quarantine report as usual)."""
    return dict(validate_portfolio(folder).valid)


def _snapshot_rows(folder: Path, accounts: pd.DataFrame) -> pd.DataFrame:
    """(account, as-of) of every account still owing and not closed at a snapshot, with its
    debtor. Ids are categoricals sharing the accounts' categories: a large book has tens of
    millions of these rows, and one text object per row would cost gigabytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = accounts["account_id"]
    if not isinstance(ids.dtype, pd.CategoricalDtype):
        ids = ids.astype("category")
    kept = []
    for path in sorted((snapshot_root(folder) / "account").glob("as_of=*.parquet")):
        present = set(pq.read_schema(path).names)
        wanted = [c for c in ELIGIBILITY_COLUMNS if c in present]
        table = pq.read_table(path, columns=["account_id", "event_timestamp", *wanted])
        keep = open_owing_rows(table.select(wanted).to_pandas()).to_numpy()
        table = table.select(["account_id", "event_timestamp"]).filter(keep)
        kept.append(table.set_column(0, "account_id", table.column(0).cast(pa.string())))
    if not kept:
        raise TrainingError(
            f"{snapshot_root(folder)}: no snapshots (run `cobranza features build`)"
        )
    rows = pa.concat_tables(kept)
    # ids stay in Arrow, looked up in the accounts' categories at once: no text per row
    text = pd.Series(pd.arrays.ArrowStringArray(rows.column("account_id").combine_chunks()))
    positions = id_codes(text, ids.cat.categories)
    accounts_of = pd.Categorical.from_codes(positions, dtype=ids.dtype)
    debtors = accounts["debtor_id"].array.take(id_positions(pd.Series(accounts_of), ids))
    return pd.DataFrame(
        {
            "account_id": accounts_of,
            "event_timestamp": pd.to_datetime(rows.column("event_timestamp").to_pandas(), utc=True),
            "debtor_id": debtors,
        }
    )


def prepare_data(
    folder: Path, config: ExperimentConfig, progress: Progress | None = None
) -> PreparedData:
    """Label, split and join features for both models (or the cross-validation set)."""
    folder = Path(folder)
    say = progress or (lambda _: None)
    if not feature_snapshot_times(folder):
        raise TrainingError(
            f"{snapshot_root(folder)}: no snapshots (run `cobranza features build`)"
        )
    say("validating the portfolio")
    tables = read_valid_tables(folder)
    data_end = manifest_data_end(folder)
    features, categorical = service_inputs(folder, config.feature_service)
    if (folder / TAIWAN_LABELS).is_file():
        return _prepare_external_labels(folder, tables, config, features, categorical, data_end)
    say("labelling snapshot rows")
    rows, split = _propensity_rows(folder, tables, config, data_end, say)
    logged = None
    if config.train_next_best_action and len(tables["contacts"]) and _policy_logged(folder, say):
        say("labelling logged contacts")
        logged = _logged_contacts(folder, tables, config, split, data_end)
    del tables  # a large book's tables are gigabytes: gone before the joins
    say(f"joining features for {len(rows):,} snapshot rows")
    propensity = training_set(folder, rows, service=config.feature_service, compact=True)
    del rows
    actions = None
    if logged is not None and len(logged):
        say(f"joining features for {len(logged):,} logged contacts")
        actions = training_set(folder, logged, service=config.feature_service, compact=True)
    return PreparedData(
        propensity, actions, features, categorical, config.feature_service, split, data_end
    )


def _propensity_rows(
    folder: Path,
    tables: dict[str, pd.DataFrame],
    config: ExperimentConfig,
    data_end: pd.Timestamp,
    say: Progress,
) -> tuple[pd.DataFrame, TimeSplit]:
    """Labelled snapshot rows outside the embargo, thinned per account in the training and
    validation windows (`training.sampling`), with their split; and the split."""
    rows = payment_labels(
        _snapshot_rows(folder, tables["accounts"]),
        tables["payments"],
        config.horizon_days,
        data_end,
    )
    rows = rows[rows["labelable"]].drop(columns="labelable")
    split = time_split(
        list(rows["event_timestamp"].unique()),
        config.split.valid_periods,
        config.split.test_periods,
        pd.Timedelta(days=config.horizon_days),
    )
    rows = rows.assign(split=assign_split(rows["event_timestamp"], split))
    rows = rows[rows["split"] != EMBARGO].reset_index(drop=True)
    every = thinning_factor(int((rows["split"] == TRAIN).sum()), config.sampling.max_training_rows)
    periods = period_of(rows["event_timestamp"], feature_snapshot_times(folder))
    if every > 1:
        say(f"training and validation rows: one as-of time in {every} of each account")
    return thin(rows, periods, every, _thinned(rows["split"])), split


def _logged_contacts(
    folder: Path,
    tables: dict[str, pd.DataFrame],
    config: ExperimentConfig,
    split: TimeSplit,
    data_end: pd.Timestamp,
) -> pd.DataFrame:
    """Labelled logged contacts outside the embargo, thinned like the snapshot rows, with
    their split and weight."""
    contacts, every = _thinned_contacts(
        tables["contacts"],
        split,
        feature_snapshot_times(folder),
        config.sampling.max_training_contacts,
    )
    logged = logged_actions(
        {**tables, "contacts": contacts},
        config.horizon_days,
        config.actions.contact_cost,
        data_end,
    )
    logged = logged[logged["labelable"]].drop(columns="labelable")
    parts = assign_split(logged["event_timestamp"], split)
    every_of = np.where(logged["reached"].to_numpy(), *every)
    logged = logged.assign(split=parts, **{WEIGHT: np.where(_thinned(parts), every_of, 1.0)})
    logged = logged[logged["split"] != EMBARGO]
    # in time order, so each window is one slice of the rows (`training.splits.window`)
    return logged.sort_values("event_timestamp", kind="stable").reset_index(drop=True)


def _thinned(split: pd.Series | np.ndarray) -> np.ndarray:
    """Rows of the windows that are thinned on a large book: training and validation."""
    return np.isin(np.asarray(split), [TRAIN, VALID])


def _thinned_contacts(
    contacts: pd.DataFrame, split: TimeSplit, times: list[pd.Timestamp], budget: int | None
) -> tuple[pd.DataFrame, tuple[int, int]]:
    """The contacts worth labelling: none in the embargo, and in the training and validation
    windows those of every k-th period of each account (`training.sampling`), k chosen apart
    for the contacts that reached the debtor and the others so that together they fit the
    training window's logged contacts in `budget`; the two k. Thinned before labelling, so a
    large book's contacts are labelled and joined once each, and only those kept."""
    parts = assign_split(contacts["attempted_at"], split)
    logged = (contacts["direction"].astype(str) == "outbound").to_numpy() & contacts[
        "action_probability"
    ].notna().to_numpy()
    reached = reached_debtor(contacts["outcome"])
    training = logged & (parts == TRAIN)
    every = stratum_factors(
        [int((training & reached).sum()), int((training & ~reached).sum())], budget
    )
    periods = period_of(contacts["attempted_at"], times)
    ids = contacts["account_id"]
    sampled = np.where(
        reached, kept_rows(ids, periods, every[0]), kept_rows(ids, periods, every[1])
    )
    keep = logged & (parts != EMBARGO) & (~_thinned(parts) | sampled)
    return contacts[keep], (every[0], every[1])


def _policy_logged(folder: Path, say: Progress) -> bool:
    """Whether the contacts carry the logging policy's probabilities: without them the
    next-best-action models are not trained, since their off-policy evaluation is refused."""
    try:
        require_action_probability(folder)
    except OffPolicyRefused as refused:
        say(f"next-best-action models not trained: {refused}")
        return False
    return True


def _prepare_external_labels(
    folder: Path,
    tables: dict[str, pd.DataFrame],
    config: ExperimentConfig,
    features: list[str],
    categorical: list[str],
    data_end: pd.Timestamp,
) -> PreparedData:
    """A portfolio scored at one moment with a published label (the Taiwan import): the
    propensity label is "paid as agreed next month", the complement of the default flag."""
    labels = pd.read_parquet(folder / TAIWAN_LABELS)
    account_ids, _ = coerce_id(labels["account_id"])  # integers in older imports
    debtor_of = tables["accounts"].set_index("account_id")["debtor_id"].astype(object)
    paid, amount = label_names(config.horizon_days)
    rows = pd.DataFrame(
        {
            "account_id": account_ids.astype(object).to_numpy(),
            "debtor_id": lookup(account_ids, debtor_of).to_numpy(),
            "event_timestamp": pd.to_datetime(labels["as_of"], utc=True),
            paid: (~labels["defaulted"].astype(bool)).astype(np.int8).to_numpy(),
            amount: np.nan,
        }
    )
    frame = training_set(folder, rows, service=config.feature_service)
    return PreparedData(frame, None, features, categorical, config.feature_service, None, data_end)


# ----- explanations and figures -------------------------------------------------------------
def _sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    return frame.sample(min(size, len(frame)), random_state=seed) if len(frame) > size else frame


def _log_figures(
    model: PropensityModel,
    test: pd.DataFrame,
    config: ExperimentConfig,
    out: Path,
    scores: pd.DataFrame | None = None,
) -> dict[str, float]:
    """Calibration, importance and SHAP summary plots into `out`; mean |SHAP| per feature.
    `scores`: the test rows' `propensity_scores`, when already computed."""
    import matplotlib.pyplot as plt

    paid, _ = label_names(config.horizon_days)
    scores = propensity_scores(model, test) if scores is None else scores
    curves = {
        "LightGBM (uncalibrated)": scores["uncalibrated"].to_numpy(),
        f"calibrated ({config.calibration})": scores["p"].to_numpy(),
    }
    figures = {
        "calibration.png": calibration_figure(test[paid].to_numpy(), curves),
        "feature_importance.png": importance_figure(
            model.feature_names_, model.classifier_.booster_.feature_importance("gain")
        ),
    }
    sample = _sample(test, SHAP_SAMPLE, config.seed)
    values, _ = model.explain(sample)
    figures["shap_summary.png"] = shap_summary_figure(values, model.encoder_.transform(sample))
    for name, figure in figures.items():
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
    mean_abs = np.abs(values).mean(axis=0)
    return dict(zip(model.feature_names_, mean_abs.tolist(), strict=True))


def _signature_and_example(
    model_input: pd.DataFrame, output: pd.DataFrame
) -> tuple[Any, pd.DataFrame]:
    from mlflow.models import infer_signature

    example = model_input.head(3).copy()
    for name in example.columns:  # MLflow schemas want plain types: categories as strings
        if isinstance(example[name].dtype, pd.CategoricalDtype):
            example[name] = example[name].astype("string")
        elif example[name].dtype == np.float32:  # numbers as double, what clients send
            example[name] = example[name].astype(np.float64)
    return infer_signature(example, output.head(3)), example


PIP_REQUIREMENTS = tuple(
    f"{name}=={metadata.version(name)}"
    for name in ("lightgbm", "scikit-learn", "pandas", "numpy", "mlflow")
)
"""What a logged model needs to run, pinned to the versions it was trained with."""


def _log_model(model: Any, model_input: pd.DataFrame, output: pd.DataFrame) -> str:
    """Log a fitted model from code (its pickled object as an artifact); its URI."""
    import mlflow.pyfunc

    # kept lazy like mlflow itself: training.pyfunc imports mlflow.pyfunc (about 1 s) at import
    from training.pyfunc import FITTED_ARTIFACT, MODEL_CODE, kind_of, save_fitted

    signature, example = _signature_and_example(model_input, output)
    with tempfile.TemporaryDirectory() as folder:
        info = mlflow.pyfunc.log_model(
            name=kind_of(model).artifact,
            python_model=str(MODEL_CODE),
            artifacts={FITTED_ARTIFACT: str(save_fitted(model, Path(folder)))},
            signature=signature,
            input_example=example,
            pip_requirements=list(PIP_REQUIREMENTS),
        )
    return str(info.model_uri)


def _flat_params(config: ExperimentConfig, params: dict[str, Any]) -> dict[str, Any]:
    flat = {
        "experiment": config.name,
        "feature_service": config.feature_service,
        "horizon_days": config.horizon_days,
        "seed": config.seed,
        "calibration": config.calibration,
        "valid_periods": config.split.valid_periods,
        "test_periods": config.split.test_periods,
        "promotion_metric": config.promotion.metric,
        "promotion_margin": config.promotion.margin,
    }
    flat.update({f"lgbm_{key}": value for key, value in params.items()})
    return flat


@dataclass
class TrainResult:
    run_id: str
    metrics: dict[str, float]
    versions: dict[str, str]
    params: dict[str, Any]
    data: dict[str, Any]
    models: dict[str, Any] = field(default_factory=dict)


_ROW_COUNTS = ("_rows", "_rows_represented")


def _data_summary(prepared: PreparedData, folder: Path, config: ExperimentConfig) -> dict[str, Any]:
    frame = prepared.propensity
    summary: dict[str, Any] = {
        "portfolio": str(Path(folder).resolve().name),
        "feature_service": prepared.service,
        "features": len(prepared.features),
        "data_end": prepared.data_end.isoformat(),
        "label": f"any payment within {config.horizon_days} days of the as-of time",
    }
    if prepared.split is not None:
        summary.update(prepared.split.as_dict())
        counts = frame["split"].value_counts()
        for part in (TRAIN, VALID, TEST):
            summary[f"{part}_rows"] = int(counts.get(part, 0))
        training = window(frame, TRAIN)
        # each training row stands for `weight` rows of the book (1: nothing was thinned)
        summary["train_rows_represented"] = int(
            training[WEIGHT].sum() if WEIGHT in training else len(training)
        )
        train_times = training["event_timestamp"]
        summary["train_start"] = train_times.min().isoformat()
    else:
        summary["rows"] = len(frame)
        summary["protocol"] = f"stratified {config.cv_folds}-fold cross-validation (one as-of time)"
    return summary


# ----- the stages of a run ------------------------------------------------------------------
@dataclass
class Tuned:
    """The propensity model's LightGBM parameters, and the search's own metrics (if any)."""

    params: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Fitted:
    """A run's models, the rows the propensity model is judged and explained on (the test
    window, or the held-out fifth under cross-validation), the parameters it was fitted with,
    and the run's metrics so far, in the order they are reported."""

    propensity: PropensityModel
    held_out: pd.DataFrame
    params: dict[str, Any]
    metrics: dict[str, float]
    actions: NextBestActionModel | None = None
    held_out_scores: pd.DataFrame | None = None
    """The held-out rows' `propensity_scores`, when the metrics computed them."""


def _run_tags(prepared: PreparedData, summary: dict[str, Any]) -> dict[str, str]:
    """What the run was trained on: the feature service, its inputs and the training rows."""
    frame = prepared.propensity
    training_rows = frame if prepared.split is None else window(frame, TRAIN)
    return {
        "feature_service": prepared.service,
        "feature_service_features_hash": hashlib.sha256(
            "\n".join(prepared.features).encode()
        ).hexdigest()[:16],
        "training_set_hash": data_hash(training_rows),
        "portfolio": summary["portfolio"],
    }


def _cross_validate_and_fit(
    prepared: PreparedData, config: ExperimentConfig, threads: int, out: Path, say: Progress
) -> Fitted:
    """One as-of time and external labels (the Taiwan import), so no later window to test on:
    stratified k-fold cross-validation (folds into `out/cv_folds.json`), then a final model
    fitted on a stratified four fifths, stopped and calibrated on the rest."""
    from sklearn.model_selection import train_test_split

    frame, params = prepared.propensity, dict(config.lightgbm)
    say(f"{config.cv_folds}-fold cross-validation")
    cv = cross_validate(
        frame,
        prepared.features,
        prepared.categorical,
        config,
        params,
        threads,
        on_fold=lambda fold, auc: say(f"fold {fold + 1}: ROC AUC {auc:.4f}"),
    )
    metrics = {k: v for k, v in cv.items() if not isinstance(v, list)}
    (out / "cv_folds.json").write_text(json.dumps(cv, indent=2))
    paid, _ = label_names(config.horizon_days)
    _, valid_index = train_test_split(
        np.arange(len(frame)), test_size=0.2, stratify=frame[paid], random_state=config.seed
    )
    split = np.full(len(frame), TRAIN, dtype=object)
    split[valid_index] = VALID
    frame = frame.assign(split=split)
    model = fit_propensity(
        frame, prepared.features, prepared.categorical, config, params, threads, False
    )
    return Fitted(model, frame[frame["split"] == VALID], params, metrics)


def _tune_propensity(
    prepared: PreparedData,
    config: ExperimentConfig,
    threads: int,
    trials: int | None,
    timeout: float | None,
    say: Progress,
) -> Tuned:
    """Optuna's search on the training window, scored on the validation window."""
    say("tuning with Optuna")
    params, study = tune_propensity(
        prepared.propensity,
        prepared.features,
        prepared.categorical,
        config,
        threads,
        trials,
        timeout,
        on_trial=lambda number, value, _: say(
            f"trial {number}: {config.tuning.metric} {value:.5f}"
        ),
    )
    if study is None:
        return Tuned(params)
    pruned = sum(1 for t in study.trials if t.state.name == "PRUNED")
    return Tuned(
        params, {"tuning_trials": float(len(study.trials)), "tuning_pruned": float(pruned)}
    )


def _fit_propensity(
    prepared: PreparedData, config: ExperimentConfig, tuned: Tuned, threads: int, say: Progress
) -> Fitted:
    """Fit and calibrate the propensity model; its metrics on the validation and test windows."""
    say("fitting the propensity model")
    frame = prepared.propensity
    model = fit_propensity(
        frame, prepared.features, prepared.categorical, config, tuned.params, threads
    )
    test = window(frame, TEST)
    metrics = dict(tuned.metrics)
    metrics.update(evaluate_propensity(model, window(frame, VALID), config.horizon_days, "valid_"))
    scores = propensity_scores(model, test)
    metrics.update(evaluate_propensity(model, test, config.horizon_days, "test_", scores))
    return Fitted(model, test, tuned.params, metrics, held_out_scores=scores)


def _explain(fitted: Fitted, config: ExperimentConfig, out: Path, say: Progress) -> None:
    """Figures and mean |SHAP| per feature of the propensity model on its held-out rows."""
    say("explaining with SHAP")
    mean_abs_shap = _log_figures(
        fitted.propensity, fitted.held_out, config, out, fitted.held_out_scores
    )
    (out / "mean_abs_shap.json").write_text(json.dumps(mean_abs_shap, indent=2))


def _fit_next_best_action(
    fitted: Fitted,
    actions: pd.DataFrame,
    prepared: PreparedData,
    config: ExperimentConfig,
    threads: int,
    run_id: str,
    say: Progress,
) -> None:
    """Fit the next-best-action models on the logged contacts `actions`; add them, and their
    `nba_` test metrics, to `fitted`."""
    say("fitting the next-best-action models")
    model = fit_next_best_action(
        actions, prepared.features, prepared.categorical, config, dict(config.lightgbm), threads
    )
    action_metrics, _ = evaluate_next_best_action(
        model, window(actions, TEST), config.horizon_days, config.seed
    )
    fitted.metrics.update({f"nba_{k}": v for k, v in action_metrics.items()})
    model.metadata_ = {"feature_service": prepared.service, "run_id": run_id}
    fitted.actions = model


def _evaluation_rows(prepared: PreparedData, fitted: Fitted) -> PreparedData:
    """What is left to use once the models are fitted and evaluated: the test windows' rows
    of the accounts a costly comparison uses (`training.sampling.evaluation_sample`), and the
    held-out rows the logged models show as examples. The rest goes: simulating a large
    book's future again for the truth needs the memory the training sets held."""

    def sample(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        test = window(frame, TEST)
        return test[evaluation_sample(test["account_id"])].reset_index(drop=True)

    fitted.held_out = fitted.held_out.head(EXAMPLE_ROWS).copy()
    fitted.held_out_scores = None
    return replace(
        prepared, propensity=sample(prepared.propensity), actions=sample(prepared.actions)
    )


def release_memory() -> None:
    """Give the memory freed so far back to the system: glibc keeps freed heap pages for
    reuse, so without it a process that dropped gigabytes of frames still holds them while
    the next stage allocates its own (a no-op where there is no glibc)."""
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _write_cards(
    fitted: Fitted,
    config: ExperimentConfig,
    summary: dict[str, Any],
    features: list[str],
    out: Path,
) -> None:
    """The model cards (text in `training.card`) into `out`."""
    (out / "model_card.md").write_text(
        propensity_card(PROPENSITY_MODEL, config.horizon_days, summary, fitted.metrics, features)
    )
    if fitted.actions is not None:
        (out / "model_card_next_best_action.md").write_text(
            next_best_action_card(NEXT_BEST_ACTION_MODEL, summary, fitted.metrics, features)
        )


def _log_run(
    fitted: Fitted, prepared: PreparedData, config: ExperimentConfig, out: Path, say: Progress
) -> dict[str, str]:
    """Log parameters, finite metrics, the files in `out` and the models to the active run;
    the models' URIs by kind."""
    import mlflow

    from training.pyfunc import kind_of

    mlflow.log_params(_flat_params(config, fitted.params))
    mlflow.log_metrics({k: float(v) for k, v in fitted.metrics.items() if np.isfinite(v)})
    mlflow.log_artifacts(str(out))
    say("logging the models")
    features = prepared.features
    sample = fitted.held_out.head(EXAMPLE_ROWS)[features]
    logged: list[tuple[Any, pd.DataFrame, pd.DataFrame]] = [
        (fitted.propensity, sample, fitted.propensity.predict_frame(sample))
    ]
    if fitted.actions is not None and prepared.actions is not None:
        rows = prepared.actions.head(EXAMPLE_ROWS)[[*features, *ACTION_COLUMNS]]
        logged.append((fitted.actions, rows, fitted.actions.predict_value(rows)))
    uris = {}
    for model, example, output in logged:
        uris[kind_of(model).name] = _log_model(model, example, output)
    return uris


def _register_models(store: Store, fitted: Fitted, uris: dict[str, str]) -> dict[str, str]:
    """Register the run's models as a pair with their headline metrics; new versions by kind."""
    metrics = fitted.metrics
    headline = {
        "propensity": {
            k: v
            for k, v in metrics.items()
            if k in ("test_roc_auc", "test_brier", "cv_roc_auc_mean")
        },
        "next-best-action": {
            k: v for k, v in metrics.items() if k in ("nba_contact_roc_auc", "nba_policy_dr")
        },
    }
    return register_run(store, uris, headline)


def train_portfolio(
    folder: Path,
    config: ExperimentConfig,
    config_text: str,
    trials: int | None = None,
    timeout: float | None = None,
    tracking_uri: str | None = None,
    progress: Progress | None = None,
    truth_evaluation: Callable[..., dict[str, float]] | None = None,
) -> TrainResult:
    """The whole training run (see the module docstring); returns the run and versions."""
    import mlflow

    quiet_mlflow()
    say = progress or (lambda _: None)
    threads = get_settings().training.threads
    folder = Path(folder)
    prepared = prepare_data(folder, config, say)
    store = open_registry(tracking_uri)
    experiment = experiment_id(store, config.name)
    summary = _data_summary(prepared, folder, config)
    # the experiment is named for this run only: mlflow.set_experiment would also leave it
    # active for the rest of the process and in MLFLOW_EXPERIMENT_ID for its children
    with (
        mlflow.start_run(experiment_id=experiment, run_name=f"train-{summary['portfolio']}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        out = Path(tmp)
        (out / "experiment.yaml").write_text(config_text)
        mlflow.set_tags(_run_tags(prepared, summary))
        mlflow.log_params({k: v for k, v in summary.items() if k.endswith(_ROW_COUNTS)})
        if prepared.split is None:  # one as-of time (Taiwan): cross-validate, then fit
            fitted = _cross_validate_and_fit(prepared, config, threads, out, say)
        else:
            tuned = _tune_propensity(prepared, config, threads, trials, timeout, say)
            fitted = _fit_propensity(prepared, config, tuned, threads, say)
        _explain(fitted, config, out, say)
        run_id = run.info.run_id
        service = prepared.service
        fitted.propensity.metadata_ = {"feature_service": service, "run_id": run_id, **summary}
        if prepared.actions is not None and prepared.split is not None:
            _fit_next_best_action(fitted, prepared.actions, prepared, config, threads, run_id, say)
        if truth_evaluation is not None and prepared.split is not None:
            say("comparing with the simulator's truth")
            prepared = _evaluation_rows(prepared, fitted)
            release_memory()
            fitted.metrics.update(
                truth_evaluation(folder, prepared, fitted.propensity, fitted.actions, config)
            )
        _write_cards(fitted, config, summary, prepared.features, out)
        uris = _log_run(fitted, prepared, config, out, say)
        versions = _register_models(store, fitted, uris) if config.register_models else {}
    models = {"propensity": fitted.propensity, "next-best-action": fitted.actions}
    return TrainResult(run_id, fitted.metrics, versions, fitted.params, summary, models)
