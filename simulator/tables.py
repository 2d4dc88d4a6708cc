"""Turn the simulator's day/minute arrays into contract tables and hidden truth tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa

from data_contracts.vocabulary import (
    ACCOUNT_EVENT_KINDS,
    AGE_BANDS,
    CHANNELS,
    DIRECTIONS,
    GENDERS,
    PAYMENT_METHODS,
)
from simulator import behaviour as bh
from simulator.engine import (
    OUTCOME_NAMES,
    PLAN,
    TRUTH_FIELDS,
    SimulationConfig,
    SimulationOutput,
    run_simulation,
)
from simulator.population import CREDITORS_PER_PRODUCT, STATES, TIMEZONES, Population

MICROS_PER_MINUTE = 60_000_000
MINUTES_PER_DAY = 1440
PRE_PLACEMENT_METHODS = np.array([0, 1, 2])  # card, bank transfer, direct debit


@dataclass(frozen=True)
class SimulatedPortfolio:
    """Contract tables, hidden truth tables and metadata of one simulated portfolio."""

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    manifest: dict[str, object]
    truth_params: dict[str, object]


class _Clock:
    """Local day and minute of a time zone -> UTC timestamp, with daylight saving time."""

    def __init__(self, start: datetime, first_day: int, last_day: int) -> None:
        self.first_day = first_day
        noons = pd.date_range(
            start + timedelta(days=first_day, hours=12), periods=last_day - first_day + 1, freq="D"
        )
        offsets = []
        for tz in TIMEZONES:
            utc = noons.tz_localize(tz).tz_convert("UTC").tz_localize(None)
            offsets.append(((noons - utc) / pd.Timedelta(minutes=1)).to_numpy().astype(np.int64))
        self.offset_minutes = np.vstack(offsets)  # local - UTC, per zone and day
        self.epoch_minutes = int(pd.Timestamp(start).value // (MICROS_PER_MINUTE * 1000))

    def utc(self, tz: np.ndarray, day: np.ndarray, minute: np.ndarray) -> pd.DatetimeIndex:
        """UTC timestamps of local `minute` of local `day` in zone `tz` (arrays of equal length)."""
        return _as_utc(self.micros(tz, day, minute))

    def micros(self, tz: np.ndarray, day: np.ndarray, minute: np.ndarray) -> np.ndarray:
        """Microseconds since the Unix epoch (UTC) of local `minute` of local `day` in `tz`."""
        day = np.asarray(day, np.int64)
        # Clocks change at 2:00, so a local midnight still has the previous day's offset.
        offset_day = np.where(np.asarray(minute) == 0, day - 1, day) - self.first_day
        offset = self.offset_minutes[np.asarray(tz), offset_day]
        minutes = self.epoch_minutes + day * MINUTES_PER_DAY + np.asarray(minute, np.int64) - offset
        return minutes * MICROS_PER_MINUTE


def _as_utc(micros: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(micros, np.int64).astype("datetime64[us]")).tz_localize(
        "UTC"
    )


def _categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(np.asarray(codes, np.int64), categories=list(names))


def _nullable_categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    return pd.Categorical.from_codes(np.where(codes < 0, -1, codes), categories=list(names))


def _nullable_ids(values: np.ndarray) -> pd.arrays.IntegerArray:
    """Int64 array with negative values (the simulator's 'none') as missing."""
    values = np.asarray(values, np.int64)
    return pd.arrays.IntegerArray(values, values < 0)


@lru_cache(maxsize=4)
def numbered_ids(count: int) -> pd.Index:
    """The ids `1`..`count` as text: the simulator numbers debtors, accounts and offers."""
    return pd.Index(pa.array(np.arange(1, count + 1)).cast(pa.string()).to_pylist(), dtype=object)


def _ids(positions: np.ndarray, ids: pd.Index) -> pd.Categorical:
    """The ids at `positions` (0-based; -1: none), sharing the categories `ids`."""
    return pd.Categorical.from_codes(np.asarray(positions, np.int64), categories=ids)


def _row_ids(count: int) -> np.ndarray:
    """An event table's own ids `1`..`count`: integers, which the contracts read as their
    decimal text (written as numbers, they cost no string per row to write or check)."""
    return np.arange(1, count + 1, dtype=np.int64)


def _account_ids(pop: Population) -> pd.Index:
    return numbered_ids(len(pop.account_debtor))


def _offer_numbers(out: SimulationOutput) -> np.ndarray:
    """The offers' own ids: the engine numbers them 1..n in the order it logs them (written
    as integers, like events' own ids, and read as their decimal text)."""
    numbers = np.asarray(out.offers.columns()["offer_id"], np.int64)
    if not np.array_equal(numbers, np.arange(1, len(numbers) + 1)):
        raise ValueError("the offer log is not numbered 1..n in order")
    return numbers


def _offer_refs(offer_id: np.ndarray) -> pd.arrays.IntegerArray:
    """References to offers (the engine's numbers; negative: none), as the offers' ids."""
    return _nullable_ids(np.where(np.asarray(offer_id, np.int64) > 0, offer_id, -1))


def _row_ids_of(numbers: np.ndarray) -> np.ndarray:
    return np.asarray(numbers, np.int64)


def _pre_placement_payments(
    out: SimulationOutput, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Monthly payments before the account went delinquent (observable history)."""
    pop = out.population
    counts = pop.account_pre_payments
    account = np.repeat(np.arange(len(counts)), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    month = np.arange(len(account)) - starts + 1
    # at least 95 days before placement (placement is 60+ days past due), so never in a
    # 90-day window that the simulation counts
    day = pop.account_delinquent_day[account] - 30 * month - rng.integers(5, 11, len(account))
    day = np.maximum(day, pop.account_opened_day[account] + 1)
    amount = pop.account_balance[account] * 0.03 * rng.uniform(0.8, 1.5, len(account))
    return {
        "account": account,
        "day": day.astype(np.int64),
        "minute": rng.integers(7 * 60, 22 * 60, len(account)),
        "amount": np.round(np.maximum(amount, 25.0), 2),
        "method": rng.choice(PRE_PLACEMENT_METHODS, len(account)),
    }


def iter_tables(out: SimulationOutput) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """Yield ("tables" | "truth", name, frame) one at a time, releasing the simulator's
    event arrays as they are used, so a large portfolio can be written table by table."""
    config: SimulationConfig = out.config
    pop = out.population
    rng = np.random.default_rng([config.seed, 1])
    start = datetime(config.start.year, config.start.month, config.start.day)
    first_day = int(pop.account_opened_day.min()) - 2
    last_day = config.horizon_days + 40
    clock = _Clock(start, first_day, last_day)
    account_tz = pop.debtor_timezone[pop.account_debtor]

    debtors = _debtors_table(pop)
    yield "tables", "debtors", debtors
    yield "truth", "debtors", _debtors_truth_table(pop, debtors["debtor_id"])
    del debtors
    accounts = _accounts_table(out, clock, account_tz)
    yield "tables", "accounts", accounts
    yield "tables", "account_events", _account_events_table(out, clock, account_tz, accounts)
    del accounts
    yield "truth", "accounts", _accounts_truth_table(pop)
    yield "tables", "offers", _offers_table(out, clock, account_tz)
    yield "tables", "payments", _payments_table(out, clock, account_tz, rng)
    yield "tables", "promises", _promises_table(out, clock, account_tz)
    yield from _contact_tables(out, clock, account_tz)


def _debtors_table(pop: Population) -> pd.DataFrame:
    """The observable debtors: time zone, region, age band and gender."""
    return pd.DataFrame(
        {
            "debtor_id": _ids(
                np.arange(len(pop.debtor_state)), numbered_ids(len(pop.debtor_state))
            ),
            "timezone": _categorical(pop.debtor_timezone, TIMEZONES),
            "region": _categorical(pop.debtor_state, tuple(code for code, _, _ in STATES)),
            "age_band": _nullable_categorical(pop.debtor_age_band, AGE_BANDS),
            "gender": _nullable_categorical(pop.debtor_gender, GENDERS),
        }
    )


def _debtors_truth_table(pop: Population, debtor_id: pd.Series) -> pd.DataFrame:
    """The debtors' hidden traits: segment, willingness, ability and contact validity."""
    return pd.DataFrame(
        {
            "debtor_id": debtor_id,
            "segment": _categorical(pop.debtor_segment, bh.SEGMENTS),
            "willingness": pop.debtor_willingness,
            "ability": pop.debtor_ability,
            "phone_valid": pop.debtor_phone_valid,
            "email_status": _categorical(pop.debtor_email_status, bh.EMAIL_STATUS),
            "address_valid": pop.debtor_address_valid,
        }
    )


def _accounts_table(out: SimulationOutput, clock: _Clock, account_tz: np.ndarray) -> pd.DataFrame:
    """The accounts: product, creditor, balances and their dates (local midnights, in UTC)."""
    pop = out.population
    n_accounts = len(pop.account_debtor)
    midnight = np.zeros(n_accounts, np.int64)
    product_names = bh.SIM_PRODUCTS
    creditor_names = tuple(
        f"{product}-{chr(65 + k)}"
        for product in product_names
        for k in range(CREDITORS_PER_PRODUCT)
    )
    charged = pop.account_charged_off_day >= 0
    charged_off = clock.utc(account_tz, np.where(charged, pop.account_charged_off_day, 0), midnight)
    return pd.DataFrame(
        {
            "account_id": _ids(np.arange(n_accounts), numbered_ids(n_accounts)),
            "debtor_id": _ids(pop.account_debtor, numbered_ids(len(pop.debtor_state))),
            "product": _categorical(pop.account_product, product_names),
            "currency": pd.Categorical.from_codes(
                np.zeros(n_accounts, np.int8), [out.config.currency]
            ),
            "original_balance": pop.account_balance,
            "current_balance": np.round(out.balance, 2),
            "opened_at": clock.utc(account_tz, pop.account_opened_day, midnight),
            "delinquent_since": clock.utc(account_tz, pop.account_delinquent_day, midnight),
            "charged_off_at": charged_off.where(charged),
            "placed_at": clock.utc(account_tz, pop.account_placed_day, midnight),
            "days_past_due_at_placement": (
                pop.account_placed_day - pop.account_delinquent_day
            ).astype(np.int64),
            "creditor": _categorical(
                pop.account_product * CREDITORS_PER_PRODUCT + pop.account_creditor,
                creditor_names,
            ),
        }
    )


def _account_events_table(
    out: SimulationOutput, clock: _Clock, account_tz: np.ndarray, accounts: pd.DataFrame
) -> pd.DataFrame:
    """Settlements (with the amount forgiven) and payoffs, in time order, numbered from 1."""
    log = out.account_events.columns()
    occurred = clock.micros(account_tz[log["account"]], log["day"], log["minute"])
    order = np.argsort(occurred, kind="stable")
    events = pd.DataFrame(
        {
            "account_id": _ids(log["account"][order], _account_ids(out.population)),
            "occurred_at": _as_utc(occurred[order]),
            "kind": _categorical(log["kind"][order], ACCOUNT_EVENT_KINDS),
            "amount_forgiven": log["amount_forgiven"][order].astype(np.float64),
        }
    )
    events.insert(0, "event_id", _row_ids(len(events)))
    return events


def _accounts_truth_table(pop: Population) -> pd.DataFrame:
    """The accounts' hidden figures: pre-placement payments and simulation days."""
    return pd.DataFrame(
        {
            "account_id": _ids(np.arange(len(pop.account_debtor)), _account_ids(pop)),
            "pre_placement_payments": pop.account_pre_payments,
            "placed_day": pop.account_placed_day,
            "delinquent_day": pop.account_delinquent_day,
        }
    )


def _offers_table(out: SimulationOutput, clock: _Clock, account_tz: np.ndarray) -> pd.DataFrame:
    """The offers presented, with their terms, expiry (14 days, plans 30) and acceptance."""
    offer_log = out.offers.columns()
    offer_tz = account_tz[offer_log["account"]]
    offered_at = clock.utc(offer_tz, offer_log["day"], offer_log["minute"])
    is_plan = offer_log["kind"] == PLAN
    acc = out.offer_acceptances.columns()
    accepted_micros = pd.Series(
        clock.micros(account_tz[acc["account"]], acc["day"], acc["minute"]), index=acc["offer_id"]
    )
    offers = pd.DataFrame(
        {
            "offer_id": _offer_numbers(out),
            "account_id": _ids(offer_log["account"], _account_ids(out.population)),
            "kind": _categorical(offer_log["kind"] - 1, ("discount", "payment_plan")),
            "discount_pct": np.where(is_plan, np.nan, offer_log["discount_pct"]),
            "installments": _nullable_ids(np.where(is_plan, offer_log["installments"], -1)),
            "offered_at": offered_at,
            "expires_at": offered_at
            + pd.to_timedelta(np.where(is_plan, 30, 14), unit="D").as_unit("us"),
        }
    )
    accepted = pd.Series(offer_log["offer_id"], index=offers.index).map(accepted_micros)
    offers["accepted_at"] = pd.Series(
        _as_utc(accepted.fillna(0).to_numpy(np.int64)), index=offers.index
    ).where(accepted.notna())
    return offers


def _payments_table(
    out: SimulationOutput, clock: _Clock, account_tz: np.ndarray, rng: np.random.Generator
) -> pd.DataFrame:
    """Pre-placement and simulated payments in time order, numbered from 1."""
    pre = _pre_placement_payments(out, rng)
    paid = out.payments.columns()
    pay_account = np.concatenate([pre["account"], paid["account"]])
    paid_at = clock.micros(
        account_tz[pay_account],
        np.concatenate([pre["day"], paid["day"]]),
        np.concatenate([pre["minute"], paid["minute"]]),
    )
    order = np.argsort(paid_at, kind="stable")
    payments = pd.DataFrame(
        {
            "account_id": _ids(pay_account[order], _account_ids(out.population)),
            "paid_at": _as_utc(paid_at[order]),
            "amount": np.concatenate([pre["amount"], paid["amount"]])[order],
            "method": _categorical(
                np.concatenate([pre["method"], paid["method"]])[order], PAYMENT_METHODS
            ),
        }
    )
    payments.insert(0, "payment_id", _row_ids(len(payments)))
    return payments


def _promises_table(out: SimulationOutput, clock: _Clock, account_tz: np.ndarray) -> pd.DataFrame:
    """The promises to pay, due at local midnight of the due day, and whether kept.

    `kept` is missing while a promise is unsettled.
    """
    promise_log = out.promises.columns()
    promise_tz = account_tz[promise_log["account"]]
    results = out.promise_results.columns()
    kept = pd.Series(results["kept"], index=results["promise_id"], dtype="boolean")
    return pd.DataFrame(
        {
            "promise_id": _row_ids_of(promise_log["promise_id"]),
            "account_id": _ids(promise_log["account"], _account_ids(out.population)),
            "made_at": clock.utc(promise_tz, promise_log["made_day"], promise_log["made_minute"]),
            "due_at": clock.utc(
                promise_tz, promise_log["due_day"], np.zeros(len(promise_tz), np.int64)
            ),
            "amount": promise_log["amount"],
            "kept": pd.Series(promise_log["promise_id"]).map(kept).astype("boolean").array,
            "offer_id": _offer_refs(promise_log["offer_id"]),
        }
    )


def _contact_tables(
    out: SimulationOutput, clock: _Clock, account_tz: np.ndarray
) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """Yield the contacts table in time order, then the truth of its outbound contacts.

    The contact log's columns are released as they are used.
    """
    log = out.contacts
    contact_account = log.pop("account")
    attempted_at = clock.micros(account_tz[contact_account], log.pop("day"), log.pop("minute"))
    order = np.argsort(attempted_at, kind="stable")
    attempted_at = attempted_at[order]
    contact_ids = _row_ids(len(order))
    direction = log.pop("direction")[order]
    contacts = pd.DataFrame(
        {
            "contact_id": contact_ids,
            "account_id": _ids(contact_account[order], _account_ids(out.population)),
            "channel": _categorical(log.pop("channel")[order], CHANNELS),
            "direction": _categorical(direction, DIRECTIONS),
            "attempted_at": _as_utc(attempted_at),
            "outcome": _categorical(log.pop("outcome")[order], OUTCOME_NAMES),
            "offer_id": _offer_refs(log.pop("offer_id")[order]),
            "action_probability": log.pop("action_probability")[order].astype(np.float64),
        }
    )
    del contact_account, attempted_at
    yield "tables", "contacts", contacts
    del contacts
    outbound = order[direction == 0]
    truth_contacts = {"contact_id": contact_ids[direction == 0]}  # as in the contacts table
    del order, direction, contact_ids
    for name in TRUTH_FIELDS:
        truth_contacts[name[len("truth_") :]] = log.pop(name)[outbound]
    yield "truth", "contacts", pd.DataFrame(truth_contacts)


def portfolio_manifest(
    config: SimulationConfig, tables: dict[str, pd.DataFrame] | dict[str, int]
) -> dict[str, object]:
    """Metadata of a simulated portfolio: source, seed, data end and row counts."""
    start = datetime(config.start.year, config.start.month, config.start.day)
    clock = _Clock(start, config.horizon_days - 2, config.horizon_days + 2)
    zones = np.arange(len(TIMEZONES))
    # The data ends when the last time zone reaches midnight after the final simulated day.
    data_end = clock.utc(zones, np.full(len(zones), config.horizon_days), np.zeros(len(zones)))
    rows = {name: v if isinstance(v, int) else len(v) for name, v in tables.items()}
    return {
        "source": "cobranza simulator",
        "seed": config.seed,
        "accounts": config.accounts,
        "data_end": data_end.max().isoformat(),
        "currency": config.currency,
        "rows": rows,
    }


def truth_parameters(config: SimulationConfig) -> dict[str, object]:
    """Everything needed to score actions against the truth (config and behaviour params)."""
    config_dict = asdict(config)
    config_dict["params"] = config.params.to_dict()
    config_dict["start"] = config.start.isoformat()
    return {"config": config_dict, "data_end": portfolio_manifest(config, {})["data_end"]}


def build_tables(out: SimulationOutput) -> SimulatedPortfolio:
    """All contract tables and truth tables in memory (for small portfolios and tests)."""
    tables: dict[str, pd.DataFrame] = {}
    truth: dict[str, pd.DataFrame] = {}
    for kind, name, frame in iter_tables(out):
        (tables if kind == "tables" else truth)[name] = frame
    return SimulatedPortfolio(
        tables=tables,
        truth=truth,
        manifest=portfolio_manifest(out.config, tables),
        truth_params=truth_parameters(out.config),
    )


def simulate_portfolio(
    config: SimulationConfig, progress: Callable[[int], None] | None = None
) -> SimulatedPortfolio:
    """Simulate a portfolio: contract tables, truth tables and a manifest (pure, no I/O)."""
    return build_tables(run_simulation(config, progress))
