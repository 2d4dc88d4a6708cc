"""The true probability of a payment in a window, estimated by re-running the simulator's future.

The propensity target is, for an account at an as-of time t, whether any payment arrives in
[t, t + horizon) under the logging policy. Future contacts are random, so its true probability has
no closed form: the oracle runs the seeded simulation day by day (exactly the history that
`simulate_portfolio` gives), and on the local day that contains each as-of time it forks the
state of the accounts in inventory, runs the fork forward `replicates` times with a fresh random
stream and counts, per account, the replicates with a payment whose UTC time is in the window.

Day boundary (an approximation): the simulator draws a whole local day at once, so a fork can
only start at the beginning of a day. The replicates start from the state at the beginning of the
local day d that contains t (UTC midnight is the afternoon or evening of the previous local day
in US time zones) and re-draw all of day d: only their payments at or after t count, but what
happens in them before t need not be what happened in the history (a payment the history made at
10:00 may come after t in a replicate, or not at all). Accounts whose balance the history
cleared on day d before t are not in inventory at t and are left out.

The probability is conditional on the simulator's whole state at t, including draws it has
already made and no data shows (whether an open promise will be kept and on which day, the day a
letter will be answered): a ceiling for any model of the observable history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from simulator.engine import SimulationConfig, _Log, _Simulation
from simulator.population import TIMEZONES
from simulator.tables import SimulatedPortfolio, _as_utc, _Clock, build_tables, numbered_ids

__all__ = ["simulate_with_true_probability", "true_payment_probability"]

# Forked account copies simulated at once; more replicates run in several batches.
MAX_FORK_ROWS = 200_000
_UNUSED_LOGS = ("contacts", "offers", "acceptances", "promises", "results", "events")


class _Discard(_Log):
    """A log that keeps nothing (the replicates only need their payments)."""

    def add(self, **columns: np.ndarray) -> None:
        pass


@dataclass
class _Window:
    """One as-of time: its UTC window and, per time zone, the local days it spans."""

    as_of: pd.Timestamp
    start_us: int
    end_us: int
    first_day: np.ndarray  # per zone: local day containing t
    last_day: np.ndarray  # per zone: local day containing t + horizon


def _local_day(moment: pd.Timestamp, zone: str, start: datetime) -> int:
    local = moment.tz_convert(zone).tz_localize(None)
    return (local.normalize() - pd.Timestamp(start)).days


def _windows(as_of: Sequence[pd.Timestamp], horizon_days: int, start: datetime) -> list[_Window]:
    windows = []
    for moment in sorted({pd.Timestamp(t) for t in as_of}):
        if moment.tzinfo is None:
            raise ValueError(f"as_of {moment} has no time zone (use UTC)")
        moment = moment.tz_convert("UTC")
        end = moment + pd.Timedelta(days=horizon_days)
        windows.append(
            _Window(
                as_of=moment,
                start_us=moment.value // 1000,
                end_us=end.value // 1000,
                first_day=np.array([_local_day(moment, zone, start) for zone in TIMEZONES]),
                last_day=np.array([_local_day(end, zone, start) for zone in TIMEZONES]),
            )
        )
    return windows


def _cleared_before(
    sim: _Simulation, accounts: np.ndarray, day: int, start_us: int, clock: _Clock, tz: np.ndarray
) -> np.ndarray:
    """Which `accounts` (in inventory at the start of `day`) the history paid off before t.

    A balance reaches zero only by a payment, and nothing is paid after it, so an account whose
    balance is zero after the day was cleared by its last payment of the day.
    """
    cleared = sim.balance[accounts] <= 0
    log = sim.payments.chunks
    paid_account = np.concatenate(log["account"])
    paid_day = np.concatenate(log["day"])
    today = np.flatnonzero(paid_day == day)
    last = np.full(sim.n, -1, np.int64)
    last[paid_account[today]] = today  # in log order: the last write wins
    row = last[accounts]
    if (cleared & (row < 0)).any():
        raise AssertionError("a balance was cleared without a payment")
    row = np.where(cleared, row, 0)
    minute = np.concatenate(log["minute"])[row] if len(today) else np.zeros(len(row), np.int64)
    cleared_at = clock.micros(tz[accounts], np.full(len(accounts), day), minute)
    return cleared & (cleared_at < start_us)


def _replicate_payments(
    base: _Simulation,
    replicates: int,
    rng: np.random.Generator,
    first_day: int,
    last_day: int,
    window: _Window,
    clock: _Clock,
    tz: np.ndarray,
) -> np.ndarray:
    """How many replicates of each account of `base` pay inside the window."""
    hits = np.zeros(base.n, np.int64)
    per_batch = max(1, MAX_FORK_ROWS // max(base.n, 1))
    done = 0
    while done < replicates:
        batch = min(per_batch, replicates - done)
        rep = base.fork(np.tile(np.arange(base.n), batch), rng)
        for name in _UNUSED_LOGS:
            setattr(rep, name, _Discard())
        for day in range(first_day, last_day + 1):
            rep.step(day)
        paid = rep.payments.columns()
        copy = paid["account"].astype(np.int64)
        paid_us = clock.micros(tz[copy % base.n], paid["day"], paid["minute"])
        inside = np.unique(copy[(paid_us >= window.start_us) & (paid_us < window.end_us)])
        hits += np.bincount(inside % base.n, minlength=base.n)
        done += batch
    return hits


def _true_probability(
    config: SimulationConfig,
    as_of: Sequence[pd.Timestamp],
    horizon_days: int,
    replicates: int,
    seed: int,
    accounts: Sequence[str] | None = None,
    to_the_end: bool = True,
) -> tuple[_Simulation, pd.DataFrame]:
    """The main simulation and the estimates (see the public functions); the simulation runs
    to its end, or, when only the estimates are wanted, to the last window's start."""
    if replicates < 1 or horizon_days < 1:
        raise ValueError("replicates and horizon_days must be at least 1")
    start = datetime(config.start.year, config.start.month, config.start.day)
    windows = _windows(as_of, horizon_days, start)
    sim = _Simulation(config, None)
    tz = sim.pop.debtor_timezone[sim.pop.account_debtor]
    first_days = [int(day) for w in windows for day in w.first_day]
    if first_days and (min(first_days) < 0 or max(first_days) >= config.horizon_days):
        raise ValueError("every as_of must fall within the simulated days")
    last = max([int(w.last_day.max()) for w in windows], default=0)
    clock = _Clock(start, int(sim.pop.account_opened_day.min()) - 2, last + 2)

    # local day -> the windows starting on it, each with the accounts whose day contains t
    starts: dict[int, list[tuple[_Window, np.ndarray]]] = {}
    for window in windows:
        account_day = window.first_day[tz]
        for day in np.unique(account_day):
            group = np.flatnonzero(account_day == day)
            starts.setdefault(int(day), []).append((window, group))

    frames = [_empty_result()]
    account_ids = numbered_ids(len(sim.pop.account_debtor)).to_numpy()
    wanted = (
        np.ones(len(account_ids), bool)
        if accounts is None
        else np.isin(account_ids, np.asarray(list(accounts), dtype=object))
    )
    days = config.horizon_days if to_the_end else max(starts, default=-1) + 1
    for day in range(days):
        forks = []
        for window, group in starts.get(day, []):
            accounts = group[sim.in_inventory(day)[group] & wanted[group]]
            rng = np.random.default_rng([seed, window.start_us // 1_000_000])
            forks.append((window, accounts, sim.fork(accounts, rng), rng))
        sim.step(day)
        for window, accounts, base, rng in forks:
            # the history decides who is still in inventory at t; the fork starts before it
            keep = ~_cleared_before(sim, accounts, day, window.start_us, clock, tz)
            accounts = accounts[keep]
            last_day = int(window.last_day[tz[accounts]].max(initial=day))
            hits = _replicate_payments(
                base.fork(np.flatnonzero(keep), rng),
                replicates,
                rng,
                day,
                last_day,
                window,
                clock,
                tz[accounts],
            )
            frames.append(
                pd.DataFrame(
                    {
                        "account_id": account_ids[accounts],
                        "event_timestamp": _as_utc(np.full(len(accounts), window.start_us)),
                        "p_payment_true": hits / replicates,
                        "replicates": np.full(len(accounts), replicates, np.int64),
                    }
                )
            )
    result = pd.concat(frames, ignore_index=True)
    return sim, result.sort_values(["event_timestamp", "account_id"], ignore_index=True)


def _empty_result() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": np.empty(0, object),
            "event_timestamp": _as_utc(np.empty(0, np.int64)),
            "p_payment_true": np.empty(0),
            "replicates": np.empty(0, np.int64),
        }
    )


def true_payment_probability(
    config: SimulationConfig,
    as_of: Sequence[pd.Timestamp],
    horizon_days: int = 30,
    replicates: int = 64,
    seed: int = 12345,
    accounts: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The true probability of any payment in [t, t + horizon_days) per account and as-of time.

    Args:
        config: The simulation; its history is the one `simulate_portfolio(config)` gives.
        as_of: As-of times t (time-zone aware), within the simulated days. A window may run
            past them: the replicates simulate on, though the data holds no label there.
        horizon_days: Length of the payment window [t, t + horizon_days).
        replicates: Monte Carlo replicates of the future per as-of time; the estimate's
            standard error is sqrt(p (1 - p) / replicates).
        seed: Seed of the replicates' random streams (one stream per as-of time, so an
            account's estimate does not depend on which other as-of times are asked for).
        accounts: Estimate only these account ids (all by default). Accounts never interact,
            so a subset's estimates are as good as the whole book's, at a fraction of the
            replicates' cost.

    Returns:
        One row per account in inventory at each as-of time (placed, within its work days,
        with a balance left at t): `account_id`, `event_timestamp` (t, UTC), `p_payment_true`
        (share of replicates with any payment in the window) and `replicates`.
    """
    return _true_probability(config, as_of, horizon_days, replicates, seed, accounts, False)[1]


def simulate_with_true_probability(
    config: SimulationConfig,
    as_of: Sequence[pd.Timestamp],
    horizon_days: int = 30,
    replicates: int = 64,
    seed: int = 12345,
) -> tuple[SimulatedPortfolio, pd.DataFrame]:
    """`simulate_portfolio(config)` and `true_payment_probability(...)` from one simulation."""
    sim, result = _true_probability(config, as_of, horizon_days, replicates, seed)
    return build_tables(sim.output()), result
