"""A simulated collections portfolio with a known behaviour model (the truth).

`simulate_portfolio(SimulationConfig(accounts=1000, seed=7))` returns contract tables and the
hidden truth; `behaviour.action_outcomes` scores any action in any state against that truth;
`true_payment_probability` estimates the true probability of a payment after any as-of time.
The simulator depends on `data_contracts` alone. Nothing heavy is imported here: the names
below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "SimulatedPortfolio",
    "SimulationConfig",
    "simulate_portfolio",
    "simulate_with_true_probability",
    "true_payment_probability",
]

_EXPORTS = {
    "SimulatedPortfolio": "simulator.tables",
    "SimulationConfig": "simulator.engine",
    "simulate_portfolio": "simulator.tables",
    "simulate_with_true_probability": "simulator.oracle",
    "true_payment_probability": "simulator.oracle",
}

if TYPE_CHECKING:
    from simulator.engine import SimulationConfig
    from simulator.oracle import simulate_with_true_probability, true_payment_probability
    from simulator.tables import SimulatedPortfolio, simulate_portfolio


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'simulator' has no attribute {name!r}")
