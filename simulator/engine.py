"""Day-by-day simulation of a collections operation, vectorized over accounts.

Every day, in each debtor's local calendar:

1. letters answered earlier call in, and a few debtors call on their own (inbound);
2. the historical ("logging") policy picks, partly at random, which accounts to contact, through
   which channel, at which local hour and with which offer, and logs the probability of its pick;
   it never calls on Sundays, outside 8:00-21:00 local time, within 7 days after a telephone
   conversation, after an opt-out, during a dispute, or while a promise is open;
3. outcomes are drawn from `behaviour` (reach, commitment, keeping the promise, disputes,
   opt-outs from contact fatigue);
4. promised payments fall due, and some debtors pay by themselves (self-cure);
5. at the end of the grace period (2 days after the due day) each promise is settled as kept or
   broken; a kept plan installment opens the next one.

A payment that settles an accepted discount writes off the rest of the balance (a `settled`
account event with the amount forgiven); one that brings the balance to 0 otherwise closes the
account as `paid_in_full`. Either way the account then leaves the inventory.

State seen by the behaviour model on day d counts events of the days before d only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

from data_contracts.contact_rules import Limits
from data_contracts.vocabulary import ACCOUNT_EVENT_KINDS, OUTCOMES
from simulator import behaviour as bh
from simulator.population import Population, draw_population

if TYPE_CHECKING:
    import pandas as pd

GRACE_DAYS = 2
PAYMENTS_WINDOW = 90
CONTACTS_WINDOW = 7
# the historical policy obeys the default contact rules, the same ones the worklist enforces
REG_F_CONVERSATION_DAYS = Limits().conversation_gap_days
LETTER_SPACING_DAYS = 30
DISPUTE_PAUSE_DAYS = Limits().dispute_pause_days
PROMISE_MAX_DELAY = 14
PLAN_PERIOD_DAYS = 30
OUTCOME_INDEX = {name: code for code, name in enumerate(OUTCOMES)}
OUTCOME_NAMES: tuple[str, ...] = tuple(OUTCOME_INDEX)
CALL, SMS, EMAIL, LETTER = range(4)
# Per logged outbound contact: the policy's probability of acting, the intended offer, the state
# the behaviour model saw, and the true figures of the action taken (NaN for inbound contacts).
TRUTH_FIELDS: tuple[str, ...] = (
    "truth_p_act",
    "truth_offer_code",
    "truth_discount_pct",
    "truth_installments",
    "truth_balance",
    "truth_days_past_due",
    "truth_payments_90d",
    "truth_broken_promises_90d",
    "truth_contacts_7d",
    "truth_p_right_party_contact",
    "truth_p_commit",
    "truth_p_keep",
    "truth_p_self_cure_30d",
    "truth_p_payment_30d",
    "truth_expected_amount_30d",
)
NO_OFFER, DISCOUNT, PLAN = range(3)
SETTLED = ACCOUNT_EVENT_KINDS.index("settled")
PAID_IN_FULL = ACCOUNT_EVENT_KINDS.index("paid_in_full")
OUTBOUND, INBOUND = 0, 1

# Logging policy: channel weights, hour weights per channel (local 8..20), offer shares.
POLICY_CHANNEL_WEIGHTS = np.array([0.45, 0.25, 0.20, 0.10])
POLICY_HOUR_WEIGHTS = np.array(
    [
        [0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0.5, 0.5],  # call
        [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0],  # sms
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # email
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # letter: mailed at 10:00
    ]
)
POLICY_HOUR_PROBS = POLICY_HOUR_WEIGHTS / POLICY_HOUR_WEIGHTS.sum(axis=1, keepdims=True)
POLICY_OFFER_PROBS = np.array(
    [
        [0.6, 0.2, 0.2],
        [0.6, 0.2, 0.2],
        [0.4, 0.3, 0.3],
        [0.4, 0.3, 0.3],
    ]
)


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. The same config and seed always give the same portfolio."""

    accounts: int
    seed: int = 0
    start: date = date(2025, 1, 6)
    placement_days: int = 300
    horizon_days: int = 365
    work_days: int = 180
    accounts_per_debtor: float = 1.25
    currency: str = "USD"
    params: bh.BehaviourParams = field(default_factory=bh.BehaviourParams)

    def __post_init__(self) -> None:
        if self.accounts < 1:
            raise ValueError("accounts must be at least 1")
        if not 1 <= self.placement_days <= self.horizon_days:
            raise ValueError("placement_days must be between 1 and horizon_days")


_FLOAT_FIELDS = frozenset(
    {"amount", "amount_forgiven", "discount_pct", "action_probability", *TRUTH_FIELDS}
)


class _Log:
    """Column chunks appended day by day, concatenated once at the end.

    `fields` names every column with its dtype, so an empty log still yields empty columns.
    """

    def __init__(self, *fields: str) -> None:
        self.chunks: dict[str, list[np.ndarray]] = {
            name: [np.empty(0, dtype=np.float64 if name in _FLOAT_FIELDS else np.int64)]
            for name in fields
        }

    def add(self, **columns: np.ndarray) -> None:
        for name, values in columns.items():
            parts = self.chunks.setdefault(name, [])
            if len(parts) == 1 and parts[0].size == 0:
                parts.clear()  # drop the placeholder so dtypes come from real data
            parts.append(np.asarray(values))

    def columns(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(parts) for name, parts in self.chunks.items()}

    def pop(self, name: str) -> np.ndarray:
        """One column, concatenated; its chunks are released (keeps peak memory down)."""
        parts = self.chunks.pop(name)
        return np.concatenate(parts)


@dataclass
class SimulationOutput:
    """Raw event arrays in day/minute units; `tables.build_tables` turns them into contracts."""

    config: SimulationConfig
    population: Population
    balance: np.ndarray
    contacts: _Log
    payments: _Log
    offers: _Log
    offer_acceptances: _Log
    promises: _Log
    promise_results: _Log
    account_events: _Log


def _weighted_choice(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, options) probability matrix."""
    cumulative = np.cumsum(probs, axis=1)
    draws = rng.random(len(probs))[:, None] * cumulative[:, -1:]
    return (draws > cumulative).sum(axis=1).clip(0, probs.shape[1] - 1)


@dataclass
class _PolicyPick:
    """The logging policy's pick for each account it contacts, with its probabilities."""

    idx: np.ndarray  # the contacted accounts
    weekday: int
    p_act: np.ndarray  # probability of contacting the account at all
    channel: np.ndarray
    p_channel: np.ndarray
    hour: np.ndarray  # local hour
    p_hour: np.ndarray
    offer: np.ndarray  # NO_OFFER, DISCOUNT or PLAN
    p_offer: np.ndarray
    discount: np.ndarray  # percent; NaN unless a discount
    installments: np.ndarray  # 0 unless a plan
    p_terms: np.ndarray
    minute: np.ndarray  # local minute of the day

    def actions(self) -> dict[str, np.ndarray]:
        """The picked actions in the form `behaviour` takes."""
        return {
            "channel_code": self.channel,
            "local_hour": self.hour,
            "weekday": np.full(len(self.idx), self.weekday),
            "offer_code": self.offer,
            "discount_pct": self.discount,
            "installments": self.installments,
        }


@dataclass
class _ContactResults:
    """What came of each policy contact (boolean masks unless noted)."""

    engaged: np.ndarray  # the right party was reached
    commit: np.ndarray
    keep: np.ndarray  # a promise would be kept
    dispute: np.ndarray
    refused: np.ndarray
    opt_out: np.ndarray
    link_payment: np.ndarray  # committed to pay at once through an SMS or email link
    promise: np.ndarray  # committed to pay later
    outcome: np.ndarray  # OUTCOMES code (int8)
    offer_matters: np.ndarray  # the offer could reach the debtor
    presented: np.ndarray  # an offer reached the debtor


def _is_link_channel(channel: np.ndarray) -> np.ndarray:
    """SMS and email carry a payment link."""
    return (channel == SMS) | (channel == EMAIL)


def _deliverable(channel: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """Whether the contact can reach the debtor: a valid phone, email or postal address."""
    return np.select(
        [channel <= SMS, channel == EMAIL],
        [state["phone_valid"], state["email_status_code"] == 1],
        state["address_valid"],
    ).astype(bool)


def _opt_out(
    channel: np.ndarray,
    contacts_7d: np.ndarray,
    engaged: np.ndarray,
    other: np.ndarray,
    deliverable: np.ndarray,
    draw: np.ndarray,
) -> np.ndarray:
    """Opt-outs from contact fatigue, more likely on calls and after more recent contacts.

    Only a delivered call, SMS or email that ended in no commitment, dispute or refusal (and,
    for calls, in a conversation) can lead to one.
    """
    p_opt_out = np.where(channel == CALL, 0.01 + 0.01 * contacts_7d, 0.002 + 0.003 * contacts_7d)
    opt_out = (draw < p_opt_out) & np.where(channel == CALL, engaged & other, other)
    opt_out &= deliverable & (channel != LETTER)
    return opt_out


def _policy_outcome(
    channel: np.ndarray,
    *,
    engaged: np.ndarray,
    deliverable: np.ndarray,
    promise: np.ndarray,
    link_payment: np.ndarray,
    dispute: np.ndarray,
    opt_out: np.ndarray,
    refused: np.ndarray,
    draw: np.ndarray,
) -> np.ndarray:
    """The logged outcome code of each policy contact; `draw` splits the unreached ones."""
    o = OUTCOME_INDEX
    not_reached_call = np.select(
        [draw < 0.05, draw < 0.35], [o["wrong_party"], o["voicemail"]], o["no_answer"]
    )
    not_reached_digital = np.where((channel == EMAIL) & (draw < 0.35), o["opened"], o["delivered"])
    engaged_outcome = np.select(
        [promise, link_payment, dispute, opt_out, refused],
        [o["promise_to_pay"], o["clicked"], o["dispute"], o["opted_out"], o["refused"]],
        np.where(_is_link_channel(channel), o["clicked"], o["right_party_contact"]),
    )
    return np.select(
        [
            ~deliverable & (channel == CALL),
            ~deliverable,
            channel == LETTER,
            engaged,
            opt_out,
            channel == CALL,
        ],
        [
            o["wrong_party"],
            o["bounced"],
            o["delivered"],
            engaged_outcome,
            o["opted_out"],
            not_reached_call,
        ],
        not_reached_digital,
    ).astype(np.int8)


class _Simulation:
    def __init__(self, config: SimulationConfig, progress: Callable[[int], None] | None) -> None:
        self.config = config
        self.params = config.params
        self.progress = progress
        self.rng = np.random.default_rng(config.seed)
        self.pop = draw_population(
            self.rng, config.accounts, config.placement_days, config.accounts_per_debtor
        )
        n = config.accounts
        pop = self.pop
        debtor = pop.account_debtor
        self.n = n
        self.weekday0 = config.start.weekday()
        self.balance = pop.account_balance.astype(np.float64).copy()
        self.segment = pop.debtor_segment[debtor]
        self.willingness = pop.debtor_willingness[debtor]
        self.ability = pop.debtor_ability[debtor]
        self.phone_valid = pop.debtor_phone_valid[debtor]
        self.email_status = pop.debtor_email_status[debtor]
        self.address_valid = pop.debtor_address_valid[debtor]
        self.contacts_7d = np.zeros(n, np.int16)
        self.payments_90d = np.zeros(n, np.int16)
        self.broken_90d = np.zeros(n, np.int16)
        self.ring_contacts = np.zeros((CONTACTS_WINDOW + 1, n), np.int8)
        self.ring_payments = np.zeros((PAYMENTS_WINDOW + 1, n), np.int8)
        self.ring_broken = np.zeros((PAYMENTS_WINDOW + 1, n), np.int8)
        never = np.iinfo(np.int32).min // 2
        self.last_call_conversation = np.full(n, never, np.int32)
        self.last_letter = np.full(n, never, np.int32)
        self.opted_out = np.zeros(n, np.uint8)  # bit 1 call, 2 sms, 4 email
        self.phone_strikes = np.zeros(n, np.int8)
        self.email_bounced = np.zeros(n, bool)
        self.address_bounced = np.zeros(n, bool)
        self.paused_until = np.full(n, never, np.int32)
        # the one open promise per account
        self.promise_id = np.full(n, -1, np.int64)
        self.promise_made_day = np.zeros(n, np.int32)
        self.promise_made_minute = np.zeros(n, np.int16)
        self.promise_due_day = np.zeros(n, np.int32)
        self.promise_amount = np.zeros(n)
        self.promise_paid = np.zeros(n)
        self.promise_will_pay = np.zeros(n, bool)
        self.promise_pay_day = np.zeros(n, np.int32)
        self.promise_settles = np.zeros(n, bool)
        self.plan_offer = np.full(n, -1, np.int64)
        self.plan_remaining = np.zeros(n, np.int16)
        self.plan_installment = np.zeros(n)
        # a letter answered by an inbound call on a later day
        self.inbound_day = np.full(n, -1, np.int32)
        self.inbound_outcome = np.zeros(n, np.int8)
        self.inbound_offer = np.full(n, -1, np.int64)
        self.inbound_offer_code = np.zeros(n, np.int8)
        self.inbound_amount = np.zeros(n)
        self.inbound_keep = np.zeros(n, bool)
        self.inbound_installments = np.zeros(n, np.int16)
        self.next_offer_id = 1
        self.next_promise_id = 1
        self.contacts = _Log(
            "account",
            "day",
            "minute",
            "channel",
            "direction",
            "outcome",
            "offer_id",
            "action_probability",
            *TRUTH_FIELDS,
        )
        self.payments = _Log("account", "day", "minute", "amount", "method")
        self.offers = _Log(
            "offer_id", "account", "kind", "discount_pct", "installments", "day", "minute"
        )
        self.acceptances = _Log("offer_id", "account", "day", "minute")
        self.promises = _Log(
            "promise_id", "account", "made_day", "made_minute", "due_day", "amount", "offer_id"
        )
        self.results = _Log("promise_id", "kept")
        self.events = _Log("account", "day", "minute", "kind", "amount_forgiven")

    # ----- state -----------------------------------------------------------------------
    def state(self, idx: np.ndarray, day: int) -> dict[str, np.ndarray]:
        pop = self.pop
        return {
            "balance": self.balance[idx],
            "original_balance": pop.account_balance[idx],
            "days_past_due": day - pop.account_delinquent_day[idx],
            "payments_90d": self.payments_90d[idx],
            "broken_promises_90d": self.broken_90d[idx],
            "contacts_7d": self.contacts_7d[idx],
            "pre_placement_payments": pop.account_pre_payments[idx],
            "product_code": pop.account_product[idx],
            "willingness": self.willingness[idx],
            "ability": self.ability[idx],
            "segment_code": self.segment[idx],
            "phone_valid": self.phone_valid[idx],
            "email_status_code": self.email_status[idx],
            "address_valid": self.address_valid[idx],
        }

    # ----- events ------------------------------------------------------------------------
    def open_promises(
        self,
        idx: np.ndarray,
        day: int,
        minute: np.ndarray,
        amount: np.ndarray,
        keep: np.ndarray,
        offer_code: np.ndarray,
        offer_id: np.ndarray,
        installments: np.ndarray,
        due_day: np.ndarray | None = None,
    ) -> None:
        if not len(idx):
            return
        rng = self.rng
        amount = np.minimum(amount, self.balance[idx])
        live = amount > 0.005
        idx, minute, amount, keep = idx[live], minute[live], amount[live], keep[live]
        offer_code, offer_id, installments = offer_code[live], offer_id[live], installments[live]
        if due_day is not None:
            due_day = due_day[live]
        if not len(idx):
            return
        if due_day is None:
            due_day = day + rng.integers(0, PROMISE_MAX_DELAY + 1, len(idx))
        # a promise made in the last minutes of a day is paid on a later day at the earliest
        first = day + (minute >= 23 * 60 + 50)
        pay_day = first + np.floor(rng.random(len(idx)) * (due_day - first + 1)).astype(np.int32)
        ids = np.arange(self.next_promise_id, self.next_promise_id + len(idx))
        self.next_promise_id += len(idx)
        plan = offer_code == PLAN
        self.promises.add(
            promise_id=ids,
            account=idx,
            made_day=np.full(len(idx), day, np.int32),
            made_minute=minute,
            due_day=due_day,
            amount=np.round(amount, 2),
            offer_id=np.where(plan, offer_id, -1),
        )
        self.promise_id[idx] = ids
        self.promise_made_day[idx] = day
        self.promise_made_minute[idx] = minute
        self.promise_due_day[idx] = due_day
        self.promise_amount[idx] = np.round(amount, 2)
        self.promise_paid[idx] = 0.0
        self.promise_will_pay[idx] = keep
        self.promise_pay_day[idx] = pay_day
        self.promise_settles[idx] = offer_code == DISCOUNT
        self.plan_offer[idx] = np.where(plan, offer_id, -1)
        self.plan_remaining[idx] = np.where(plan, np.maximum(installments - 1, 0), 0)
        self.plan_installment[idx] = np.where(plan, amount, 0.0)

    def pay(
        self, idx: np.ndarray, day: int, minute: np.ndarray, amount: np.ndarray, settles: np.ndarray
    ) -> None:
        if not len(idx):
            return
        amount = np.round(np.minimum(amount, self.balance[idx]), 2)
        live = amount > 0.005
        idx, minute, amount, settles = idx[live], minute[live], amount[live], settles[live]
        if not len(idx):
            return
        method = _weighted_choice(
            self.rng, np.tile([0.45, 0.25, 0.15, 0.02, 0.05, 0.08, 0.0], (len(idx), 1))
        )
        self.payments.add(
            account=idx,
            day=np.full(len(idx), day, np.int32),
            minute=minute,
            amount=amount,
            method=method.astype(np.int8),
        )
        np.subtract.at(self.balance, idx, amount)
        self.close_paid_off(idx, day, minute, settles)
        slot = day % (PAYMENTS_WINDOW + 1)
        np.add.at(self.ring_payments[slot], idx, 1)
        np.add.at(self.payments_90d, idx, 1)
        has_promise = self.promise_id[idx] >= 0
        np.add.at(self.promise_paid, idx[has_promise], amount[has_promise])

    def close_paid_off(
        self, idx: np.ndarray, day: int, minute: np.ndarray, settles: np.ndarray
    ) -> None:
        """After payments: a settling payment forgives what is left (`settled`), and a balance
        brought to 0 otherwise is `paid_in_full`; both are logged as account events."""
        payers, first = np.unique(idx, return_index=True)
        settling = np.isin(payers, idx[settles])
        left = self.balance[payers]
        forgiven = np.where(settling & (left >= 0.005), np.round(left, 2), 0.0)
        self.balance[payers[settling]] = 0.0
        self.balance[self.balance < 0.005] = 0.0
        closed = self.balance[payers] <= 0.0
        if not closed.any():
            return
        settled = forgiven[closed] > 0
        self.events.add(
            account=payers[closed],
            day=np.full(int(closed.sum()), day, np.int32),
            minute=minute[first][closed],
            kind=np.where(settled, SETTLED, PAID_IN_FULL).astype(np.int8),
            amount_forgiven=np.where(settled, forgiven[closed], np.nan),
        )

    def log_contacts(self, idx: np.ndarray, day: int, **columns: np.ndarray) -> None:
        count = len(idx)
        defaults = {
            "offer_id": np.full(count, -1, np.int64),
            "action_probability": np.full(count, np.nan, np.float32),
        }
        defaults.update({name: np.full(count, np.nan, np.float32) for name in TRUTH_FIELDS})
        defaults.update(
            {
                name: np.asarray(v, np.float32) if name in TRUTH_FIELDS else v
                for name, v in columns.items()
            }
        )
        self.contacts.add(
            account=idx.astype(np.int32), day=np.full(count, day, np.int32), **defaults
        )

    def in_inventory(self, day: int) -> np.ndarray:
        """Accounts worked on local `day`: placed, within `work_days`, balance left at its start."""
        placed = self.pop.account_placed_day
        return (placed <= day) & (day < placed + self.config.work_days) & (self.balance > 0)

    def fork(self, accounts: np.ndarray, rng: np.random.Generator) -> _Simulation:
        """An independent simulation of copies of `accounts` in their current state.

        Account k of the fork is a copy of account `accounts[k]` (repeats give independent
        copies: replicates of one account). The fork draws from `rng` and logs into empty logs;
        this simulation is left untouched, so it continues exactly as if never forked. Accounts
        never interact, so a subset evolves as it would among all accounts.
        """
        accounts = np.asarray(accounts, np.int64)
        fork = copy.copy(self)
        for name, value in vars(self).items():
            # every array of the simulation's state is per account, along its last axis
            if isinstance(value, np.ndarray):
                if value.shape[-1] != self.n:
                    raise AssertionError(f"{name} is not a per-account array")
                setattr(fork, name, value[..., accounts])
        fork.pop = replace(
            self.pop,
            **{
                f.name: getattr(self.pop, f.name)[accounts]
                for f in fields(self.pop)
                if f.name.startswith("account_")
            },
        )
        fork.n = len(accounts)
        fork.rng = rng
        fork.progress = None
        logs = ("contacts", "payments", "offers", "acceptances", "promises", "results", "events")
        for name in logs:
            setattr(fork, name, _Log(*getattr(self, name).chunks))
        return fork

    # ----- the day -----------------------------------------------------------------------
    def run(self) -> SimulationOutput:
        for day in range(self.config.horizon_days):
            self.step(day)
            if self.progress is not None:
                self.progress(day)
        return self.output()

    def step(self, day: int) -> None:
        """Simulate local calendar day `day` (days must be stepped in order)."""
        for ring, counts, window in (
            (self.ring_contacts, self.contacts_7d, CONTACTS_WINDOW),
            (self.ring_payments, self.payments_90d, PAYMENTS_WINDOW),
            (self.ring_broken, self.broken_90d, PAYMENTS_WINDOW),
        ):
            slot = day % (window + 1)
            counts -= ring[slot]
            ring[slot] = 0
        in_inventory = self.in_inventory(day)
        committed_today = np.zeros(self.n, bool)
        self.letters_answered(day, in_inventory, committed_today)
        self.spontaneous_calls(day, in_inventory, committed_today)
        self.policy_contacts(day, in_inventory, committed_today)
        self.promised_payments(day)
        self.self_cure(day, in_inventory & ~committed_today)
        self.settle_promises(day, in_inventory)

    def output(self) -> SimulationOutput:
        """The event logs and end state so far."""
        config = self.config
        return SimulationOutput(
            config=config,
            population=self.pop,
            balance=self.balance,
            contacts=self.contacts,
            payments=self.payments,
            offers=self.offers,
            offer_acceptances=self.acceptances,
            promises=self.promises,
            promise_results=self.results,
            account_events=self.events,
        )

    def conversation_outcome(
        self, engaged: np.ndarray, commit: np.ndarray, product: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dispute and refusal among reached debtors who did not commit."""
        rng = self.rng
        p_dispute = np.where(product == bh.SIM_PRODUCTS.index("medical"), 0.10, 0.04)
        dispute = engaged & ~commit & (rng.random(len(engaged)) < p_dispute)
        refused = engaged & ~commit & ~dispute & (rng.random(len(engaged)) < 0.35)
        return dispute, refused, ~commit & ~dispute & ~refused

    def letters_answered(self, day: int, in_inventory: np.ndarray, committed: np.ndarray) -> None:
        idx = np.flatnonzero((self.inbound_day == day) & in_inventory)
        self.inbound_day[self.inbound_day == day] = -1
        if not len(idx):
            return
        minute = self.rng.integers(9 * 60, 17 * 60, len(idx)).astype(np.int16)
        outcome = self.inbound_outcome[idx]
        self.log_contacts(
            idx,
            day,
            channel=np.full(len(idx), CALL, np.int8),
            direction=np.full(len(idx), INBOUND, np.int8),
            minute=minute,
            outcome=outcome,
        )
        self.after_conversation(idx, day, outcome)
        commit = outcome == OUTCOME_INDEX["promise_to_pay"]
        accepted = commit & (self.inbound_offer[idx] >= 0)
        self.acceptances.add(
            offer_id=self.inbound_offer[idx[accepted]],
            account=idx[accepted],
            day=np.full(accepted.sum(), day, np.int32),
            minute=minute[accepted] + 2,
        )
        c = idx[commit]
        committed[c] = True
        self.open_promises(
            c,
            day,
            minute[commit] + 3,
            self.inbound_amount[c],
            self.inbound_keep[c],
            self.inbound_offer_code[c],
            self.inbound_offer[c],
            self.inbound_installments[c],
        )

    def after_conversation(self, idx: np.ndarray, day: int, outcome: np.ndarray) -> None:
        """A telephone conversation starts the Regulation F quiet week; a dispute pauses all."""
        self.last_call_conversation[idx] = day
        disputed = idx[outcome == OUTCOME_INDEX["dispute"]]
        self.paused_until[disputed] = day + DISPUTE_PAUSE_DAYS

    def spontaneous_calls(self, day: int, in_inventory: np.ndarray, committed: np.ndarray) -> None:
        rng = self.rng
        candidates = in_inventory & (self.promise_id < 0) & (self.inbound_day < 0) & ~committed
        idx = np.flatnonzero(candidates & (rng.random(self.n) < 0.0015))
        if not len(idx):
            return
        state = self.state(idx, day)
        accept = rng.random(len(idx)) < bh._sigmoid(bh.willingness_logit(state, self.params))
        idx = idx[accept]
        if not len(idx):
            return
        state = self.state(idx, day)
        actions = _actions(len(idx), CALL, 12, (self.weekday0 + day) % 7, NO_OFFER)
        commit = rng.random(len(idx)) < bh.p_commit(state, actions, self.params)
        keep = rng.random(len(idx)) < bh.p_keep(state, actions, self.params)
        dispute, refused, _ = self.conversation_outcome(
            np.ones(len(idx), bool), commit, state["product_code"]
        )
        outcome = np.select(
            [commit, dispute, refused],
            [OUTCOME_INDEX["promise_to_pay"], OUTCOME_INDEX["dispute"], OUTCOME_INDEX["refused"]],
            OUTCOME_INDEX["right_party_contact"],
        ).astype(np.int8)
        minute = rng.integers(9 * 60, 19 * 60, len(idx)).astype(np.int16)
        self.log_contacts(
            idx,
            day,
            channel=np.full(len(idx), CALL, np.int8),
            direction=np.full(len(idx), INBOUND, np.int8),
            minute=minute,
            outcome=outcome,
        )
        self.after_conversation(idx, day, outcome)
        committed[idx[commit]] = True
        amount = bh.committed_amount(state, actions)
        zeros = np.zeros(commit.sum(), np.int64)
        self.open_promises(
            idx[commit],
            day,
            minute[commit] + 3,
            amount[commit],
            keep[commit],
            zeros,
            zeros - 1,
            zeros,
        )

    # ----- the logging policy's outbound contacts ----------------------------------------
    def policy_contacts(self, day: int, in_inventory: np.ndarray, committed: np.ndarray) -> None:
        """The logging policy's outbound contacts on local `day` and what they lead to.

        Accounts that promise or pay today are marked in `committed`.
        """
        weekday = (self.weekday0 + day) % 7
        if weekday == 6:  # the historical policy rests on Sundays
            return
        idx = self.policy_eligible(day, in_inventory, committed)
        if not len(idx):
            return
        idx, p_act, available = self.policy_acts(idx, day, weekday)
        if not len(idx):
            return
        pick = self.policy_pick(idx, weekday, p_act, available)
        state = self.state(idx, day)
        actions = pick.actions()
        truth = bh.action_outcomes(state, actions, self.params)
        results = self.draw_contact_results(pick, state, truth)
        offer_id = self.register_offers(pick, results, day)
        self.log_policy_contacts(pick, results, offer_id, state, truth, day)
        self.contact_effects(pick, results, day)
        amount = bh.committed_amount(state, actions)
        self.schedule_letter_replies(pick, results, offer_id, amount, day)
        self.conversation_promises(pick, results, offer_id, amount, day, committed)
        self.link_payments(pick, results, offer_id, amount, day, committed)

    def policy_eligible(
        self, day: int, in_inventory: np.ndarray, committed: np.ndarray
    ) -> np.ndarray:
        """Accounts the policy may contact on `day`.

        In inventory, not committed earlier today, no open promise, no letter awaiting its
        answer and no dispute pause.
        """
        eligible = (
            in_inventory
            & ~committed
            & (self.promise_id < 0)
            & (self.inbound_day < 0)
            & (self.paused_until < day)
        )
        return np.flatnonzero(eligible)

    def act_probability(self, idx: np.ndarray, day: int, weekday: int) -> np.ndarray:
        """The policy's probability of contacting each account of `idx` on `day`.

        Higher for balances over 2000 and in the first 30 days after placement, halved on
        Saturdays.
        """
        balance = self.balance[idx]
        p_act = 0.22 * np.where(balance > 2000, 1.3, 0.85)
        p_act = p_act * (0.5 if weekday == 5 else 1.0)
        return p_act * np.where(day - self.pop.account_placed_day[idx] < 30, 1.2, 1.0)

    def open_channels(self, idx: np.ndarray, day: int) -> np.ndarray:
        """(accounts, 4) mask of the channels (call, SMS, email, letter) open on `day`.

        Phones are closed after two strikes, a channel after its opt-out; calls within the
        Regulation F quiet week after a conversation; email without a known address or after
        a bounce; letters within `LETTER_SPACING_DAYS` of the last one or after a bounce.
        """
        phone_ok = self.phone_strikes[idx] < 2
        return np.stack(
            [
                phone_ok
                & (self.opted_out[idx] & 1 == 0)
                & (day - self.last_call_conversation[idx] > REG_F_CONVERSATION_DAYS),
                phone_ok & (self.opted_out[idx] & 2 == 0),
                (self.email_status[idx] != 0)
                & (self.opted_out[idx] & 4 == 0)
                & ~self.email_bounced[idx],
                (day - self.last_letter[idx] >= LETTER_SPACING_DAYS) & ~self.address_bounced[idx],
            ],
            axis=1,
        )

    def policy_acts(
        self, idx: np.ndarray, day: int, weekday: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw which eligible accounts the policy contacts (only those with an open channel).

        Returns:
            The contacted accounts, their probability of being contacted and their open
            channels.
        """
        p_act = self.act_probability(idx, day, weekday)
        available = self.open_channels(idx, day)
        act = (self.rng.random(len(idx)) < p_act) & available.any(axis=1)
        return idx[act], p_act[act], available[act]

    def policy_pick(
        self, idx: np.ndarray, weekday: int, p_act: np.ndarray, available: np.ndarray
    ) -> _PolicyPick:
        """Draw channel, hour, offer and minute of each contact, in that order."""
        channel, p_channel = self.choose_channel(available)
        hour, p_hour = self.choose_hour(channel)
        offer, p_offer, discount, installments, p_terms = self.choose_offer(channel)
        return _PolicyPick(
            idx=idx,
            weekday=weekday,
            p_act=p_act,
            channel=channel,
            p_channel=p_channel,
            hour=hour,
            p_hour=p_hour,
            offer=offer,
            p_offer=p_offer,
            discount=discount,
            installments=installments,
            p_terms=p_terms,
            minute=self.contact_minute(channel, hour),
        )

    def choose_channel(self, available: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draw a channel among the open ones by the policy's renormalized channel weights.

        Returns:
            The channel codes and their probabilities.
        """
        channel_weights = POLICY_CHANNEL_WEIGHTS * available
        channel_probs = channel_weights / channel_weights.sum(axis=1, keepdims=True)
        channel = _weighted_choice(self.rng, channel_probs)
        return channel, channel_probs[np.arange(len(channel)), channel]

    def choose_hour(self, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Draw the local hour of each contact by its channel's hour weights.

        Returns:
            The local hours and their probabilities given the channel.
        """
        hour_index = _weighted_choice(self.rng, POLICY_HOUR_PROBS[channel])
        return bh.CONTACT_HOURS[hour_index], POLICY_HOUR_PROBS[channel, hour_index]

    def choose_offer(
        self, channel: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Draw the offer of each contact by its channel, then its terms uniformly.

        Returns:
            Offer codes, their probabilities given the channel, discount percentages (NaN
            unless a discount), installments (0 unless a plan) and the terms' probabilities.
        """
        rng = self.rng
        count = len(channel)
        offer = _weighted_choice(rng, POLICY_OFFER_PROBS[channel])
        p_offer = POLICY_OFFER_PROBS[channel, offer]
        discount = np.where(
            offer == DISCOUNT, np.asarray(bh.DISCOUNT_CHOICES)[rng.integers(0, 3, count)], np.nan
        )
        installments = np.where(
            offer == PLAN, np.asarray(bh.INSTALLMENT_CHOICES)[rng.integers(0, 3, count)], 0
        )
        p_terms = np.where(offer == NO_OFFER, 1.0, 1.0 / 3.0)
        return offer, p_offer, discount, installments, p_terms

    def contact_minute(self, channel: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """Draw a uniform minute within each contact's hour; letters are mailed at 10:00."""
        minute = (hour * 60 + self.rng.integers(0, 60, len(channel))).astype(np.int16)
        return np.where(channel == LETTER, 10 * 60, minute).astype(np.int16)

    def draw_contact_results(
        self, pick: _PolicyPick, state: dict[str, np.ndarray], truth: pd.DataFrame
    ) -> _ContactResults:
        """Draw reach, commitment, keeping, dispute, refusal, opt-out and link payment.

        Args:
            pick: The policy's contacts.
            state: The behaviour state of the contacted accounts.
            truth: `behaviour.action_outcomes` of the picked actions in that state.
        """
        channel = pick.channel
        reach = truth["p_right_party_contact"].to_numpy()
        commit_p = truth["p_commit"].to_numpy()
        keep_p = truth["p_keep"].to_numpy()
        draws = self.rng.random((7, len(channel)))
        engaged = draws[0] < reach
        commit = engaged & (draws[1] < commit_p)
        keep = draws[2] < keep_p
        dispute, refused, other = self.conversation_outcome(engaged, commit, state["product_code"])
        deliverable = _deliverable(channel, state)
        opt_out = _opt_out(channel, state["contacts_7d"], engaged, other, deliverable, draws[3])
        link_payment = commit & _is_link_channel(channel) & (draws[4] < 0.6)
        promise = commit & ~link_payment
        outcome = _policy_outcome(
            channel,
            engaged=engaged,
            deliverable=deliverable,
            promise=promise,
            link_payment=link_payment,
            dispute=dispute,
            opt_out=opt_out,
            refused=refused,
            draw=draws[5],
        )
        # The offer reaches the debtor only in a conversation (calls) or a delivered message;
        # otherwise it cannot matter and the logged probability is of the channel and hour only.
        offer_matters = np.where(channel == CALL, engaged, deliverable)
        return _ContactResults(
            engaged=engaged,
            commit=commit,
            keep=keep,
            dispute=dispute,
            refused=refused,
            opt_out=opt_out,
            link_payment=link_payment,
            promise=promise,
            outcome=outcome,
            offer_matters=offer_matters,
            presented=offer_matters & (pick.offer != NO_OFFER),
        )

    def register_offers(self, pick: _PolicyPick, results: _ContactResults, day: int) -> np.ndarray:
        """Give the offers that reached the debtor an id and log them.

        Returns:
            The offer id of each contact (-1 where no offer was presented).
        """
        presented = results.presented
        offer_id = np.full(len(pick.idx), -1, np.int64)
        n_offers = int(presented.sum())
        offer_id[presented] = np.arange(self.next_offer_id, self.next_offer_id + n_offers)
        self.next_offer_id += n_offers
        self.offers.add(
            offer_id=offer_id[presented],
            account=pick.idx[presented],
            kind=pick.offer[presented].astype(np.int8),
            discount_pct=pick.discount[presented],
            installments=pick.installments[presented],
            day=np.full(n_offers, day, np.int32),
            minute=pick.minute[presented],
        )
        return offer_id

    def log_policy_contacts(
        self,
        pick: _PolicyPick,
        results: _ContactResults,
        offer_id: np.ndarray,
        state: dict[str, np.ndarray],
        truth: pd.DataFrame,
        day: int,
    ) -> None:
        """Log the contacts with the policy's probability of its pick and the hidden truth.

        The logged probability is P(channel) x P(hour | channel), times P(offer and terms |
        channel) only where the offer could reach the debtor.
        """
        probability = (
            pick.p_channel
            * pick.p_hour
            * np.where(results.offer_matters, pick.p_offer * pick.p_terms, 1.0)
        )
        count = len(pick.idx)
        self.log_contacts(
            pick.idx,
            day,
            channel=pick.channel.astype(np.int8),
            direction=np.full(count, OUTBOUND, np.int8),
            minute=pick.minute,
            outcome=results.outcome,
            offer_id=offer_id,
            action_probability=probability.astype(np.float32),
            truth_p_act=pick.p_act.astype(np.float32),
            truth_offer_code=pick.offer.astype(np.int8),
            truth_discount_pct=pick.discount.astype(np.float32),
            truth_installments=pick.installments.astype(np.int8),
            truth_balance=state["balance"],
            truth_days_past_due=state["days_past_due"].astype(np.int32),
            truth_payments_90d=state["payments_90d"],
            truth_broken_promises_90d=state["broken_promises_90d"],
            truth_contacts_7d=state["contacts_7d"],
            **{
                f"truth_{name}": truth[name].to_numpy(np.float32)
                for name in (
                    "p_right_party_contact",
                    "p_commit",
                    "p_keep",
                    "p_self_cure_30d",
                    "p_payment_30d",
                    "expected_amount_30d",
                )
            },
        )

    def contact_effects(self, pick: _PolicyPick, results: _ContactResults, day: int) -> None:
        """Apply what each contact changes in the account's state.

        Contact counts, the quiet week after a call conversation, dispute pauses, phone
        strikes, bounced addresses, the last letter's day and opt-outs.
        """
        idx, channel, outcome = pick.idx, pick.channel, results.outcome
        o = OUTCOME_INDEX
        slot = day % (CONTACTS_WINDOW + 1)
        self.ring_contacts[slot, idx] += 1
        self.contacts_7d[idx] += 1
        call_conversation = (channel == CALL) & results.engaged
        self.after_conversation(idx[call_conversation], day, outcome[call_conversation])
        self.paused_until[idx[results.dispute & (channel != LETTER) & ~call_conversation]] = (
            day + DISPUTE_PAUSE_DAYS
        )
        strikes = (outcome == o["wrong_party"]).astype(np.int8)
        strikes += 2 * ((outcome == o["bounced"]) & (channel == SMS)).astype(np.int8)
        self.phone_strikes[idx] += strikes
        self.email_bounced[idx[(outcome == o["bounced"]) & (channel == EMAIL)]] = True
        self.address_bounced[idx[(outcome == o["bounced"]) & (channel == LETTER)]] = True
        self.last_letter[idx[channel == LETTER]] = day
        bits = np.array([1, 2, 4, 0], np.uint8)[channel]
        opt_out = results.opt_out
        self.opted_out[idx[opt_out]] |= bits[opt_out]

    def schedule_letter_replies(
        self,
        pick: _PolicyPick,
        results: _ContactResults,
        offer_id: np.ndarray,
        amount: np.ndarray,
        day: int,
    ) -> None:
        """Letters that reach the debtor: the debtor answers by calling in 3 to 10 days later."""
        o = OUTCOME_INDEX
        letter = (pick.channel == LETTER) & results.engaged
        answered = pick.idx[letter]
        self.inbound_day[answered] = day + self.rng.integers(3, 11, len(answered))
        self.inbound_outcome[answered] = np.select(
            [results.commit[letter], results.dispute[letter], results.refused[letter]],
            [o["promise_to_pay"], o["dispute"], o["refused"]],
            o["right_party_contact"],
        )
        self.inbound_offer[answered] = offer_id[letter]
        self.inbound_offer_code[answered] = np.where(
            offer_id[letter] >= 0, pick.offer[letter], NO_OFFER
        )
        self.inbound_amount[answered] = amount[letter]
        self.inbound_keep[answered] = results.keep[letter]
        self.inbound_installments[answered] = pick.installments[letter]

    def accept_offers(
        self, pick: _PolicyPick, offer_id: np.ndarray, accepted: np.ndarray, day: int
    ) -> None:
        """Log the acceptance of the `accepted` contacts' offers a minute into the contact."""
        self.acceptances.add(
            offer_id=offer_id[accepted],
            account=pick.idx[accepted],
            day=np.full(accepted.sum(), day, np.int32),
            minute=pick.minute[accepted] + 1,
        )

    def conversation_promises(
        self,
        pick: _PolicyPick,
        results: _ContactResults,
        offer_id: np.ndarray,
        amount: np.ndarray,
        day: int,
        committed: np.ndarray,
    ) -> None:
        """Promises made in the contact (calls, SMS and email replies; letters answer later)."""
        idx, offer, presented = pick.idx, pick.offer, results.presented
        made = results.promise & (pick.channel != LETTER)
        committed[idx[made]] = True
        self.accept_offers(pick, offer_id, made & presented, day)
        self.open_promises(
            idx[made],
            day,
            pick.minute[made] + 2,
            amount[made],
            results.keep[made],
            np.where(presented[made], offer[made], NO_OFFER),
            offer_id[made],
            pick.installments[made],
        )

    def link_payments(
        self,
        pick: _PolicyPick,
        results: _ContactResults,
        offer_id: np.ndarray,
        amount: np.ndarray,
        day: int,
        committed: np.ndarray,
    ) -> None:
        """Payments made at once through the link in an SMS or email (by those who keep)."""
        paid = results.link_payment & results.keep
        committed[pick.idx[results.link_payment]] = True
        presented = results.presented
        self.accept_offers(pick, offer_id, paid & presented, day)
        payers = pick.idx[paid]
        pay_minute = (pick.minute[paid] + self.rng.integers(2, 30, len(payers))).astype(np.int16)
        settles = presented[paid] & (pick.offer[paid] == DISCOUNT)
        plan = presented[paid] & (pick.offer[paid] == PLAN)
        self.pay(payers, day, pay_minute, amount[paid], settles)
        self.plan_after_link_payment(
            payers[plan],
            day,
            pick.weekday,
            pay_minute[plan],
            amount[paid][plan],
            offer_id[paid][plan],
            pick.installments[paid][plan],
        )

    def plan_after_link_payment(
        self,
        idx: np.ndarray,
        day: int,
        weekday: int,
        pay_minute: np.ndarray,
        amount: np.ndarray,
        offer_id: np.ndarray,
        installments: np.ndarray,
    ) -> None:
        """Open the next installment of plans whose first one was paid by link.

        It becomes a promise due one plan period later.
        """
        if not len(idx):
            return
        state = self.state(idx, day)
        actions = _actions(len(idx), SMS, 12, weekday, PLAN)
        keep = self.rng.random(len(idx)) < bh.p_keep(state, actions, self.params)
        self.open_promises(
            idx,
            day,
            pay_minute + 1,
            amount,
            keep,
            np.full(len(idx), PLAN),
            offer_id,
            installments - 1,
            due_day=np.full(len(idx), day + PLAN_PERIOD_DAYS, np.int32),
        )

    def promised_payments(self, day: int) -> None:
        due = (self.promise_id >= 0) & self.promise_will_pay & (self.promise_pay_day == day)
        idx = np.flatnonzero(due)
        if not len(idx):
            return
        made_today = self.promise_made_day[idx] == day
        minute = self.rng.integers(7 * 60, 23 * 60, len(idx))
        made_minute = self.promise_made_minute[idx].astype(np.int64)
        later = made_minute + 1 + self.rng.integers(0, 1439 - made_minute.clip(None, 1437))
        minute = np.where(made_today, later.clip(None, 1439), minute)
        self.pay(
            idx, day, minute.astype(np.int16), self.promise_amount[idx], self.promise_settles[idx]
        )

    def self_cure(self, day: int, candidates: np.ndarray) -> None:
        rng = self.rng
        max_hazard = 1.0 - (1.0 - self.params.self_cure_30d_max) ** (1.0 / 30.0)
        idx = np.flatnonzero(candidates & (rng.random(self.n) < max_hazard))
        if not len(idx):
            return
        state = self.state(idx, day)
        p30 = bh.p_self_cure_30d(state, self.params)
        hazard = 1.0 - (1.0 - p30) ** (1.0 / 30.0)
        idx = idx[rng.random(len(idx)) < hazard / max_hazard]
        if not len(idx):
            return
        state = self.state(idx, day)
        amount = np.round(state["balance"] * bh.payment_fraction(state), 2)
        minute = rng.integers(7 * 60, 23 * 60, len(idx)).astype(np.int16)
        self.pay(idx, day, minute, amount, np.zeros(len(idx), bool))

    def settle_promises(self, day: int, in_inventory: np.ndarray) -> None:
        idx = np.flatnonzero((self.promise_id >= 0) & (self.promise_due_day + GRACE_DAYS == day))
        if not len(idx):
            return
        kept = self.promise_paid[idx] >= self.promise_amount[idx] - 0.005
        self.results.add(promise_id=self.promise_id[idx], kept=kept)
        broken = idx[~kept]
        slot = day % (PAYMENTS_WINDOW + 1)
        self.ring_broken[slot, broken] += 1
        self.broken_90d[broken] += 1
        self.promise_id[idx] = -1
        next_installment = kept & (self.plan_remaining[idx] > 0) & in_inventory[idx]
        next_installment &= self.balance[idx] > 0.005
        nxt = idx[next_installment]
        if not len(nxt):
            return
        remaining = self.plan_remaining[nxt]
        amount = np.where(remaining == 1, self.balance[nxt], self.plan_installment[nxt])
        state = self.state(nxt, day + 1)
        actions = _actions(len(nxt), CALL, 12, 0, PLAN)
        keep = self.rng.random(len(nxt)) < bh.p_keep(state, actions, self.params)
        self.open_promises(
            nxt,
            day,
            np.full(len(nxt), 23 * 60 + 55, np.int16),
            amount,
            keep,
            np.full(len(nxt), PLAN),
            self.plan_offer[nxt],
            remaining,
            due_day=self.promise_due_day[nxt] + PLAN_PERIOD_DAYS,
        )


def _actions(
    count: int, channel: int, hour: int, weekday: int, offer: int
) -> dict[str, np.ndarray]:
    return {
        "channel_code": np.full(count, channel),
        "local_hour": np.full(count, hour),
        "weekday": np.full(count, weekday),
        "offer_code": np.full(count, offer),
        "discount_pct": np.full(count, np.nan),
        "installments": np.zeros(count, np.int64),
    }


def run_simulation(
    config: SimulationConfig, progress: Callable[[int], None] | None = None
) -> SimulationOutput:
    """Simulate `config.horizon_days` days of collections on a freshly drawn portfolio.

    Args:
        config: Size, seed, calendar and behaviour parameters.
        progress: Called with the day index after each simulated day.
    """
    return _Simulation(config, progress).run()
