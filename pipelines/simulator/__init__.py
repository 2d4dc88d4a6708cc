"""A simulated collections portfolio with a known behaviour model (the truth).

`simulate_portfolio(SimulationConfig(accounts=1000, seed=7))` returns contract tables and the
hidden truth; `behaviour.action_outcomes` scores any action in any state against that truth;
`true_payment_probability` estimates the true probability of a payment after any as-of time.
"""

from __future__ import annotations

from collections.abc import Callable

from pipelines.simulator.engine import SimulationConfig, run_simulation
from pipelines.simulator.oracle import simulate_with_true_probability, true_payment_probability
from pipelines.simulator.tables import SimulatedPortfolio, build_tables

__all__ = [
    "SimulatedPortfolio",
    "SimulationConfig",
    "simulate_portfolio",
    "simulate_with_true_probability",
    "true_payment_probability",
]


def simulate_portfolio(
    config: SimulationConfig, progress: Callable[[int], None] | None = None
) -> SimulatedPortfolio:
    """Simulate a portfolio: contract tables, truth tables and a manifest (pure, no I/O)."""
    return build_tables(run_simulation(config, progress))
