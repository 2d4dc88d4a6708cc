"""The service and the online store's writer: a materialization killed mid-write does not
stop a service from starting on the last complete store, and a service that found no store
serves as soon as one is published, without a restart. Real service over a socket, real
SIGKILL of `cobranza features materialize`."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr

from data_contracts.settings import ServingSettings
from pipelines.feature_store import apply_repository, materialize_latest, snapshot_times
from tests.crashes import kill_on_hot_journal, materialize
from tests.serving.conftest import KEY, REPO, Api, Running, pin_first_pair, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


ALIAS = "store-recovery-test"


@pytest.fixture
def portfolio(service: Running, tmp_path: Path) -> Path:
    """A copy of the served portfolio, for a store of its own."""
    folder = tmp_path / "portfolio"
    shutil.copytree(service.portfolio, folder, ignore=shutil.ignore_patterns("quarantine"))
    return folder


@contextmanager
def started(portfolio: Path, running: Running) -> Iterator[tuple[Api, Any]]:
    """A service on `portfolio` with the models of the running one; (client, app)."""
    from serving.app import create_app

    pin_first_pair(running, ALIAS, "store recovery tests")  # not the moving `champion`
    settings = ServingSettings(
        portfolio=str(portfolio),
        model_alias=ALIAS,
        api_keys=[SecretStr(KEY)],
        contact_rules=str(REPO / "data_contracts" / "contact_rules.yaml"),
        watch_seconds=0.3,
        precompute_reasons=False,
    )
    app = create_app(settings, tracking_uri=running.tracking_uri)
    url, server, thread = serve(app)
    try:
        yield Api(url), app
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)


def wait_for(condition: Callable[[], bool], seconds: float = 90) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def served_as_of(app: Any, portfolio: Path) -> pd.Timestamp | None:
    """The snapshot time of the account features the service holds (by days since placement,
    which every account's row changes from one snapshot to the next)."""
    held = app.state.service.portfolio
    if held is None:
        return None
    for as_of in snapshot_times(portfolio):
        name = "as_of=" + as_of.strftime("%Y-%m-%dT%H_%M_%S") + ".parquet"
        snapshot = pd.read_parquet(portfolio / "features" / "account" / name)
        expected = snapshot.set_index("account_id")["days_since_placement"]
        served = held.frame["days_since_placement"].dropna()
        if served.index.sort_values().equals(expected.index.sort_values()) and np.array_equal(
            served.to_numpy(float), expected.loc[served.index].to_numpy(float)
        ):
            return as_of
    return None


def test_a_killed_materialize_neither_stops_a_new_service_nor_lingers(
    service: Running, portfolio: Path
) -> None:
    before, latest = snapshot_times(portfolio)[-2:]
    aside = portfolio.parent / "latest"
    aside.mkdir()
    stamp = latest.strftime("%Y-%m-%dT%H_%M_%S")
    for entity in ("account", "debtor"):  # publish the next-to-last snapshot
        (portfolio / "features" / entity / f"as_of={stamp}.parquet").rename(aside / entity)
    apply_repository(portfolio)
    materialize_latest(portfolio)
    for entity in ("account", "debtor"):
        (aside / entity).rename(portfolio / "features" / entity / f"as_of={stamp}.parquet")
    kill_on_hot_journal(portfolio)  # killed while writing the latest one
    with started(portfolio, service) as (api, app):
        ready = api.get("/ready")
        assert ready.status_code == 200, ready.text
        assert served_as_of(app, portfolio) == before
        done = materialize(portfolio)
        _, err = done.communicate(timeout=300)
        assert done.returncode == 0, err
        assert wait_for(lambda: served_as_of(app, portfolio) == latest)
        assert api.get("/ready").status_code == 200


def test_a_service_without_a_store_serves_once_one_is_published(
    service: Running, portfolio: Path
) -> None:
    shutil.rmtree(portfolio / "feature_store")
    with started(portfolio, service) as (api, app):
        waiting = api.get("/ready")
        assert waiting.status_code == 503
        missing = " ".join(waiting.json()["detail"]["missing"])
        assert "online store of" in missing and "cobranza features materialize" in missing
        done = materialize(portfolio)
        _, err = done.communicate(timeout=300)
        assert done.returncode == 0, err
        assert wait_for(lambda: api.get("/ready").status_code == 200), api.get("/ready").text
        assert served_as_of(app, portfolio) == snapshot_times(portfolio)[-1]
        scored = api.post("/v1/scores", json={"account_ids": ["1"]})
        assert scored.status_code == 200, scored.text
