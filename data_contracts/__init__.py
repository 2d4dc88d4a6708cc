"""Schemas of what comes into cobranza and the validation that guards them.

Nothing heavy is imported here: import `data_contracts.schemas` or
`data_contracts.validation` where they are needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "CONTRACTS",
    "ContractError",
    "TableReport",
    "ValidationResult",
    "empty_table",
    "validate_tables",
]

_EXPORTS = {
    "CONTRACTS": "data_contracts.schemas",
    "empty_table": "data_contracts.schemas",
    "ContractError": "data_contracts.validation",
    "TableReport": "data_contracts.validation",
    "ValidationResult": "data_contracts.validation",
    "validate_tables": "data_contracts.validation",
}

if TYPE_CHECKING:
    from data_contracts.schemas import CONTRACTS, empty_table
    from data_contracts.validation import (
        ContractError,
        TableReport,
        ValidationResult,
        validate_tables,
    )


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'data_contracts' has no attribute {name!r}")
