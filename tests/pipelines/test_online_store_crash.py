"""A materialization killed at any instant: readers keep the last complete online store (never
a half-written one, never one view of one as-of time and another of another), and the next
run recovers by itself. Each kill is a real SIGKILL of `cobranza features materialize`."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.feature_store import (
    OnlineSnapshot,
    apply_repository,
    materialize_latest,
    snapshot_times,
)
from pipelines.features_build import build_snapshots
from pipelines.simulate import simulate_to_folder
from simulator import SimulationConfig
from tests.crashes import kill_on_hot_journal, materialize

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A portfolio whose online store holds the next-to-last snapshot, with a later one built."""
    folder = tmp_path_factory.mktemp("crash") / "portfolio"
    simulate_to_folder(
        SimulationConfig(accounts=300, seed=8, horizon_days=150, placement_days=100), folder
    )
    build_snapshots(folder, pd.Timestamp("2025-02-03", tz="UTC"), None, every="14D")
    aside = folder.parent / "latest"
    aside.mkdir()
    latest = snapshot_times(folder)[-1].strftime("%Y-%m-%dT%H_%M_%S")
    for entity in ("account", "debtor"):  # publish the next-to-last snapshot...
        (folder / "features" / entity / f"as_of={latest}.parquet").rename(aside / entity)
    materialize_latest(folder)
    for entity in ("account", "debtor"):  # ...then put the latest back
        (aside / entity).rename(folder / "features" / entity / f"as_of={latest}.parquet")
    return folder


@pytest.fixture
def portfolio(prepared: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "portfolio"
    shutil.copytree(prepared, folder)
    apply_repository(folder)  # the copy's sources point at its own snapshots
    return folder


def online_frames(folder: Path) -> dict[str, pd.DataFrame]:
    accounts = pd.read_parquet(folder / "accounts.parquet")
    snapshot = OnlineSnapshot(folder)
    try:
        return snapshot.read(
            {
                "account_id": accounts["account_id"].to_numpy(),
                "debtor_id": accounts["debtor_id"].unique(),
            }
        )
    finally:
        close = getattr(snapshot, "close", None)
        if close is not None:
            close()


def held_as_of(folder: Path, entity: str, frame: pd.DataFrame) -> pd.Timestamp | None:
    """The snapshot time whose every numeric value the online frame holds, if one does."""
    key = f"{entity}_id"
    for as_of in snapshot_times(folder):
        name = "as_of=" + as_of.strftime("%Y-%m-%dT%H_%M_%S") + ".parquet"
        snapshot = pd.read_parquet(folder / "features" / entity / name).set_index(key)
        if not frame.index.equals(snapshot.index.sort_values()):
            continue
        columns = [c for c in frame.columns if c in snapshot and snapshot[c].dtype.kind in "fiub"]
        online = frame[columns].astype(float).to_numpy()
        offline = snapshot.loc[frame.index, columns].astype(float).to_numpy()
        if np.array_equal(online, offline, equal_nan=True):
            return as_of
    return None


def assert_holds(folder: Path, as_of: pd.Timestamp) -> None:
    frames = online_frames(folder)
    assert held_as_of(folder, "account", frames["account_id"]) == as_of
    assert held_as_of(folder, "debtor", frames["debtor_id"]) == as_of


def leftovers(folder: Path) -> list[str]:
    """Files of the store that are neither the registry nor one online store database."""
    store = folder / "feature_store"
    databases = [p for p in store.rglob("*.db") if p.name != "registry.db"]
    stray = [p for p in store.rglob("*") if p.name.endswith(("-journal", "-wal", ".partial"))]
    return [str(p.relative_to(store)) for p in stray + databases[1:]]


def test_a_materialize_killed_mid_write_leaves_the_published_store_readable(
    portfolio: Path,
) -> None:
    before, latest = snapshot_times(portfolio)[-2:]
    assert_holds(portfolio, before)
    kill_on_hot_journal(portfolio)
    assert_holds(portfolio, before)  # a new reader opens the last complete store
    done = materialize(portfolio)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert_holds(portfolio, latest)
    assert leftovers(portfolio) == []


def test_a_materialize_killed_after_its_first_commit_publishes_nothing(portfolio: Path) -> None:
    before, latest = snapshot_times(portfolio)[-2:]
    killed = materialize(portfolio, COBRANZA_TEST_CRASH_AT="after_first_commit")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert_holds(portfolio, before)  # not the new account view beside the old debtor view
    materialize_latest(portfolio)
    assert_holds(portfolio, latest)
    assert leftovers(portfolio) == []
