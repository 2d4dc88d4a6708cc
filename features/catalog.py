"""Every feature cobranza computes: its name, type, description, view and first version.

Names say what is measured and over which window (`payments_sum_90d`). Windows count events
in [as_of - window, as_of); `_lag<k>` is the k-th latest monthly statement before as_of (lag 1
the most recent) and `_last6` the six latest statements. The Feast feature views and the docs
are generated from this list, and a test checks that the feature functions produce exactly
these columns.

Model inputs are versioned like the Feast feature services that publish them: each feature
records the `debtor_scoring_v<n>` version that first used it (`since_version`), and a
published version never changes. `model_features(service)` is the list a model trained on a
service reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from data_contracts.vocabulary import CHANNELS, OPT_OUT_CHANNELS
from features.history import HOUR_BANDS

Kind = Literal["float", "int", "string", "timestamp"]

PAYMENT_WINDOWS = (7, 30, 90, 180, 365)
PROMISE_WINDOWS = (90, 365)
CONTACT_WINDOWS = (7, 30, 90)
STATEMENT_WINDOW = 180
STATEMENT_LAGS = 6
"""Monthly statements looked at one by one (lag 1 = the latest before as_of)."""
FIRST_CYCLE_DAYS = 31
"""A statement cycle starts at the previous statement; with none known, this many days earlier."""

SCORING_SERVICE_V1 = "debtor_scoring_v1"
SCORING_SERVICE_V2 = "debtor_scoring_v2"
SCORING_SERVICE_V3 = "debtor_scoring_v3"
SCORING_SERVICES: dict[str, int] = {
    SCORING_SERVICE_V1: 1,
    SCORING_SERVICE_V2: 2,
    SCORING_SERVICE_V3: 3,
}
"""Feature service name -> the feature version it publishes (v2 = v1 + statement history,
v3 = v2 + the account's events: forgiven amounts, the latest event)."""
LATEST_SCORING_SERVICE = SCORING_SERVICE_V3


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Kind
    description: str
    view: Literal["account", "debtor"]
    model_input: bool = True
    since_version: int = 1
    """First `debtor_scoring_v<n>` service whose model inputs include the feature."""


def _account(name: str, kind: Kind, description: str, model_input: bool = True) -> FeatureSpec:
    """An account feature first published by version 1."""
    return FeatureSpec(name, kind, description, "account", model_input)


def _state_specs() -> list[FeatureSpec]:
    """The account's state: what it is, what is owed and how old it is."""
    return [
        _account("product", "string", "Kind of credit the debt comes from."),
        _account("creditor", "string", "Creditor who placed the account."),
        _account("original_balance", "float", "Balance owed when the account was placed."),
        _account(
            "current_balance",
            "float",
            "Placed balance minus payments since placement and minus amounts forgiven by "
            "settlements (account events), at the as-of time (not below 0).",
        ),
        _account(
            "paid_share_of_placed_balance", "float", "Payments since placement / placed balance."
        ),
        _account(
            "days_past_due", "float", "Days from delinquent_since to the as-of time (0 if current)."
        ),
        _account("days_since_placement", "float", "Days the account has been in collections."),
        _account("days_since_opened", "float", "Age of the credit in days."),
    ]


def _payment_specs() -> list[FeatureSpec]:
    """Payments received: per window, the latest, before placement and the trend."""
    specs: list[FeatureSpec] = []
    for window in PAYMENT_WINDOWS:
        specs += [
            _account(
                f"payments_count_{window}d", "int", f"Payments received in the last {window} days."
            ),
            _account(
                f"payments_sum_{window}d", "float", f"Amount received in the last {window} days."
            ),
        ]
    return [
        *specs,
        _account(
            "days_since_last_payment", "float", "Days since the most recent payment (any time)."
        ),
        _account("payments_count_before_placement", "int", "Payments received before placement."),
        _account(
            "payments_sum_trend_90d",
            "float",
            "Amount paid in the last 30 days minus the monthly average of the 60 days before.",
        ),
    ]


def _promise_specs() -> list[FeatureSpec]:
    """Promises to pay: made, kept and broken per window, and what is still open."""
    specs: list[FeatureSpec] = []
    for window in PROMISE_WINDOWS:
        specs += [
            _account(
                f"promises_made_{window}d",
                "int",
                f"Promises to pay made in the last {window} days.",
            ),
            _account(
                f"promises_kept_{window}d",
                "int",
                f"Promises whose grace period ended in the last {window} days and were kept.",
            ),
            _account(
                f"promises_broken_{window}d",
                "int",
                f"Promises whose grace period ended in the last {window} days unpaid.",
            ),
        ]
    return [
        *specs,
        _account(
            "promises_kept_rate_365d",
            "float",
            "Kept / (kept + broken) over 365 days; empty if none.",
        ),
        _account(
            "days_since_last_broken_promise", "float", "Days since a promise was last found broken."
        ),
        _account("open_promise_amount", "float", "Amount of promises made and not yet resolved."),
    ]


def _channel_specs() -> list[FeatureSpec]:
    """Outbound attempts and responses of each contact channel."""
    specs: list[FeatureSpec] = []
    for channel in CHANNELS:
        for window in CONTACT_WINDOWS:
            specs += [
                _account(
                    f"{channel}_attempts_{window}d",
                    "int",
                    f"Outbound {channel} attempts, last {window} days.",
                ),
                _account(
                    f"{channel}_responses_{window}d",
                    "int",
                    f"Outbound {channel} attempts that reached and engaged the debtor (right-party "
                    f"contact, promise, refusal, dispute, opt-out or click), last {window} days.",
                ),
            ]
        specs += [
            _account(
                f"{channel}_contact_rate_90d",
                "float",
                f"Share of {channel} attempts that got through (not unanswered, wrong party or "
                "bounced), last 90 days.",
            ),
            _account(
                f"{channel}_response_rate_90d",
                "float",
                f"Responses / attempts for {channel}, 90 days.",
            ),
        ]
    return specs


def _call_time_specs() -> list[FeatureSpec]:
    """Calls and how often they reached the debtor, by local hour band and by day type."""
    specs: list[FeatureSpec] = []
    for band, (start, end) in HOUR_BANDS.items():
        specs += [
            _account(
                f"call_attempts_{band}_365d",
                "int",
                f"Outbound calls started {start}:00-{end}:00 local time, last 365 days.",
            ),
            _account(
                f"call_response_rate_{band}_365d",
                "float",
                f"Share of calls started {start}:00-{end}:00 local time that reached the debtor.",
            ),
        ]
    for day_type, label in (("weekday", "Monday to Friday"), ("weekend", "Saturday and Sunday")):
        specs += [
            _account(
                f"call_attempts_{day_type}_365d",
                "int",
                f"Outbound calls on {label}, last 365 days.",
            ),
            _account(
                f"call_response_rate_{day_type}_365d",
                "float",
                f"Share of calls on {label} (local time) that reached the debtor, last 365 days.",
            ),
        ]
    return specs


def _contact_history_specs() -> list[FeatureSpec]:
    """Inbound contacts, the latest attempt and conversation, and disputes."""
    return [
        _account("inbound_contacts_90d", "int", "Contacts started by the debtor, last 90 days."),
        _account("days_since_last_attempt", "float", "Days since the last outbound attempt."),
        _account(
            "days_since_last_conversation",
            "float",
            "Days since the debtor was last reached (any channel).",
        ),
        _account("disputes_total", "int", "Disputes raised before the as-of time."),
        _account("days_since_last_dispute", "float", "Days since the last dispute."),
    ]


def _opt_out_specs() -> list[FeatureSpec]:
    """Channels the debtor opted out of."""
    return [
        _account(
            f"opted_out_{channel}",
            "int",
            f"1 if the debtor opted out of {channel} for this account.",
        )
        for channel in OPT_OUT_CHANNELS
    ]


def _compliance_specs() -> list[FeatureSpec]:
    """Compliance counters used by serving (Regulation F); not model inputs."""
    return [
        _account(
            "call_attempts_7d_compliance",
            "int",
            "Call attempts in the 7 days before the as-of time (at most 7 in 7 days per debt).",
            model_input=False,
        ),
        _account(
            "last_telephone_conversation_at",
            "timestamp",
            "Last telephone conversation about the debt (no call within 7 days after it).",
            model_input=False,
        ),
    ]


def _offer_specs() -> list[FeatureSpec]:
    """Settlement discounts and payment plans presented and accepted."""
    return [
        _account("offers_made_total", "int", "Offers presented before the as-of time."),
        _account("discount_offers_made_total", "int", "Settlement discounts presented."),
        _account("plan_offers_made_total", "int", "Payment plans presented."),
        _account("offers_accepted_total", "int", "Offers accepted before the as-of time."),
        _account(
            "best_accepted_discount_pct", "float", "Largest discount accepted; empty if none."
        ),
        _account("days_since_last_offer", "float", "Days since an offer was last presented."),
    ]


def _statement_specs() -> list[FeatureSpec]:
    """The creditor's monthly statements (when the portfolio has them): the latest one and
    the STATEMENT_WINDOW before the as-of time."""
    window = STATEMENT_WINDOW
    return [
        _account("statement_balance_last", "float", "Balance on the latest statement."),
        _account("credit_limit_last", "float", "Credit limit on the latest statement."),
        _account("utilization_last", "float", "Latest statement balance / credit limit."),
        _account("statement_days_past_due_last", "float", "Days past due on the latest statement."),
        _account(
            f"statement_days_past_due_max_{window}d",
            "float",
            f"Worst days past due on statements, {window} days.",
        ),
        _account(
            f"statements_delinquent_{window}d",
            "int",
            f"Statements showing a delinquency, {window} days.",
        ),
        _account(
            f"statements_paid_in_full_{window}d", "int", f"Statements paid in full, {window} days."
        ),
        _account(
            f"statements_no_use_{window}d", "int", f"Statements with nothing to pay, {window} days."
        ),
        _account(
            f"statement_balance_mean_{window}d", "float", f"Mean statement balance, {window} days."
        ),
        _account(
            f"statement_balance_trend_{window}d",
            "float",
            f"Latest statement balance minus the oldest one within {window} days.",
        ),
    ]


def _account_specs() -> list[FeatureSpec]:
    """Every account feature, family by family, in catalog order (statement history last)."""
    return [
        *_state_specs(),
        *_payment_specs(),
        *_promise_specs(),
        *_channel_specs(),
        *_call_time_specs(),
        *_contact_history_specs(),
        *_opt_out_specs(),
        *_compliance_specs(),
        *_offer_specs(),
        *_statement_specs(),
        *_statement_history_specs(),
        *_account_event_specs(),
    ]


def _statement_history_specs() -> list[FeatureSpec]:
    """Month-by-month statement history (version 2): the latest statements one by one.

    The cycle of a statement runs from the previous statement (exclusive; with no earlier
    statement known, FIRST_CYCLE_DAYS before it) to its own closing time (inclusive); payments
    received in it answer the previous statement's balance.
    """
    lags, first_cycle = STATEMENT_LAGS, FIRST_CYCLE_DAYS
    specs: list[FeatureSpec] = []

    def v2(name: str, kind: Kind, description: str) -> None:
        specs.append(FeatureSpec(name, kind, description, "account", since_version=2))

    for lag in range(1, lags + 1):
        nth = "latest statement" if lag == 1 else f"statement {lag} back (lag 1 = the latest)"
        v2(f"statement_balance_lag{lag}", "float", f"Balance on the {nth}.")
        v2(
            f"statement_utilization_lag{lag}",
            "float",
            f"Balance / credit limit on the {nth}; empty without a positive limit.",
        )
        v2(
            f"statement_status_level_lag{lag}",
            "float",
            f"Repayment status of the {nth}: -2 nothing to pay, -1 paid in full, 0 revolving "
            "(minimum paid), n >= 1 months past due (days past due / 30, rounded up).",
        )
        v2(
            f"statement_cycle_paid_lag{lag}",
            "float",
            f"Amount paid in the cycle that closed with the {nth} (after the statement before "
            f"it, or within {first_cycle} days if none).",
        )
        v2(
            f"statement_cycle_payment_ratio_lag{lag}",
            "float",
            f"Amount paid in the cycle of the {nth} / balance of the statement before it; "
            "empty unless that balance is positive.",
        )
        v2(
            f"statement_cycle_new_charges_lag{lag}",
            "float",
            f"Balance of the {nth} minus the balance before it plus the amount paid in the "
            "cycle: new purchases, interest and fees.",
        )
    last = f"the {lags} latest statements"
    v2(f"statement_status_level_max_last{lags}", "float", f"Worst repayment status level, {last}.")
    v2(f"statement_status_level_mean_last{lags}", "float", f"Mean repayment status level, {last}.")
    v2(
        f"statements_delinquent_streak_last{lags}",
        "int",
        f"Consecutive delinquent statements ending with the latest one, among {last}.",
    )
    v2(
        f"statements_delinquent_streak_max_last{lags}",
        "int",
        f"Longest run of consecutive delinquent statements, {last}.",
    )
    v2(f"statement_cycle_paid_sum_last{lags}", "float", f"Amount paid in the cycles of {last}.")
    v2(
        f"statement_cycle_payment_ratio_last{lags}",
        "float",
        f"Amount paid / balance owed at the start of the cycle, over the cycles of {last} that "
        "started with a positive balance.",
    )
    v2(
        f"statement_cycles_unpaid_last{lags}",
        "int",
        f"Cycles of {last} that started with a positive balance and saw no payment.",
    )
    v2(f"statement_balance_max_last{lags}", "float", f"Largest statement balance, {last}.")
    v2(f"statement_utilization_max_last{lags}", "float", f"Largest utilization, {last}.")
    v2("days_since_last_statement", "float", "Days since the latest statement closed.")
    return specs


def _account_event_specs() -> list[FeatureSpec]:
    """What happened to the account as a whole (version 3; the optional account_events
    table): forgiven amounts and the latest event as model inputs; whether the account is
    closed, how and when, for serving and training to leave it out (not model inputs)."""
    return [
        FeatureSpec(
            "amount_forgiven_total",
            "float",
            "Balance forgiven by settlements before the as-of time (since the latest reopening).",
            "account",
            since_version=3,
        ),
        FeatureSpec(
            "last_account_event_kind",
            "string",
            "Kind of the latest account event (settled, paid_in_full, recalled, sold, legal, "
            "placed_elsewhere, bankrupt, deceased, reopened); none without events.",
            "account",
            since_version=3,
        ),
        FeatureSpec(
            "days_since_last_account_event",
            "float",
            "Days since the latest account event; empty without events.",
            "account",
            since_version=3,
        ),
        FeatureSpec(
            "account_closed",
            "int",
            "1 if the latest account event closes the account (every kind but reopened).",
            "account",
            model_input=False,
            since_version=3,
        ),
        FeatureSpec(
            "closed_kind",
            "string",
            "Kind of the event that closed the account; none while it is open.",
            "account",
            model_input=False,
            since_version=3,
        ),
        FeatureSpec(
            "closed_at",
            "timestamp",
            "When the event that closed the account took effect; empty while it is open.",
            "account",
            model_input=False,
            since_version=3,
        ),
    ]


ACCOUNT_EVENT_FEATURES: tuple[str, ...] = tuple(spec.name for spec in _account_event_specs())
"""The account-event features (version 3), in catalog order."""


def _debtor_specs() -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []

    def add(name: str, kind: Kind, description: str) -> None:
        specs.append(FeatureSpec(name, kind, description, "debtor"))

    add("debtor_accounts_placed", "int", "Accounts of the debtor placed before the as-of time.")
    add("debtor_current_balance", "float", "Sum of current_balance over the debtor's accounts.")
    add("debtor_payments_sum_90d", "float", "Amount the debtor paid on any account, 90 days.")
    add("debtor_payments_count_365d", "int", "Payments by the debtor on any account, 365 days.")
    add("debtor_promises_broken_365d", "int", "Promises the debtor broke on any account, 365 days.")
    for band in HOUR_BANDS:
        add(
            f"debtor_call_attempts_{band}_365d",
            "int",
            f"Calls to the debtor in the {band}, 365 days.",
        )
        add(
            f"debtor_call_response_rate_{band}_365d",
            "float",
            f"Share of the debtor's {band} calls that reached them, over all their accounts.",
        )
    for day_type in ("weekday", "weekend"):
        add(
            f"debtor_call_response_rate_{day_type}_365d",
            "float",
            f"Share of the debtor's {day_type} calls that reached them, 365 days.",
        )
    for channel in ("sms", "email"):
        add(
            f"debtor_{channel}_response_rate_90d",
            "float",
            f"Responses / attempts for {channel} over all the debtor's accounts, 90 days.",
        )
    add("debtor_days_since_last_conversation", "float", "Days since the debtor was last reached.")
    return specs


ACCOUNT_FEATURES: tuple[FeatureSpec, ...] = tuple(_account_specs())
STATEMENT_HISTORY_FEATURES: tuple[FeatureSpec, ...] = tuple(_statement_history_specs())
"""The month-by-month statement history (account features first used by version 2)."""
DEBTOR_FEATURES: tuple[FeatureSpec, ...] = tuple(_debtor_specs())
ALL_FEATURES: tuple[FeatureSpec, ...] = ACCOUNT_FEATURES + DEBTOR_FEATURES


def _service_version(service: str) -> int:
    try:
        return SCORING_SERVICES[service]
    except KeyError:
        known = ", ".join(SCORING_SERVICES)
        raise ValueError(f"unknown scoring service {service!r}; known: {known}") from None


def service_features(service: str, view: Literal["account", "debtor"]) -> tuple[str, ...]:
    """The features of one view that a scoring service publishes, in catalog order."""
    version = _service_version(service)
    specs = ACCOUNT_FEATURES if view == "account" else DEBTOR_FEATURES
    return tuple(s.name for s in specs if s.model_input and s.since_version <= version)


def model_features(service: str) -> tuple[str, ...]:
    """Model inputs of a scoring service (account features, then debtor features).

    Args:
        service: A scoring feature service name, such as `debtor_scoring_v2`.

    Raises:
        ValueError: the name is not a scoring service.
    """
    return service_features(service, "account") + service_features(service, "debtor")


def categorical_features(service: str) -> tuple[str, ...]:
    """The model inputs of `service` that are categories (strings)."""
    kinds = {spec.name: spec.kind for spec in ALL_FEATURES}
    return tuple(name for name in model_features(service) if kinds[name] == "string")


MODEL_FEATURES: tuple[str, ...] = model_features(SCORING_SERVICE_V1)
"""Model inputs of the first published service (prefer `model_features(service)`)."""
CATEGORICAL_FEATURES: tuple[str, ...] = categorical_features(SCORING_SERVICE_V1)
