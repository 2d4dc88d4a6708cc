"""Request and response models of the scoring service (pydantic, with examples for OpenAPI)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)

from data_contracts.schemas import MAX_ID_LENGTH

ID_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"
"""An id as the contracts read it: no control characters, no spaces around it."""
AccountId = Annotated[
    str,
    Strict(),
    Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        pattern=ID_PATTERN,
        description=f"An account id: text of 1 to {MAX_ID_LENGTH} characters, compared exactly.",
        examples=["ACC-000123"],
    ),
]
"""The one definition of an account id, in bodies and paths. Strict: a JSON number is
refused (account numbers are text: `"007"` and `7` are different accounts)."""
ModelVersion = Annotated[int, Strict(), Field(ge=1, le=2**31 - 1, description="A model version.")]
Count = Annotated[int, Strict(), Field(ge=0)]
Flag = Annotated[bool, Strict()]


def _as_written(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A value read from a path segment must be written as it reads back: `1`, never `1.0`,
    `+1`, `01`, ` 1` or `1_0`."""
    result = handler(value)
    if isinstance(value, str) and str(result) != value:
        raise ValueError("not written in its plain form (digits only for a number)")
    return result


AccountIdInPath = AccountId
"""An account id in a path (always text)."""
ModelVersionInPath = Annotated[ModelVersion, Strict(False), WrapValidator(_as_written)]


def _finite(value: float | int | str | None) -> float | int | str | None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("a feature value must be a finite number (or null when unknown)")
    return value


FeatureValue = Annotated[float | int | str | None, AfterValidator(_finite)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountFeatures(_Strict):
    """A full feature payload for an account the online store does not know (or should not
    be asked about): the feature service's columns by name; missing ones count as unknown."""

    account_id: AccountId
    features: dict[str, FeatureValue] = Field(
        description="Feature name -> value, as in the feature service `debtor_scoring_v1`."
    )


class ScoreRequest(_Strict):
    """Either account ids (features from the online store) or full feature payloads."""

    account_ids: list[AccountId] | None = Field(
        default=None, description="Accounts to score from the online store (at most 1,000)."
    )
    accounts: list[AccountFeatures] | None = Field(
        default=None, description="Accounts with their features (at most 1,000)."
    )
    reasons: Flag = Field(default=True, description="Include reason codes for each score.")

    @model_validator(mode="after")
    def _one_source(self) -> ScoreRequest:
        if (self.account_ids is None) == (self.accounts is None):
            raise ValueError("give either account_ids or accounts, not both and not neither")
        if not (self.account_ids or self.accounts):
            raise ValueError("the list of accounts is empty")
        return self

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"account_ids": ["1", "2", "3"], "reasons": True}]},
    )


class Reason(BaseModel):
    feature: str
    value: float | int | str | None
    contribution: float = Field(description="SHAP value in log-odds of paying.")
    direction: Literal["up", "down"]
    sentence: str


class Action(BaseModel):
    channel: str
    hour_band: str
    local_window: str = Field(description="Contact window in the debtor's local time, HH:MM-HH:MM.")
    offer: str = Field(description="none, discount or payment_plan.")
    discount_pct: float | None = None
    installments: int | None = None
    p_contact: float = Field(description="Probability of a right-party contact.")
    expected_net: float = Field(description="Expected net amount collected within 30 days.")


SCORE_ITEM_EXAMPLE: dict[str, Any] = {
    "account_id": "1",
    "status": "scored",
    "detail": None,
    "p_payment_30d": 0.061,
    "expected_amount_30d": 131.24,
    "best_action": {
        "channel": "call",
        "hour_band": "evening",
        "local_window": "17:00-21:00",
        "offer": "discount",
        "discount_pct": 10.0,
        "installments": None,
        "p_contact": 0.14,
        "expected_net": 143.56,
    },
    "reasons": [
        {
            "feature": "promises_broken_90d",
            "value": 3,
            "contribution": -0.41,
            "direction": "down",
            "sentence": "3 promises broken in the last 90 days",
        }
    ],
}


class ScoreItem(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [SCORE_ITEM_EXAMPLE]})

    account_id: str
    status: Literal["scored", "closed", "unknown_account"] = Field(
        description=(
            "scored; closed (settled, paid in full, recalled, ...: never scored, `detail` says "
            "how and when, e.g. `closed: settled 2026-01-04`); or unknown_account."
        )
    )
    detail: str | None = None
    p_payment_30d: float | None = None
    expected_amount_30d: float | None = None
    best_action: Action | None = None
    reasons: list[Reason] = []


class ScoreResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        SCORE_ITEM_EXAMPLE,
                        {
                            "account_id": "42",
                            "status": "closed",
                            "detail": "closed: settled 2026-01-04",
                        },
                        {
                            "account_id": "99",
                            "status": "unknown_account",
                            "detail": "no features for this account in the online store",
                        },
                    ],
                    "models": {"cobranza-propensity": "3", "cobranza-next-best-action": "2"},
                }
            ]
        }
    )

    items: list[ScoreItem]
    models: dict[str, str] = Field(description="Registered model name -> version used.")


class ModelInfo(BaseModel):
    name: str
    alias: str
    version: str
    run_id: str | None = None
    feature_service: str | None = None


class ModelsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "models": [
                        {
                            "name": "cobranza-propensity",
                            "alias": "champion",
                            "version": "3",
                            "run_id": "2632c9a648d34b1cb225f6880dedf6dc",
                            "feature_service": "debtor_scoring_v1",
                        }
                    ]
                }
            ]
        }
    )

    models: list[ModelInfo]


class Health(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "detail": {
                        "models": {"cobranza-propensity": "3"},
                        "features": "20261129T080743429590Z-21729.db",
                        "reasons_precomputed": "5000/5000",
                    },
                }
            ]
        }
    )

    status: str
    detail: dict[str, Any] = {}


class Capacity(_Strict):
    """Contacts the operation can make that day, per channel."""

    call: Count = Field(default=0, description="Call attempts the agents can make.")
    sms: Count = 0
    email: Count = 0
    letter: Count = 0


class WorklistRequest(_Strict):
    date: dt.date = Field(
        ge=dt.date(1970, 1, 1),
        le=dt.date(2199, 12, 31),
        description="The day to plan, in each debtor's local calendar.",
    )
    capacity: Capacity
    account_ids: list[AccountId] | None = Field(
        default=None,
        max_length=1_000_000,
        description="Accounts to consider [default: every account in the store].",
    )
    limit: Annotated[int, Strict()] = Field(
        default=1000, ge=1, le=100_000, description="Most items returned."
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"date": "2026-01-05", "capacity": {"call": 200, "sms": 500, "email": 1000}}
            ]
        },
    )


class WorklistItem(BaseModel):
    rank: int
    account_id: str
    kind: Literal["best_action", "promise_reminder", "broken_promise", "plan_check"]
    channel: str
    local_window: str = Field(description="When to contact, HH:MM-HH:MM in `timezone`.")
    timezone: str
    offer: str | None = None
    discount_pct: float | None = None
    installments: int | None = None
    expected_net: float | None = None
    detail: str | None = None


class Excluded(BaseModel):
    account_id: str
    reason: str = Field(
        description=(
            "e.g. `blocked: call cap reached until 2026-11-25`, or `closed: settled 2026-01-04` "
            "for an account no longer worked (never scored)."
        )
    )


class WorklistResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "date": "2026-01-06",
                    "items": [
                        {
                            "rank": 1,
                            "account_id": "1178",
                            "kind": "promise_reminder",
                            "channel": "sms",
                            "local_window": "12:00-17:00",
                            "timezone": "America/New_York",
                            "detail": "1,889.60 due 2026-01-08",
                        },
                        {
                            "rank": 2,
                            "account_id": "2187",
                            "kind": "best_action",
                            "channel": "call",
                            "local_window": "12:00-17:00",
                            "timezone": "America/Los_Angeles",
                            "offer": "discount",
                            "discount_pct": 10.0,
                            "expected_net": 1777.12,
                        },
                    ],
                    "excluded": [
                        {"account_id": "12", "reason": "closed: settled 2026-01-04"},
                        {
                            "account_id": "70",
                            "reason": "blocked: call cap reached until 2026-01-08",
                        },
                    ],
                    "counts": {
                        "requested": 5000,
                        "closed": 310,
                        "unknown_or_settled": 0,
                        "considered": 4690,
                        "scheduled": 1050,
                        "blocked": 220,
                    },
                    "models": {"cobranza-next-best-action": "2"},
                }
            ]
        }
    )

    date: dt.date
    items: list[WorklistItem]
    excluded: list[Excluded]
    counts: dict[str, int]
    models: dict[str, str]
