"""Experiment settings: one YAML file per experiment, validated into pydantic models.

The file says which features and labels a run uses, how time is split, which LightGBM
parameters Optuna searches, how probabilities are calibrated and what a challenger must beat.
Unknown keys are errors (`extra="forbid"`), so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from training.audit import AuditThresholds


class ExperimentError(ValueError):
    """The experiment file cannot be used (missing, not YAML, or an invalid setting)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamRange(_Strict):
    """One searched LightGBM parameter: a float or int range (optionally log-scaled)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-scaled range needs low > 0")
        return self


class SplitSettings(_Strict):
    """Out-of-time split over as-of times: the last `test_periods` as-of times are the test
    window, the `valid_periods` before them the validation window (early stopping, tuning,
    calibration), everything earlier trains. A row's label looks `horizon_days` ahead, so rows
    whose label window would reach into the next window are dropped (the embargo)."""

    valid_periods: int = Field(default=6, ge=1)
    test_periods: int = Field(default=6, ge=1)


class TuningSettings(_Strict):
    trials: int = Field(default=20, ge=1)
    timeout_seconds: float | None = Field(default=None, gt=0)
    pruning_warmup_rounds: int = Field(default=30, ge=0)
    """Rounds before a trial may be pruned by Optuna's median pruner."""
    metric: Literal["log_loss", "roc_auc"] = "log_loss"


class PromotionSettings(_Strict):
    """A challenger replaces the champion only if better by `margin` on `metric`."""

    metric: Literal["roc_auc", "pr_auc", "log_loss", "brier", "ece", "capture_top_decile"] = (
        "roc_auc"
    )
    margin: float = Field(default=0.002, ge=0)
    action_metric: Literal["policy_dr", "policy_snips", "contact_roc_auc"] = "policy_dr"
    """For the next-best-action model: the off-policy value of its policy (net amount per
    contact) or the contactability AUC."""
    action_margin: float = Field(default=0.0, ge=0)
    require_audit: bool = True
    """The propensity challenger's fairness audit (`cobranza audit`) must have no flagged check;
    a flag blocks promotion unless overridden with a written reason."""


class ActionSettings(_Strict):
    """Costs of a contact by channel (currency units), used for net amounts collected."""

    contact_cost: dict[str, float] = Field(
        default_factory=lambda: {"call": 1.50, "sms": 0.05, "email": 0.01, "letter": 0.80}
    )


class SamplingSettings(_Strict):
    """Thinning of a large book's training and validation rows per account
    (`training.sampling`): each window keeps every k-th as-of time of each account, with the
    smallest k that fits the budget, and each kept row weighs k. `null` keeps every row. The
    test window is never thinned."""

    max_training_rows: int | None = Field(default=400_000, ge=1_000)
    """Propensity rows in the training window at most (snapshot rows)."""
    max_training_contacts: int | None = Field(default=600_000, ge=1_000)
    """Logged contacts in the training window at most (next-best-action models)."""


class ExperimentConfig(_Strict):
    """Everything that defines a training run besides the data and the seed."""

    name: str = "cobranza"
    feature_service: str = "debtor_scoring_v1"
    horizon_days: int = Field(default=30, ge=1, le=365)
    seed: int = 0
    split: SplitSettings = SplitSettings()
    cv_folds: int = Field(default=5, ge=2, le=20)
    """Folds of stratified cross-validation for data with a single as-of time."""
    calibration: Literal["isotonic", "sigmoid"] = "isotonic"
    """Isotonic fits any monotone shape but ties scores in steps; sigmoid keeps the ranking."""
    early_stopping: bool = True
    """Stop boosting when the validation window stops improving (else fit n_estimators)."""
    lightgbm: dict[str, Any] = Field(
        default_factory=lambda: {
            "n_estimators": 400,
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_child_samples": 50,
        }
    )
    """Fixed LightGBM parameters; searched ones override them."""
    monotone_increasing: list[str] = Field(
        default_factory=lambda: [
            *(f"payments_count_{w}d" for w in (7, 30, 90, 180, 365)),
            *(f"payments_sum_{w}d" for w in (7, 30, 90, 180, 365)),
            "paid_share_of_placed_balance",
            "debtor_payments_sum_90d",
            "debtor_payments_count_365d",
        ]
    )
    """Features whose increase may never lower the payment probability: a recent payment
    must not make an account look less likely to pay (LightGBM monotone constraints)."""
    monotone_decreasing: list[str] = Field(default_factory=lambda: ["days_since_last_payment"])
    search_space: dict[str, ParamRange] = Field(default_factory=dict)
    tuning: TuningSettings = TuningSettings()
    sampling: SamplingSettings = SamplingSettings()
    promotion: PromotionSettings = PromotionSettings()
    actions: ActionSettings = ActionSettings()
    audit: AuditThresholds = AuditThresholds()
    """What the fairness audit flags; `cobranza promote` blocks a flagged challenger."""
    register_models: bool = True
    """Register the models in the MLflow registry (a new version becomes `challenger`)."""
    train_next_best_action: bool = True


def load_experiment(path: Path | None) -> tuple[ExperimentConfig, str]:
    """The experiment in `path` (defaults when None) and its text, as logged with the run."""
    if path is None:
        config = ExperimentConfig()
        return config, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ExperimentError(
            f"{path}: cannot read the experiment file ({error.strerror})"
        ) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ExperimentError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{path}: the experiment must be a mapping of settings")
    try:
        return ExperimentConfig.model_validate(data), text
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc']) or '(top)'}: {item['msg']}"
            for item in error.errors()
        )
        raise ExperimentError(f"{path}: {problems}") from None
