"""The fitted models, as single objects that hold their preprocessing (scikit-learn style).

What MLflow stores is exactly one of these objects, so serving runs the same code that was
validated: `PropensityModel` (probability of a payment within the horizon, calibrated, and the
expected amount) and `NextBestActionModel` (contactability, and the expected net amount
collected for each action).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

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

    def _check(self, X: pd.DataFrame) -> None:
        missing = [name for name in self.features if name not in X.columns]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise MissingFeaturesError(f"{len(missing)} model input columns missing: {shown}")

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check(X)
        columns: dict[str, Any] = {}
        for name in self.features_:
            values = X[name]
            if name in self.categories_:
                text = pd.Series(values, index=X.index).astype("string")
                columns[name] = pd.Categorical(text, categories=self.categories_[name])
            else:
                columns[name] = pd.to_numeric(values, errors="coerce").astype(float)
        return pd.DataFrame(columns, index=X.index)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.features_, dtype=object)


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
) -> Any:
    import lightgbm

    if not early_stopping:
        return estimator.fit(X, y)
    return estimator.fit(
        X,
        y,
        eval_X=(X_valid,),
        eval_y=(y_valid,),
        callbacks=[lightgbm.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )


def calibrate(classifier: Any, X_valid: pd.DataFrame, y_valid: np.ndarray, method: str) -> Any:
    """Isotonic or sigmoid calibration of a fitted classifier on held-out rows."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    return CalibratedClassifierCV(FrozenEstimator(classifier), method=method).fit(X_valid, y_valid)


def contributions(booster: Any, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Exact TreeSHAP values (log-odds or raw units) per row and feature, and the base value,
    from LightGBM's own `pred_contrib` (identical to SHAP's TreeExplainer, and faster)."""
    from training.explain import split_contributions

    return split_contributions(booster.predict(X, pred_contrib=True), X.shape[1])


class PropensityModel(BaseEstimator, ClassifierMixin):
    """Probability of any payment within the horizon (calibrated) and the expected amount.

    `fit(X, y, amount=..., eval_set=(X_valid, y_valid, amount_valid))`: the validation rows
    (a later time window) stop boosting early and fit the calibration; they are never
    training rows.
    """

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

    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        amount: np.ndarray | None = None,
        eval_set: tuple[pd.DataFrame, np.ndarray, np.ndarray | None] | None = None,
    ) -> PropensityModel:
        if eval_set is None:
            raise ValueError("PropensityModel.fit needs eval_set: a later validation window")
        X_valid, y_valid, amount_valid = eval_set
        self.encoder_ = FrameEncoder(self.features, self.categorical).fit(X)
        train, valid = self.encoder_.transform(X), self.encoder_.transform(X_valid)
        params = dict(self.params or {})
        self.classifier_ = _fit_with_early_stopping(
            build_classifier(params, self.seed, self.threads),
            train,
            np.asarray(y),
            valid,
            np.asarray(y_valid),
            self.early_stopping,
        )
        self.calibrator_ = calibrate(self.classifier_, valid, np.asarray(y_valid), self.calibration)
        self.amount_model_ = None
        if amount is not None and amount_valid is not None:
            self.amount_model_ = _fit_with_early_stopping(
                build_regressor(params, self.seed, self.threads, objective="tweedie"),
                train,
                np.asarray(amount, float),
                valid,
                np.asarray(amount_valid, float),
                self.early_stopping,
            )
        self.classes_ = np.array([0, 1])
        self.feature_names_ = list(self.features)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibrator_.predict_proba(self.encoder_.transform(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def predict_uncalibrated(self, X: pd.DataFrame) -> np.ndarray:
        return self.classifier_.predict_proba(self.encoder_.transform(X))[:, 1]

    def predict_amount(self, X: pd.DataFrame) -> np.ndarray:
        if self.amount_model_ is None:
            return np.full(len(X), np.nan)
        return np.maximum(self.amount_model_.predict(self.encoder_.transform(X)), 0.0)

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """`p_payment_{h}d` and `expected_amount_{h}d` for each row."""
        encoded = self.encoder_.transform(X)
        p = self.calibrator_.predict_proba(encoded)[:, 1]
        amount = (
            np.maximum(self.amount_model_.predict(encoded), 0.0)
            if self.amount_model_ is not None
            else np.full(len(X), np.nan)
        )
        h = self.horizon_days
        return pd.DataFrame({f"p_payment_{h}d": p, f"expected_amount_{h}d": amount}, index=X.index)

    def explain(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of the payment probability in log-odds (before calibration, which is
        monotone and keeps every direction), and the base value of each row."""
        return contributions(self.classifier_.booster_, self.encoder_.transform(X))

    def reasons(self, X: pd.DataFrame, top: int = 3) -> list[list[dict[str, Any]]]:
        """Reason codes for each row: the `top` features pushing the payment probability up
        and down, each with its value, SHAP contribution and a readable sentence."""
        from training.explain import reasons_for_rows

        values, _ = self.explain(X)
        rows = reasons_for_rows(values, X, self.feature_names_, top)
        return [[reason.as_dict() for reason in row] for row in rows]


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


class NextBestActionModel(BaseEstimator):
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

    def __init__(
        self,
        features: Sequence[str] = (),
        categorical: Sequence[str] = (),
        params: Mapping[str, Any] | None = None,
        calibration: str = "isotonic",
        seed: int = 0,
        threads: int = 2,
        horizon_days: int = 30,
    ) -> None:
        self.features = features
        self.categorical = categorical
        self.params = params
        self.calibration = calibration
        self.seed = seed
        self.threads = threads
        self.horizon_days = horizon_days

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
    ) -> NextBestActionModel:
        X_valid, reached_valid, net_valid = eval_set
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
        )
        self.contact_calibrator_ = calibrate(
            self.contact_model_, contact_valid, reached_valid, self.calibration
        )
        value_train = self.value_encoder_.transform(X)
        value_valid = self.value_encoder_.transform(X_valid)
        hit, hit_valid = reached == 1, reached_valid == 1
        self.value_reached_ = _fit_with_early_stopping(
            build_regressor(params, self.seed, self.threads),
            value_train[hit],
            net[hit],
            value_valid[hit_valid],
            net_valid[hit_valid],
        )
        self.value_missed_ = _fit_with_early_stopping(
            build_regressor(params, self.seed, self.threads),
            contact_train[~hit],
            net[~hit],
            contact_valid[~hit_valid],
            net_valid[~hit_valid],
        )
        self.actions_, self.hours_ = candidate_actions(X)
        return self

    def predict_contact(self, X: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of a right-party contact for each row's channel, hour band
        and weekday."""
        return self.contact_calibrator_.predict_proba(self.contact_encoder_.transform(X))[:, 1]

    def predict_value(self, X: pd.DataFrame) -> pd.DataFrame:
        """For rows carrying an action: `p_contact`, `value_if_reached`, `value_if_missed`,
        `expected_net` and `uplift` (expected net gained by the contact getting through)."""
        p = self.predict_contact(X)
        reached = self.value_reached_.predict(self.value_encoder_.transform(X))
        missed = self.value_missed_.predict(self.contact_encoder_.transform(X))
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

    def action_values(
        self, X: pd.DataFrame, weekday: np.ndarray | int, actions: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Every candidate action for every row: `row` (position in X), the action columns
        and the predicted values."""
        actions = self.actions_ if actions is None else actions
        n, k = len(X), len(actions)
        base = X.iloc[np.repeat(np.arange(n), k)].reset_index(drop=True)
        tiled = actions.iloc[np.tile(np.arange(k), n)].reset_index(drop=True)
        days = np.broadcast_to(np.asarray(weekday), (n,))
        grid = pd.concat(
            [base.drop(columns=[c for c in ACTION_COLUMNS if c in base.columns]), tiled], axis=1
        ).assign(weekday=np.repeat(days, k))
        values = self.predict_value(grid)
        return pd.concat(
            [pd.DataFrame({"row": np.repeat(np.arange(n), k)}), tiled, values], axis=1
        ).assign(weekday=np.repeat(days, k))

    def best_actions(
        self,
        X: pd.DataFrame,
        weekday: np.ndarray | int,
        blocked_channels: Mapping[str, np.ndarray] | None = None,
    ) -> pd.DataFrame:
        """The action with the highest expected net for each row of X (one row each, in
        order); `blocked_channels` maps a channel to a boolean array of rows where it may not
        be used (opt-outs, call caps)."""
        values = self.action_values(X, weekday)
        if blocked_channels:
            for channel, blocked in blocked_channels.items():
                mask = (values["channel"] == channel).to_numpy() & np.asarray(blocked)[
                    values["row"].to_numpy()
                ]
                values.loc[mask, "expected_net"] = -np.inf
        best = values.loc[values.groupby("row")["expected_net"].idxmax().to_numpy()]
        return best.reset_index(drop=True)

    def explain(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values of the contactability log-odds for rows carrying a contact context."""
        return contributions(self.contact_model_.booster_, self.contact_encoder_.transform(X))
