"""The simulator's hidden behaviour model: the truth that only benchmarks may read.

For any account state and any action (channel, local hour, weekday, offer or none) it gives the
true probability of a right-party contact, of a payment within 30 days, and the expected amount
collected in those 30 days. The simulator draws every outcome from these same functions, so the
figures are exact for the simulated world; models never see them.

Conventions:
- "Right-party contact" means the debtor was reached and engaged: answered a call, replied to or
  clicked an SMS or email, or answered a letter by calling in.
- A contact that reaches the debtor leads to a commitment (a promise to pay, a payment by link or
  an accepted offer) with `p_commit`; a commitment is honoured with `p_keep`.
- Without any contact the debtor may still pay by themselves ("self-cure") within 30 days with
  `p_self_cure_30d`. The 30-day figures assume no other contact in the window, and treat
  self-cure and the contact's effect as independent.
- Every function is pure numpy over arrays of equal length (one element per account-action).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from data_contracts.contact_rules import Limits

CHANNEL_CODES: tuple[str, ...] = ("call", "sms", "email", "letter")
OFFER_CODES: tuple[str, ...] = ("none", "discount", "payment_plan")
SEGMENTS: tuple[str, ...] = ("daytime", "evening", "digital", "hard_to_reach")
EMAIL_STATUS: tuple[str, ...] = ("none", "valid", "invalid")
SIM_PRODUCTS: tuple[str, ...] = (
    "credit_card",
    "personal_loan",
    "auto_loan",
    "student_loan",
    "retail_card",
    "telecom",
    "utility",
    "medical",
)
# local start hours 8:00 .. 20:00 under the default contact rules (calls end by 21:00)
CONTACT_HOURS: np.ndarray = np.arange(Limits().earliest_hour, Limits().latest_hour)
DISCOUNT_CHOICES: tuple[float, ...] = (10.0, 20.0, 30.0)
INSTALLMENT_CHOICES: tuple[int, ...] = (3, 6, 12)

# Columns of a state frame, as used by every function below.
STATE_COLUMNS: tuple[str, ...] = (
    "balance",
    "original_balance",
    "days_past_due",
    "payments_90d",
    "broken_promises_90d",
    "contacts_7d",
    "pre_placement_payments",
    "product_code",
    "willingness",
    "ability",
    "segment_code",
    "phone_valid",
    "email_status_code",
    "address_valid",
)
# Columns of an action frame: the action as codes (training names it in contract terms).
ENCODED_ACTION_COLUMNS: tuple[str, ...] = (
    "channel_code",
    "local_hour",
    "weekday",
    "offer_code",
    "discount_pct",
    "installments",
)


def _default_reach() -> list[list[float]]:
    # rows: segments (daytime, evening, digital, hard_to_reach); columns: call, sms, email, letter
    return [
        [0.16, 0.06, 0.04, 0.05],
        [0.12, 0.08, 0.05, 0.05],
        [0.05, 0.20, 0.15, 0.03],
        [0.04, 0.03, 0.02, 0.06],
    ]


def _default_hour_profile() -> list[list[float]]:
    # multiplier on call reach per local hour 8..20, by segment
    return [
        [1.0, 1.3, 1.4, 1.4, 1.2, 1.2, 1.3, 1.3, 1.1, 0.9, 0.7, 0.6, 0.5],
        [0.4, 0.4, 0.4, 0.4, 0.5, 0.5, 0.5, 0.6, 0.9, 1.8, 2.4, 2.6, 2.2],
        [0.8, 0.9, 1.0, 1.0, 1.2, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.2, 1.0],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ]


def _default_weekday_profile() -> list[list[float]]:
    # multiplier on call and SMS reach per weekday Monday..Sunday, by segment
    return [
        [1.1, 1.0, 1.0, 1.0, 0.9, 0.8, 0.6],
        [0.9, 0.9, 0.9, 0.9, 0.8, 1.5, 1.3],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.0],
    ]


@dataclass(frozen=True)
class BehaviourParams:
    """Coefficients of the behaviour model (written to `truth/params.json`)."""

    intercept: float = -1.0
    ability_weight: float = 1.4
    log_balance_weight: float = -0.35
    days_past_due_weight: float = -0.55  # per year past due
    recent_payment_weight: float = 0.6
    pre_placement_payment_weight: float = 0.15
    broken_promise_weight: float = -0.5
    product_effect: tuple[float, ...] = (0.0, -0.1, -0.3, -0.2, 0.1, 0.2, 0.3, -0.2)
    channel_conversion: tuple[float, ...] = (0.0, -0.3, -0.5, -0.4)
    discount_lift_per_pct: float = 0.035
    plan_lift: dict[int, float] = field(default_factory=lambda: {3: 0.45, 6: 0.6, 12: 0.7})
    keep_intercept: float = 0.6
    keep_willingness_weight: float = 0.8
    keep_ability_weight: float = 1.2
    keep_broken_weight: float = -0.5
    settlement_keep_penalty: float = -0.4  # paying a settlement in one go is harder
    self_cure_30d_max: float = 0.12
    fatigue_rate: float = 0.12  # reach falls by exp(-rate * contacts in the last 7 days)
    reach: list[list[float]] = field(default_factory=_default_reach)
    hour_profile: list[list[float]] = field(default_factory=_default_hour_profile)
    weekday_profile: list[list[float]] = field(default_factory=_default_weekday_profile)
    letter_reach_penalty_bad_address: float = 0.0
    contact_cost: tuple[float, ...] = (1.50, 0.05, 0.01, 0.80)  # call, sms, email, letter

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["plan_lift"] = {str(k): v for k, v in self.plan_lift.items()}
        return data


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _col(frame: pd.DataFrame | dict[str, np.ndarray], name: str) -> np.ndarray:
    values = frame[name]
    return values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)


def willingness_logit(
    state: pd.DataFrame | dict[str, np.ndarray], params: BehaviourParams
) -> np.ndarray:
    """Latent log-odds that a reached debtor commits to pay, before the offer and channel."""
    balance = np.maximum(_col(state, "balance"), 1.0)
    years_past_due = np.minimum(_col(state, "days_past_due"), 1500) / 365.0
    product = np.asarray(params.product_effect)[_col(state, "product_code")]
    return (
        params.intercept
        + _col(state, "willingness")
        + params.ability_weight * (_col(state, "ability") - 0.5)
        + params.log_balance_weight * np.log(balance / 1000.0)
        + params.days_past_due_weight * years_past_due
        + params.recent_payment_weight * (_col(state, "payments_90d") > 0)
        + params.pre_placement_payment_weight * _col(state, "pre_placement_payments")
        + params.broken_promise_weight * _col(state, "broken_promises_90d")
        + product
    )


def payment_fraction(state: pd.DataFrame | dict[str, np.ndarray]) -> np.ndarray:
    """Share of the balance a debtor pays when paying without an offer (small debts in full)."""
    fraction = np.clip(0.1 + 0.5 * _col(state, "ability"), 0.1, 1.0)
    return np.where(_col(state, "balance") < 300.0, 1.0, fraction)


def p_self_cure_30d(
    state: pd.DataFrame | dict[str, np.ndarray], params: BehaviourParams
) -> np.ndarray:
    """Probability of a payment within 30 days with no contact at all."""
    return params.self_cure_30d_max * _sigmoid(willingness_logit(state, params) + 0.5)


def p_right_party_contact(
    state: pd.DataFrame | dict[str, np.ndarray],
    actions: pd.DataFrame | dict[str, np.ndarray],
    params: BehaviourParams,
) -> np.ndarray:
    """Probability that the action reaches and engages the debtor."""
    segment = _col(state, "segment_code")
    channel = _col(actions, "channel_code")
    hour_index = np.clip(_col(actions, "local_hour") - CONTACT_HOURS[0], 0, len(CONTACT_HOURS) - 1)
    weekday = _col(actions, "weekday")
    reach = np.asarray(params.reach)[segment, channel]
    hour_effect = np.asarray(params.hour_profile)[segment, hour_index]
    weekday_effect = np.asarray(params.weekday_profile)[segment, weekday]
    is_call = channel == 0
    is_sms = channel == 1
    # Calls depend strongly on the hour; SMS is read later, so only half the hour effect shows.
    timing = np.where(is_call, hour_effect * weekday_effect, 1.0)
    timing = np.where(is_sms, (1.0 + hour_effect) / 2.0 * weekday_effect, timing)
    fatigue = np.exp(-params.fatigue_rate * _col(state, "contacts_7d"))
    deliverable = np.select(
        [channel <= 1, channel == 2, channel == 3],
        [
            _col(state, "phone_valid").astype(bool),
            _col(state, "email_status_code") == 1,
            _col(state, "address_valid").astype(bool),
        ],
    )
    quiet = (_col(actions, "local_hour") < 8) | (_col(actions, "local_hour") > 20)
    probability = np.clip(reach * timing * fatigue, 0.0, 0.95)
    return np.where(deliverable & ~quiet, probability, 0.0)


def offer_lift(
    actions: pd.DataFrame | dict[str, np.ndarray], params: BehaviourParams
) -> np.ndarray:
    """How much an offer raises the log-odds of committing."""
    offer = _col(actions, "offer_code")
    discount = np.nan_to_num(_col(actions, "discount_pct").astype(float))
    installments = np.nan_to_num(_col(actions, "installments").astype(float)).astype(int)
    plan = np.zeros(len(offer))
    for count, lift in params.plan_lift.items():
        plan = np.where(installments == count, lift, plan)
    return np.select([offer == 1, offer == 2], [params.discount_lift_per_pct * discount, plan], 0.0)


def p_commit(
    state: pd.DataFrame | dict[str, np.ndarray],
    actions: pd.DataFrame | dict[str, np.ndarray],
    params: BehaviourParams,
) -> np.ndarray:
    """Probability that a reached debtor commits to pay, given the channel and offer."""
    channel = _col(actions, "channel_code")
    conversion = np.asarray(params.channel_conversion)[channel]
    return _sigmoid(willingness_logit(state, params) + offer_lift(actions, params) + conversion)


def p_keep(
    state: pd.DataFrame | dict[str, np.ndarray],
    actions: pd.DataFrame | dict[str, np.ndarray],
    params: BehaviourParams,
) -> np.ndarray:
    """Probability that a commitment is honoured (for a plan: its first installment)."""
    logit = (
        params.keep_intercept
        + params.keep_willingness_weight * _col(state, "willingness")
        + params.keep_ability_weight * (_col(state, "ability") - 0.5)
        + params.keep_broken_weight * _col(state, "broken_promises_90d")
    )
    settlement = _col(actions, "offer_code") == 1
    large = np.log(np.maximum(_col(state, "balance"), 1.0) / 1000.0)
    logit = logit + np.where(settlement, params.settlement_keep_penalty - 0.3 * large, 0.0)
    return _sigmoid(logit)


def committed_amount(
    state: pd.DataFrame | dict[str, np.ndarray], actions: pd.DataFrame | dict[str, np.ndarray]
) -> np.ndarray:
    """Amount due within 30 days under the commitment the action leads to."""
    balance = _col(state, "balance")
    offer = _col(actions, "offer_code")
    discount = np.nan_to_num(_col(actions, "discount_pct").astype(float))
    installments = np.maximum(np.nan_to_num(_col(actions, "installments").astype(float)), 1.0)
    partial = np.round(balance * payment_fraction(state), 2)
    settlement = np.round(balance * (1.0 - discount / 100.0), 2)
    installment = np.round(balance / installments, 2)
    return np.select([offer == 1, offer == 2], [settlement, installment], partial)


def action_outcomes(
    state: pd.DataFrame | dict[str, np.ndarray],
    actions: pd.DataFrame | dict[str, np.ndarray],
    params: BehaviourParams | None = None,
) -> pd.DataFrame:
    """True outcome figures of taking each action in each state (row by row).

    Returns:
        A frame with `p_right_party_contact`, `p_commit`, `p_keep`, `p_self_cure_30d`,
        `p_payment_30d`, `expected_amount_30d` (collected within 30 days), `contact_cost`
        and `expected_net_30d` (expected amount minus the cost of the contact).
    """
    params = params or BehaviourParams()
    reach = p_right_party_contact(state, actions, params)
    commit = p_commit(state, actions, params)
    keep = p_keep(state, actions, params)
    self_cure = p_self_cure_30d(state, params)
    contact_pays = reach * commit * keep
    self_amount = np.round(_col(state, "balance") * payment_fraction(state), 2)
    expected = self_cure * self_amount + contact_pays * committed_amount(state, actions)
    cost = np.asarray(params.contact_cost)[_col(actions, "channel_code")]
    return pd.DataFrame(
        {
            "p_right_party_contact": reach,
            "p_commit": commit,
            "p_keep": keep,
            "p_self_cure_30d": self_cure,
            "p_payment_30d": 1.0 - (1.0 - self_cure) * (1.0 - contact_pays),
            "expected_amount_30d": expected,
            "contact_cost": cost,
            "expected_net_30d": expected - cost,
        }
    )


def no_action_outcomes(
    state: pd.DataFrame | dict[str, np.ndarray], params: BehaviourParams | None = None
) -> pd.DataFrame:
    """True 30-day figures when the account is left alone."""
    params = params or BehaviourParams()
    self_cure = p_self_cure_30d(state, params)
    amount = self_cure * np.round(_col(state, "balance") * payment_fraction(state), 2)
    return pd.DataFrame(
        {"p_payment_30d": self_cure, "expected_amount_30d": amount, "expected_net_30d": amount}
    )
