"""The fitted models, as single objects that hold their preprocessing (scikit-learn style).

What MLflow stores is exactly one of these objects, so serving runs the same code that was
validated: `PropensityModel` (probability of a payment within the horizon, calibrated, and the
expected amount) and `NextBestActionModel` (contactability, and the expected net amount
collected for each action).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from training.explain import reasons_for_rows, split_contributions
from training.labels import ACTION_COLUMNS, CONTACT_CONTEXT, OFFER_NONE

ACTION_CATEGORICAL: tuple[str, ...] = ("channel", "hour_band", "offer")
EARLY_STOPPING_ROUNDS = 50


class MissingFeaturesError(ValueError):
    """Input rows lack columns the model was trained on."""


class FrameEncoder(BaseEstimator, TransformerMixin):
    """Selects the model's columns in a fixed order and gives categorical columns the
    categories seen in training (unseen values become missing), numbers as float."""

    def __init__(self, features: Sequence[str] = (), categorical: Sequence[str] = ()) -> None:
        self.features = features
        self.categorical = categorical

    def fit(self, X: pd.DataFrame, y: Any = None) -> FrameEncoder:
        self._check(X)
        self.features_ = list(self.features)
        self.categories_ = {
            name: sorted(pd.Series(X[name]).dropna().astype(str).unique())
            for name in self.categorical
        }
        return self

    def _check(self, X: pd.DataFrame, names: Sequence[str] | None = None) -> None:
        missing = [
            name for name in (self.features if names is None else names) if name not in X.columns
        ]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise MissingFeaturesError(f"{len(missing)} model input columns missing: {shown}")

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's columns: categoricals on the training categories, numbers as float
        (float32 columns stay float32, as a compact training set holds them)."""
        self._check(X)
        columns: dict[str, Any] = {}
        for name in self.features_:
            values = X[name]
            if name in self.categories_:
                columns[name] = _on_categories(values, self.categories_[name])
            elif values.dtype == np.float32:
                columns[name] = values
            else:
                columns[name] = pd.to_numeric(values, errors="coerce").astype(float)
        return pd.DataFrame(columns, index=X.index)

    def to_array(self, X: pd.DataFrame, leading: int | None = None) -> np.ndarray:
        """The same encoding as a float matrix for LightGBM's numpy path: categorical values
        become their category codes (what LightGBM does with pandas categoricals), unseen or
        missing values NaN. Several times faster than `transform` for small batches.
        `leading`: encode only the first columns (the rest are left for the caller to fill)."""
        names = self.features_ if leading is None else self.features_[:leading]
        self._check(X, names)
        matrix = np.full((len(X), len(self.features_)), np.nan, dtype=np.float64)
        for position, name in enumerate(names):
            values = X[name]
            if name in self.categories_:
                codes = _on_categories(
                    pd.Series(values, index=X.index), self.categories_[name]
                ).codes
                matrix[:, position] = np.where(codes < 0, np.nan, codes)
            else:
                matrix[:, position] = pd.to_numeric(values, errors="coerce")
        return matrix

    def codes_of(self, name: str, values: Sequence[Any]) -> np.ndarray:
        """Category codes (NaN when unseen) of a categorical column's values."""
        categories = self.categories_[name]
        codes = pd.Categorical([None if v is None else str(v) for v in values], categories).codes
        return np.where(codes < 0, np.nan, codes).astype(float)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.features_, dtype=object)


def _on_categories(values: pd.Series, categories: list[str]) -> pd.Categorical:
    """A column as a categorical on the given categories (others missing); a categorical
    column is recoded through its categories, not converted row by row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = pd.Index(values.cat.categories.astype(str))
        recode = pd.Index(categories).get_indexer(names)
        codes = values.cat.codes.to_numpy()
        mapped = np.where(codes < 0, -1, recode[np.maximum(codes, 0)] if len(recode) else -1)
        return pd.Categorical.from_codes(mapped, categories=categories)
    text = values.astype("string")
    return pd.Categorical(text, categories=categories)


def lightgbm_params(params: Mapping[str, Any], seed: int, threads: int) -> dict[str, Any]:
    """LightGBM settings with what makes a run repeatable: seed, fixed threads, determinism."""
    return {
        "n_estimators": 400,
        **params,
        "random_state": seed,
        "n_jobs": threads,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def build_classifier(params: Mapping[str, Any], seed: int = 0, threads: int = 2) -> Any:
    """A LightGBM classifier with the given parameters."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**lightgbm_params(params, seed, threads))


def build_regressor(
    params: Mapping[str, Any], seed: int = 0, threads: int = 2, objective: str = "regression"
) -> Any:
    """A LightGBM regressor (`tweedie` for amounts that are mostly zero)."""
    from lightgbm import LGBMRegressor

    return LGBMRegressor(**lightgbm_params(params, seed, threads), objective=objective)


def _fit_with_early_stopping(
    estimator: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    early_stopping: bool = True,
    weight: np.ndarray | None = None,
    weight_valid: np.ndarray | None = None,
) -> Any:
    """Fit on (X, y), stopped early on the validation rows; `weight`: the rows each training
    (and validation) row stands for, when the rows were thinned (`training.sampling`)."""
    import lightgbm

    if not early_stopping:
        return estimator.fit(X, y, sample_weight=weight)
    return estimator.fit(
        X,
        y,
        sample_weight=weight,
        eval_X=(X_valid,),
        eval_y=(y_valid,),
        eval_sample_weight=None if weight_valid is None else [weight_valid],
        callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )


def calibrate(
    classifier: Any,
    X_valid: pd.DataFrame,
    y_valid: np.ndarray,
    method: str,
    weight: np.ndarray | None = None,
) -> Any:
    """Isotonic or sigmoid calibration of a fitted classifier on held-out rows (weighted by
    the rows each one stands for, when thinned)."""
    import warnings

    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    calibrated = CalibratedClassifierCV(FrozenEstimator(classifier), method=method)
    with warnings.catch_warnings():
        # the weights are meant for the calibrator alone: the frozen classifier is not refitted
        warnings.filterwarnings("ignore", "Since FrozenEstimator does not appear to accept")
        return calibrated.fit(X_valid, y_valid, sample_weight=weight)


def _subset(weight: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if weight is None else weight[rows]


def contributions(booster: Any, X: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact TreeSHAP values (log-odds or raw units) per row and feature, and the base value,
    from LightGBM's own `pred_contrib` (identical to SHAP's TreeExplainer, and faster)."""

    threads = 1 if len(X) < SMALL_BATCH else 0
    return split_contributions(
        booster.predict(X, pred_contrib=True, num_threads=threads), X.shape[1]
    )


PREDICT_CHUNK = 100_000
"""Rows encoded and predicted at once when scoring a frame (bounds the encoded matrix)."""
ACTION_CHUNK = 20_000
"""Rows whose every candidate action is valued at once when choosing the best actions."""
SMALL_BATCH = 256
"""Below this many rows LightGBM predicts on one thread: starting threads costs more."""


def predict_booster(model: Any, X: np.ndarray, raw_score: bool = False) -> np.ndarray:
    """A fitted LightGBM estimator's prediction (probability or value, or the raw log-odds)
    on an encoded matrix."""
    if not len(X):
        return np.zeros(0)
    threads = 1 if len(X) < SMALL_BATCH else 0
    return np.asarray(
        model.booster_.predict(X, num_threads=threads, raw_score=raw_score), dtype=float
    )


def predict_calibrated(calibrated: Any, classifier: Any, X: np.ndarray) -> np.ndarray:
    """What `CalibratedClassifierCV.predict_proba(X)[:, 1]` gives for a binary LightGBM
    classifier, straight from the booster on an encoded matrix. Like scikit-learn, the
    calibrator maps the decision function (log-odds) when the estimator has one, else the
    probability; a test checks both paths agree."""
    if not len(X):
        return np.zeros(0)
    folds = calibrated.calibrated_classifiers_
    uses_log_odds = hasattr(folds[0].estimator, "decision_function")
    response = predict_booster(classifier, X, raw_score=uses_log_odds)
    probability = np.mean([_calibrator_map(fold.calibrators[0], response) for fold in folds], 0)
    return np.clip(probability, 0.0, 1.0)


def _calibrator_map(calibrator: Any, response: np.ndarray) -> np.ndarray:
    """A fitted calibrator's `predict`, computed directly for the two scikit-learn kinds
    (scikit-learn's input checks cost more than the map for a few rows): isotonic is a
    clipped linear interpolation between its thresholds, sigmoid is 1 / (1 + exp(a x + b))."""
    from sklearn.isotonic import IsotonicRegression

    if isinstance(calibrator, IsotonicRegression) and calibrator.out_of_bounds == "clip":
        return np.interp(response, calibrator.X_thresholds_, calibrator.y_thresholds_)
    if type(calibrator).__name__ == "_SigmoidCalibration":
        return 1.0 / (1.0 + np.exp(calibrator.a_ * response + calibrator.b_))
    return np.asarray(calibrator.predict(response), dtype=float)


class LightGBMModel(BaseEstimator):
    """The settings every cobranza model takes, stored as given (scikit-learn convention:
    no logic in `__init__`, learned attributes end in `_`)."""

    def __init__(
        self,
        features: Sequence[str] = (),
        categorical: Sequence[str] = (),
        params: Mapping[str, Any] | None = None,
        calibration: str = "isotonic",
        seed: int = 0,
        threads: int = 2,
        horizon_days: int = 30,
        early_stopping: bool = True,
    ) -> None:
        self.features = features
        self.categorical = categorical
        self.params = params
        self.calibration = calibration
        self.seed = seed
        self.threads = threads
        self.horizon_days = horizon_days
        self.early_stopping = early_stopping


class PropensityModel(LightGBMModel, ClassifierMixin):
    """Probability of any payment within the horizon (calibrated) and the expected amount.

    `fit(X, y, amount=..., eval_set=(X_valid, y_valid, amount_valid))`: the validation rows
    (a later time window) stop boosting early and fit the calibration; they are never
    training rows.
    """

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        amount: np.ndarray | None = None,
        eval_set: tuple[pd.DataFrame, np.ndarray, np.ndarray | None] | None = None,
        sample_weight: np.ndarray | None = None,
        eval_sample_weight: np.ndarray | None = None,
    ) -> PropensityModel:
        if eval_set is None:
            raise ValueError("PropensityModel.fit needs eval_set: a later validation window")
        X_valid, y_valid, amount_valid = eval_set
        self.encoder_ = FrameEncoder(self.features, self.categorical).fit(X)
        train, valid = self.encoder_.transform(X), self.encoder_.transform(X_valid)
        params = dict(self.params or {})
        weights = (sample_weight, eval_sample_weight)
        self.classifier_ = _fit_with_early_stopping(
            build_classifier(params, self.seed, self.threads),
            train,
            np.asarray(y),
            valid,
            np.asarray(y_valid),
            self.early_stopping,
            *weights,
        )
        self.calibrator_ = calibrate(
            self.classifier_, valid, np.asarray(y_valid), self.calibration, eval_sample_weight
        )
        self.amount_model_ = None
        if amount is not None and amount_valid is not None:
            self.amount_model_ = _fit_with_early_stopping(
                build_regressor(params, self.seed, self.threads, objective="tweedie"),
                train,
                np.asarray(amount, float),
                valid,
                np.asarray(amount_valid, float),
                self.early_stopping,
                *weights,
            )
        self.classes_ = np.array([0, 1])
        self.feature_names_ = list(self.features)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self._by_chunk(X, lambda encoded: self.predict_encoded(encoded)[0])
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        return self._by_chunk(X, lambda encoded: predict_booster(self.classifier_, encoded))

    def predict_amount(self, X: pd.DataFrame) -> np.ndarray:
        return self._by_chunk(X, lambda encoded: self.predict_encoded(encoded)[1])

    def _by_chunk(self, X: pd.DataFrame, predict: Any) -> np.ndarray:
        """`predict` of the encoded rows, `PREDICT_CHUNK` rows at a time: the encoded matrix
        of a whole test window of a large book would be gigabytes."""
        parts = [
            predict(self.encoder_.to_array(X.iloc[start : start + PREDICT_CHUNK]))
            for start in range(0, len(X), PREDICT_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def predict_encoded(self, encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated probability and expected amount for rows already encoded with
        `encoder_.to_array` (the serving fast path: LightGBM on a numpy matrix)."""
        p = predict_calibrated(self.calibrator_, self.classifier_, encoded)
        amount = (
            np.maximum(predict_booster(self.amount_model_, encoded), 0.0)
            if self.amount_model_ is not None
            else np.full(len(encoded), np.nan)
        )
        return p, amount

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """`p_payment_{h}d` and `expected_amount_{h}d` for each row."""
        both = self._by_chunk(X, lambda encoded: np.column_stack(self.predict_encoded(encoded)))
        p, amount = (both[:, 0], both[:, 1]) if len(both) else (np.zeros(0), np.zeros(0))
        h = self.horizon_days
        return pd.DataFrame({f"p_payment_{h}d": p, f"expected_amount_{h}d": amount}, index=X.index)

    def explain(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of the payment probability in log-odds (before calibration, which is
        monotone and keeps every direction), and the base value of each row."""
        return contributions(self.classifier_.booster_, self.encoder_.to_array(X))

    def reasons(self, X: pd.DataFrame, top: int = 3) -> list[list[dict[str, Any]]]:
        """Reason codes for each row: the `top` features pushing the payment probability up
        and down, each with its value, SHAP contribution and a readable sentence."""
        return self.reasons_encoded(self.encoder_.to_array(X), X, top)

    def reasons_encoded(
        self, encoded: np.ndarray, X: pd.DataFrame, top: int = 3
    ) -> list[list[dict[str, Any]]]:
        """Reason codes from encoded rows (`X` gives the values the sentences quote)."""
        values, _ = contributions(self.classifier_.booster_, encoded)
        rows = reasons_for_rows(values, X, self.feature_names_, top)
        return [[reason.as_dict() for reason in row] for row in rows]


def _goes_left(value: float, split: dict[str, Any]) -> bool:
    """The direction LightGBM's split sends `value` (its decision rules: categorical splits
    send listed categories left and missing or negative ones right; numerical ones treat
    missing as `default_left`, or as zero when the missing type is None)."""
    if split["decision_type"] == "==":
        if math.isnan(value) or value < 0:
            return False
        return int(value) in {int(c) for c in str(split["threshold"]).split("||")}
    missing = split["missing_type"]
    if missing == "None" and math.isnan(value):
        value = 0.0
    if (missing == "NaN" and math.isnan(value)) or (
        missing == "Zero" and (math.isnan(value) or value == 0.0)
    ):
        return bool(split["default_left"])
    return bool(value <= split["threshold"])


def equivalent_rows(
    booster: Any, columns: dict[int, np.ndarray], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Group `count` candidate rows that differ only in the given columns (position ->
    value per row) into classes the booster cannot tell apart: every split on one of those
    columns sends them the same way, so for any values of the other columns they land in
    the same leaves. Returns one representative row per class and each row's class."""
    splits: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        if "split_feature" not in node:
            return
        if node["split_feature"] in columns:
            splits.append(node)
        walk(node["left_child"])
        walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    signatures = [
        tuple(_goes_left(float(columns[s["split_feature"]][row]), s) for s in splits)
        for row in range(count)
    ]
    first: dict[tuple[bool, ...], int] = {}
    value_class = np.array([first.setdefault(sig, len(first)) for sig in signatures], dtype=int)
    representatives = np.array(
        [signatures.index(sig) for sig in first], dtype=int
    )  # first row of each class, in class order
    return representatives, value_class


def _repeat_rows(rows: np.ndarray, times: int) -> np.ndarray:
    """Each row `times` times in a row (`np.repeat(rows, times, axis=0)`, by broadcasting,
    which is faster)."""
    grid = np.empty((len(rows), times, rows.shape[1]))
    grid[:] = rows[:, None, :]
    return grid.reshape(-1, rows.shape[1])


def candidate_actions(
    logged: pd.DataFrame,
) -> tuple[pd.DataFrame, dict[tuple[str, str], list[int]]]:
    """The actions the policy may choose: each (channel, hour band) the logging policy used,
    with every offer it presented (kind and terms), and the local hours seen in each band
    (a chosen band is carried out at one of its logged hours, so off-policy estimates keep
    support)."""
    contexts = logged[["channel", "hour_band"]].dropna().drop_duplicates()
    presented = logged[logged["offer_matters"] & (logged["offer"] != OFFER_NONE)]
    terms = (
        presented[["offer", "discount_pct", "installments"]]
        .drop_duplicates()
        .sort_values(["offer", "discount_pct", "installments"])
    )
    none = pd.DataFrame({"offer": [OFFER_NONE], "discount_pct": [np.nan], "installments": [np.nan]})
    offers = pd.concat([none, terms], ignore_index=True)
    actions = contexts.merge(offers, how="cross").sort_values(["channel", "hour_band"])
    hours = {
        (str(c), str(b)): sorted(int(h) for h in group["local_hour"].unique())
        for (c, b), group in logged.dropna(subset=["hour_band"]).groupby(
            ["channel", "hour_band"], observed=True
        )
    }
    return actions.reset_index(drop=True), hours


class NextBestActionModel(LightGBMModel):
    """Expected net amount collected within the horizon for each action on an account.

    Three LightGBM models share the account features:
    - contactability: P(right-party contact | channel, hour band, weekday), calibrated;
    - value if reached: net amount when the debtor engaged, given the whole action (offers
      only reach a debtor who engaged, so only these rows show their effect);
    - value if not reached: net amount when the contact did not get through.
    Expected net = p x value_if_reached + (1 - p) x value_if_not_reached. Splitting on the
    contact keeps offers honest: the contract logs only offers that were presented, so a
    single model would credit offers with the value of having reached the debtor.
    """

    def _encoders(self, X: pd.DataFrame) -> None:
        base, cats = list(self.features), list(self.categorical)
        context_cats = [c for c in CONTACT_CONTEXT if c in ACTION_CATEGORICAL]
        action_cats = list(ACTION_CATEGORICAL)
        self.contact_encoder_ = FrameEncoder([*base, *CONTACT_CONTEXT], cats + context_cats).fit(X)
        self.value_encoder_ = FrameEncoder([*base, *ACTION_COLUMNS], cats + action_cats).fit(X)

    def fit(
        self,
        X: pd.DataFrame,
        reached: np.ndarray,
        net: np.ndarray,
        *,
        eval_set: tuple[pd.DataFrame, np.ndarray, np.ndarray],
        sample_weight: np.ndarray | None = None,
        eval_sample_weight: np.ndarray | None = None,
    ) -> NextBestActionModel:
        X_valid, reached_valid, net_valid = eval_set
        w, w_valid = sample_weight, eval_sample_weight
        reached, reached_valid = np.asarray(reached, int), np.asarray(reached_valid, int)
        net, net_valid = np.asarray(net, float), np.asarray(net_valid, float)
        self._encoders(X)
        params = dict(self.params or {})
        contact_train = self.contact_encoder_.transform(X)
        contact_valid = self.contact_encoder_.transform(X_valid)
        self.contact_model_ = _fit_with_early_stopping(
            build_classifier(params, self.seed, self.threads),
            contact_train,
            reached,
            contact_valid,
            reached_valid,
            self.early_stopping,
            w,
            w_valid,
        )
        self.contact_calibrator_ = calibrate(
            self.contact_model_, contact_valid, reached_valid, self.calibration, w_valid
        )
        hit, hit_valid = reached == 1, reached_valid == 1
        self.value_missed_ = _fit_with_early_stopping(
            build_regressor(params, self.seed, self.threads),
            contact_train[~hit],
            net[~hit],
            contact_valid[~hit_valid],
            net_valid[~hit_valid],
            self.early_stopping,
            _subset(w, ~hit),
            _subset(w_valid, ~hit_valid),
        )
        del contact_train, contact_valid  # one encoded copy of the rows at a time
        self.value_reached_ = _fit_with_early_stopping(
            build_regressor(params, self.seed, self.threads),
            self.value_encoder_.transform(X[hit]),
            net[hit],
            self.value_encoder_.transform(X_valid[hit_valid]),
            net_valid[hit_valid],
            self.early_stopping,
            _subset(w, hit),
            _subset(w_valid, hit_valid),
        )
        self.actions_, self.hours_ = candidate_actions(X)
        return self

    def predict_contact(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of a right-party contact for each row's channel, hour band
        and weekday."""
        parts = [
            predict_calibrated(
                self.contact_calibrator_,
                self.contact_model_,
                self.contact_encoder_.to_array(X.iloc[start : start + PREDICT_CHUNK]),
            )
            for start in range(0, len(X), PREDICT_CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def predict_value(self, X: pd.DataFrame) -> pd.DataFrame:
        """For rows carrying an action: `p_contact`, `value_if_reached`, `value_if_missed`,
        `expected_net` and `uplift` (expected net gained by the contact getting through)."""
        if len(X) > PREDICT_CHUNK:  # in chunks: a large book's encoded rows are gigabytes
            return pd.concat(
                [
                    self.predict_value(X.iloc[start : start + PREDICT_CHUNK])
                    for start in range(0, len(X), PREDICT_CHUNK)
                ]
            )
        contact = self.contact_encoder_.to_array(X)
        p = predict_calibrated(self.contact_calibrator_, self.contact_model_, contact)
        reached = predict_booster(self.value_reached_, self.value_encoder_.to_array(X))
        missed = predict_booster(self.value_missed_, contact)
        return pd.DataFrame(
            {
                "p_contact": p,
                "value_if_reached": reached,
                "value_if_missed": missed,
                "expected_net": p * reached + (1 - p) * missed,
                "uplift": p * (reached - missed),
            },
            index=X.index,
        )

    def encode_accounts(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Account rows encoded for the contact and the value models, action columns empty
        (`action_matrix` fills them for every candidate action)."""
        return (
            self.contact_encoder_.to_array(X, leading=len(self.features)),
            self.value_encoder_.to_array(X, leading=len(self.features)),
        )

    def action_matrix(
        self,
        contact_rows: np.ndarray,
        value_rows: np.ndarray,
        weekday: np.ndarray | int,
        chunk_cells: int = 16_384,
    ) -> dict[str, np.ndarray]:
        """Predicted values of every candidate action (`actions_`, in order) for every encoded
        account row: `p_contact`, `value_if_reached`, `value_if_missed`, `expected_net`, each a
        (rows x actions) matrix. Contactability and the value if missed depend only on the
        (channel, hour band) context, so they are predicted once per context; rows go through
        in chunks of about `chunk_cells` predictions: small enough to stay in the CPU cache (ten
        times faster than one big grid at 100,000 accounts) and to bound memory. Actions the
        value model cannot tell apart (every split on an action column sends them the same
        way) are predicted once."""
        n, k = len(contact_rows), len(self.actions_)
        days = np.broadcast_to(np.asarray(weekday, dtype=float), (n,))
        plan = self._action_plan()
        context_of_action, contact_columns, value_columns = (
            plan["context_of_action"],
            plan["contact_columns"],
            plan["value_columns"],
        )
        c = plan["contexts"]
        representatives, value_class = plan["value_representatives"], plan["value_class"]
        distinct = len(representatives)
        out = {
            name: np.empty((n, k))
            for name in ("p_contact", "value_if_reached", "value_if_missed", "expected_net")
        }
        step = max(1, chunk_cells // k)
        for start in range(0, n, step):
            rows = slice(start, min(start + step, n))
            size = rows.stop - rows.start
            grid = _repeat_rows(contact_rows[rows], c)
            for position, values in contact_columns.items():
                grid[:, position] = np.tile(values, size)
            grid[:, self.contact_encoder_.features_.index("weekday")] = np.repeat(days[rows], c)
            p = predict_calibrated(self.contact_calibrator_, self.contact_model_, grid)
            p = p.reshape(size, c)
            missed = predict_booster(self.value_missed_, grid).reshape(size, c)
            grid = _repeat_rows(value_rows[rows], distinct)
            for position, values in value_columns.items():
                grid[:, position] = np.tile(values[representatives], size)
            grid[:, self.value_encoder_.features_.index("weekday")] = np.repeat(
                days[rows], distinct
            )
            reached = predict_booster(self.value_reached_, grid).reshape(size, distinct)
            reached = reached[:, value_class]
            p_action, missed_action = p[:, context_of_action], missed[:, context_of_action]
            out["p_contact"][rows] = p_action
            out["value_if_reached"][rows] = reached
            out["value_if_missed"][rows] = missed_action
            out["expected_net"][rows] = p_action * reached + (1 - p_action) * missed_action
        return out

    def action_columns(self) -> dict[str, np.ndarray]:
        """The candidate actions' columns as arrays (`channel`, `hour_band`, `offer` as text;
        `discount_pct`, `installments` as numbers)."""
        columns: dict[str, np.ndarray] = self._action_plan()["columns"]
        return columns

    def _action_plan(self) -> dict[str, Any]:
        """What `action_matrix` needs about the candidate actions, worked out once per
        loaded model: the (channel, hour band) context of each action and the encoded
        action columns of both grids."""
        cached = getattr(self, "_plan", None)
        if cached is not None and cached["actions"] is self.actions_:
            return cached
        pairs = self.actions_[["channel", "hour_band"]].astype(str)
        contexts = pairs.drop_duplicates().reset_index(drop=True)
        context_of_action = (
            pairs.merge(contexts.reset_index(), on=["channel", "hour_band"], how="left")["index"]
            .to_numpy()
            .astype(int)
        )
        value_columns = self._action_columns(self.value_encoder_, self.actions_)
        representatives, value_class = equivalent_rows(
            self.value_reached_.booster_, value_columns, len(self.actions_)
        )
        plan = {
            "actions": self.actions_,
            "contexts": len(contexts),
            "context_of_action": context_of_action,
            "contact_columns": self._action_columns(self.contact_encoder_, contexts),
            "value_columns": value_columns,
            "value_representatives": representatives,
            "value_class": value_class,
            "columns": {
                name: self.actions_[name].to_numpy(float)
                if name in ("discount_pct", "installments")
                else self.actions_[name].astype(str).to_numpy()
                for name in ("channel", "hour_band", "offer", "discount_pct", "installments")
            },
        }
        self._plan = plan
        return plan

    @staticmethod
    def _action_columns(encoder: FrameEncoder, table: pd.DataFrame) -> dict[int, np.ndarray]:
        """Encoder column position -> encoded values of the table's action columns."""
        columns = {}
        for name in table.columns:
            if name == "weekday" or name not in encoder.features_:
                continue
            values = table[name].tolist()
            columns[encoder.features_.index(name)] = (
                encoder.codes_of(name, values)
                if name in encoder.categories_
                else pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
            )
        return columns

    def action_values(self, X: pd.DataFrame, weekday: np.ndarray | int) -> pd.DataFrame:
        """Every candidate action for every row: `row` (position in X), the action columns
        and the predicted values (long format: rows x actions lines)."""
        n, k = len(X), len(self.actions_)
        matrix = self.action_matrix(*self.encode_accounts(X), weekday)
        days = np.broadcast_to(np.asarray(weekday), (n,))
        tiled = self.actions_.iloc[np.tile(np.arange(k), n)].reset_index(drop=True)
        values = {name: matrix[name].ravel() for name in matrix}
        values["uplift"] = values["p_contact"] * (
            values["value_if_reached"] - values["value_if_missed"]
        )
        return pd.concat(
            [pd.DataFrame({"row": np.repeat(np.arange(n), k)}), tiled, pd.DataFrame(values)],
            axis=1,
        ).assign(weekday=np.repeat(days, k))

    def best_actions(
        self,
        X: pd.DataFrame,
        weekday: np.ndarray | int,
        blocked_channels: Mapping[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """The action with the highest expected net for each row of X (one row each, in
        order); `blocked_channels` maps a channel to a boolean array of rows where it may not
        be used (opt-outs, call caps). Rows go through `ACTION_CHUNK` at a time: the value
        of every action for every row of a large book would not fit in memory."""
        n = len(X)
        days = np.broadcast_to(np.asarray(weekday), (n,))
        blocked = {name: np.asarray(rows, bool) for name, rows in (blocked_channels or {}).items()}
        parts = []
        for start in range(0, max(n, 1), ACTION_CHUNK):
            rows = slice(start, min(start + ACTION_CHUNK, n))
            matrix = self.action_matrix(*self.encode_accounts(X.iloc[rows]), days[rows])
            chosen = self.best_of_matrix(
                matrix, days[rows], {name: b[rows] for name, b in blocked.items()}
            )
            parts.append(chosen.assign(row=chosen["row"] + start))
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]

    def best_choice(
        self,
        matrix: dict[str, np.ndarray],
        blocked_channels: Mapping[str, np.ndarray] | None = None,
        channel: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Position in `actions_` of each row's best action (the first on ties; only the
        given channel's actions when `channel` is set), and the expected net matrix with
        blocked actions at minus infinity."""
        expected = matrix["expected_net"].copy()
        channels = self.action_columns()["channel"]
        for name, blocked in (blocked_channels or {}).items():
            expected[np.ix_(np.asarray(blocked, bool), channels == name)] = -np.inf
        if channel is not None:
            expected[:, channels != channel] = -np.inf
        choice = expected.argmax(axis=1) if len(expected) else np.zeros(0, dtype=int)
        return choice, expected

    def best_of_matrix(
        self,
        matrix: dict[str, np.ndarray],
        weekday: np.ndarray | int,
        blocked_channels: Mapping[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """`best_actions` from an `action_matrix`."""
        choice, expected = self.best_choice(matrix, blocked_channels)
        n = len(choice)
        rows = np.arange(n)
        chosen = {name: matrix[name][rows, choice] for name in matrix}
        chosen["expected_net"] = expected[rows, choice]
        chosen["uplift"] = chosen["p_contact"] * (
            chosen["value_if_reached"] - chosen["value_if_missed"]
        )
        return pd.concat(
            [
                pd.DataFrame({"row": rows}),
                self.actions_.iloc[choice].reset_index(drop=True),
                pd.DataFrame(chosen),
            ],
            axis=1,
        ).assign(weekday=np.broadcast_to(np.asarray(weekday), (n,)))

    def explain(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of the contactability log-odds for rows carrying a contact context."""
        return contributions(self.contact_model_.booster_, self.contact_encoder_.transform(X))
