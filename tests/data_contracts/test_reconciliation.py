"""Whatever is wrong with the input, no row is lost or counted twice."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_contracts.schemas import ID_COLUMNS
from data_contracts.validation import validate_tables
from simulator import SimulationConfig, simulate_portfolio

_BASE = simulate_portfolio(
    SimulationConfig(accounts=60, seed=3, horizon_days=120, placement_days=100)
).tables
_GARBAGE = [None, "??", -1, 0, 10**12, -5.5, float("inf"), "2024-13-45", True]


@st.composite
def corruptions(draw: st.DrawFn) -> list[tuple[str, int, str, object]]:
    """A list of (table, row fraction, column, value) cell overwrites."""
    edits = []
    for _ in range(draw(st.integers(0, 12))):
        table = draw(st.sampled_from(sorted(_BASE)))
        frame = _BASE[table]
        column = draw(st.sampled_from(list(frame.columns)))
        row = draw(st.floats(0, 0.999))
        edits.append((table, row, column, draw(st.sampled_from(_GARBAGE))))
    return edits


def _corrupt(
    edits: list[tuple[str, float, str, object]], duplicate: list[str], drop: list[str]
) -> dict[str, pd.DataFrame]:
    tables = {name: frame.copy() for name, frame in _BASE.items()}
    for table, fraction, column, value in edits:
        frame = tables[table]
        if not len(frame):
            continue
        values = frame[column].astype(object)
        values.iloc[int(fraction * len(frame))] = value
        frame[column] = values
    for table in duplicate:
        frame = tables[table]
        tables[table] = pd.concat(
            [frame, frame.iloc[: max(1, len(frame) // 10)]], ignore_index=True
        )
    for table in drop:
        frame = tables[table]
        tables[table] = frame.iloc[len(frame) // 3 :].reset_index(drop=True)
    return tables


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=corruptions(),
    duplicate=st.lists(st.sampled_from(sorted(_BASE)), max_size=2, unique=True),
    drop=st.lists(st.sampled_from(["debtors", "accounts", "offers"]), max_size=1),
)
def test_input_rows_equal_valid_plus_quarantined(
    edits: list[tuple[str, float, str, object]], duplicate: list[str], drop: list[str]
) -> None:
    tables = _corrupt(edits, duplicate, drop)
    result = validate_tables(tables)
    assert result.reconciles
    for name, frame in tables.items():
        report = result.reports[name]
        valid, quarantined = result.valid[name], result.quarantined[name]
        assert report.input_rows == len(frame) == len(valid) + len(quarantined)
        # each input row is quarantined at most once, with a rule and a reason
        rows = quarantined["source_row"].to_numpy()
        assert len(np.unique(rows)) == len(rows)
        assert (quarantined["quarantine_rules"].str.len() > 0).all()
        assert (quarantined["quarantine_reasons"].str.len() > 0).all()
        # valid ids are unique and every valid child points at a valid parent
        assert valid[ID_COLUMNS[name]].is_unique
        assert sum(report.rows_per_rule.values()) >= report.quarantined_rows
    valid = result.valid
    assert valid["accounts"]["debtor_id"].isin(valid["debtors"]["debtor_id"]).all()
    for child in ("payments", "contacts", "offers", "promises"):
        assert valid[child]["account_id"].isin(valid["accounts"]["account_id"]).all()
    offer_ids = valid["contacts"]["offer_id"].dropna()
    assert offer_ids.isin(valid["offers"]["offer_id"]).all()


def test_untouched_simulated_portfolio_is_all_valid() -> None:
    result = validate_tables({name: frame.copy() for name, frame in _BASE.items()})
    assert result.quarantined_rows == 0
