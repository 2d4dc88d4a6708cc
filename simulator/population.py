"""Debtors and accounts of a simulated portfolio: observable attributes and hidden traits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.behaviour import SIM_PRODUCTS

# (state, IANA time zone, share of debtors): US states, so jurisdiction rules can apply.
STATES: tuple[tuple[str, str, float], ...] = (
    ("CA", "America/Los_Angeles", 0.120),
    ("TX", "America/Chicago", 0.090),
    ("FL", "America/New_York", 0.070),
    ("NY", "America/New_York", 0.060),
    ("PA", "America/New_York", 0.040),
    ("IL", "America/Chicago", 0.040),
    ("OH", "America/New_York", 0.035),
    ("GA", "America/New_York", 0.035),
    ("NC", "America/New_York", 0.032),
    ("MI", "America/Detroit", 0.030),
    ("NJ", "America/New_York", 0.028),
    ("VA", "America/New_York", 0.026),
    ("WA", "America/Los_Angeles", 0.023),
    ("AZ", "America/Phoenix", 0.022),
    ("MA", "America/New_York", 0.021),
    ("TN", "America/Chicago", 0.021),
    ("IN", "America/Indiana/Indianapolis", 0.020),
    ("MO", "America/Chicago", 0.018),
    ("MD", "America/New_York", 0.018),
    ("WI", "America/Chicago", 0.017),
    ("CO", "America/Denver", 0.017),
    ("MN", "America/Chicago", 0.017),
    ("SC", "America/New_York", 0.016),
    ("AL", "America/Chicago", 0.015),
    ("LA", "America/Chicago", 0.014),
    ("KY", "America/New_York", 0.013),
    ("OR", "America/Los_Angeles", 0.013),
    ("OK", "America/Chicago", 0.012),
    ("NV", "America/Los_Angeles", 0.010),
    ("UT", "America/Denver", 0.010),
    ("AK", "America/Anchorage", 0.002),
    ("HI", "Pacific/Honolulu", 0.004),
)
TIMEZONES: tuple[str, ...] = tuple(sorted({tz for _, tz, _ in STATES}))
AGE_BAND_SHARES: tuple[float, ...] = (0.10, 0.24, 0.22, 0.18, 0.14, 0.12)
# Reachability segment shares by age group (young 18-34, middle 35-54, older 55+).
SEGMENT_SHARES_BY_AGE: tuple[tuple[float, ...], ...] = (
    (0.20, 0.30, 0.40, 0.10),
    (0.30, 0.35, 0.20, 0.15),
    (0.50, 0.15, 0.10, 0.25),
)
PRODUCT_SHARES: tuple[float, ...] = (0.40, 0.18, 0.05, 0.07, 0.08, 0.10, 0.07, 0.05)
BALANCE_MEDIANS: tuple[float, ...] = (2500, 5000, 8000, 9000, 900, 350, 450, 1200)
# Days past due when placed: base and gamma scale, per product.
PLACEMENT_DPD: tuple[tuple[int, float], ...] = (
    (180, 30),
    (180, 30),
    (120, 30),
    (270, 40),
    (180, 25),
    (60, 25),
    (60, 25),
    (90, 40),
)
CHARGED_OFF_PRODUCTS = frozenset({0, 1, 2, 4})
CREDITORS_PER_PRODUCT = 3


@dataclass(frozen=True)
class Population:
    """Column arrays of debtors (length n_debtors) and accounts (length n_accounts)."""

    debtor_state: np.ndarray
    debtor_timezone: np.ndarray  # index into TIMEZONES
    debtor_age_band: np.ndarray  # index into AGE_BANDS, -1 unknown
    debtor_gender: np.ndarray  # index into GENDERS, -1 unknown
    debtor_segment: np.ndarray
    debtor_willingness: np.ndarray
    debtor_ability: np.ndarray
    debtor_phone_valid: np.ndarray
    debtor_email_status: np.ndarray
    debtor_address_valid: np.ndarray
    account_debtor: np.ndarray
    account_product: np.ndarray
    account_creditor: np.ndarray
    account_balance: np.ndarray
    account_placed_day: np.ndarray
    account_delinquent_day: np.ndarray
    account_opened_day: np.ndarray
    account_charged_off_day: np.ndarray  # -1 if not charged off
    account_pre_payments: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_population(
    rng: np.random.Generator, n_accounts: int, placement_days: int, accounts_per_debtor: float
) -> Population:
    """Draw debtors, their hidden traits and their accounts."""
    n_debtors = max(1, min(n_accounts, round(n_accounts / accounts_per_debtor)))
    shares = np.array([share for _, _, share in STATES])
    state = rng.choice(len(STATES), size=n_debtors, p=shares / shares.sum())
    tz_of_state = np.array([TIMEZONES.index(tz) for _, tz, _ in STATES])
    age_band = rng.choice(len(AGE_BAND_SHARES), size=n_debtors, p=AGE_BAND_SHARES)
    age_known = rng.random(n_debtors) < 0.9
    gender = rng.choice(3, size=n_debtors, p=(0.50, 0.49, 0.01))
    gender_known = rng.random(n_debtors) < 0.8
    age_group = np.select([age_band <= 1, age_band <= 3], [0, 1], 2)
    segment_cdf = np.cumsum(np.asarray(SEGMENT_SHARES_BY_AGE), axis=1)[age_group]
    segment = (rng.random(n_debtors)[:, None] > segment_cdf).sum(axis=1).clip(0, 3)
    willingness = rng.normal(0.0, 0.9, n_debtors)
    ability = rng.beta(2.0, 2.5, n_debtors)
    email_none = np.where(age_group == 2, 0.45, 0.2)
    email_draw = rng.random(n_debtors)
    email_status = np.select([email_draw < email_none, email_draw < email_none + 0.1], [0, 2], 1)

    account_debtor = np.concatenate(
        [np.arange(n_debtors), rng.integers(0, n_debtors, n_accounts - n_debtors)]
    )
    account_debtor = rng.permutation(account_debtor)
    product = rng.choice(len(SIM_PRODUCTS), size=n_accounts, p=PRODUCT_SHARES)
    median = np.asarray(BALANCE_MEDIANS)[product]
    balance = np.round(median * np.exp(rng.normal(0.0, 0.8, n_accounts)), 2).clip(25.0, None)
    placed_day = rng.integers(0, placement_days, n_accounts)
    dpd_base = np.asarray([base for base, _ in PLACEMENT_DPD])[product]
    dpd_scale = np.asarray([scale for _, scale in PLACEMENT_DPD])[product]
    dpd = dpd_base + np.round(rng.gamma(2.0, dpd_scale)).astype(np.int64)
    delinquent_day = placed_day - dpd
    months_on_book = 6.5 + rng.gamma(2.0, 18.0, n_accounts)
    opened_day = delinquent_day - np.round(months_on_book * 30.4).astype(np.int64)
    charged_off = np.isin(product, list(CHARGED_OFF_PRODUCTS)) & (dpd >= 180)
    charged_off_day = np.where(charged_off, delinquent_day + 180, -1)
    debtor_traits = willingness[account_debtor] + 1.5 * (ability[account_debtor] - 0.5)
    pre_payments = rng.binomial(6, _sigmoid(-0.5 + debtor_traits))
    creditor = rng.integers(0, CREDITORS_PER_PRODUCT, n_accounts)

    return Population(
        debtor_state=state,
        debtor_timezone=tz_of_state[state],
        debtor_age_band=np.where(age_known, age_band, -1),
        debtor_gender=np.where(gender_known, gender, -1),
        debtor_segment=segment,
        debtor_willingness=willingness,
        debtor_ability=ability,
        debtor_phone_valid=rng.random(n_debtors) < 0.92,
        debtor_email_status=email_status,
        debtor_address_valid=rng.random(n_debtors) < 0.95,
        account_debtor=account_debtor,
        account_product=product,
        account_creditor=creditor,
        account_balance=balance,
        account_placed_day=placed_day,
        account_delinquent_day=delinquent_day,
        account_opened_day=opened_day,
        account_charged_off_day=charged_off_day,
        account_pre_payments=pre_payments,
    )
