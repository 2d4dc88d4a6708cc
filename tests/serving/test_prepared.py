"""Reason codes and feature copies prepared once per generation and model version, by one
low-priority process the workers share, and swaps that wait for them (so a worker never
computes every account's reasons itself while it serves)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from data_contracts.settings import ServingSettings
from pipelines import CRASH_AT
from pipelines.feature_store import published_generation
from serving.portfolio import read_feature_frame
from serving.prepared import (
    EXIT_SUPERSEDED,
    NICENESS,
    features_path,
    launch,
    reasons_path,
)
from serving.service import LoadedModel, ScoringService
from tests.serving.conftest import Running, pin_first_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROPENSITY = "cobranza-propensity"
SERVICES = ["debtor_scoring_v1"]


def _prepare(service: Running, top: int, *extra: str, **env: str) -> subprocess.CompletedProcess:
    generation = published_generation(service.portfolio)
    assert generation is not None
    command = [sys.executable, "-m", "serving.prepared", "--portfolio", str(service.portfolio)]
    command += ["--generation", generation.name, "--service", SERVICES[0], "--model", PROPENSITY]
    command += ["--version", "1", "--top", str(top), "--tracking-uri", service.tracking_uri]
    return subprocess.run(
        [*command, *extra], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def _model(service: Running) -> Any:
    from pipelines.registry import load_model, open_registry

    open_registry(service.tracking_uri)
    return load_model(PROPENSITY, "1")[0]


def test_a_killed_preparation_leaves_no_half_file_and_the_next_holds_what_the_service_computes(
    service: Running,
) -> None:
    generation = published_generation(service.portfolio)
    assert generation is not None
    path = reasons_path(service.portfolio, generation.name, PROPENSITY, "1", 2)
    killed = _prepare(service, 2, **{CRASH_AT: "prepared_reasons_batch"})
    assert killed.returncode == -9
    assert not path.exists()
    # started as a worker starts it: low priority, one at a time, then complete
    args = (service.portfolio, generation.name, SERVICES, PROPENSITY, "1", 2)
    first = launch(*args, service.tracking_uri)
    assert first is not None
    assert launch(*args, service.tracking_uri) is None  # the first holds the folder
    seen = set()
    while first.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            priority = os.getpriority(os.PRIO_PROCESS, first.pid)
            seen.add((os.sched_getscheduler(first.pid), priority))
        time.sleep(0.01)
    assert first.wait(timeout=300) == 0
    assert (os.SCHED_IDLE, NICENESS) in seen and NICENESS > 0
    assert path.exists() and not list(path.parent.glob(".*.partial"))

    frame, _ = read_feature_frame(service.portfolio, SERVICES)
    prepared = pd.read_parquet(features_path(service.portfolio, generation.name, SERVICES))
    pd.testing.assert_frame_equal(prepared, frame)
    import pyarrow as pa
    import pyarrow.ipc

    table = pyarrow.ipc.open_file(pa.memory_map(str(path))).read_all().to_pandas()
    model = _model(service)
    names = list(model.feature_names_)
    with_features = frame.index[frame[names].notna().any(axis=1)]
    assert sorted(table["account_id"]) == sorted(with_features)
    sample = table.sample(20, random_state=0)
    rows = frame.loc[sample["account_id"]]
    expected = model.reasons_encoded(model.encoder_.to_array(rows), rows, 2)
    assert [json.loads(text) for text in sample["reasons"]] == expected
    assert all(len(reasons) == 4 for reasons in expected)  # 2 up and 2 down


def test_a_generation_no_longer_published_is_not_prepared(service: Running) -> None:
    gone = "20000101T000000000000Z-1.db"
    done = _prepare(service, 3, "--generation", gone)
    assert done.returncode == EXIT_SUPERSEDED
    assert not reasons_path(service.portfolio, gone, PROPENSITY, "1", 3).exists()
    assert not features_path(service.portfolio, gone, SERVICES).exists()


def _in_process(service: Running, alias: str) -> ScoringService:
    settings = ServingSettings(portfolio=str(service.portfolio), model_alias=alias)
    return ScoringService.load(settings, service.tracking_uri)


def _until(check: Any, seconds: float = 240.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_new_champion_serves_once_its_reasons_are_prepared_never_computed_in_the_worker(
    service: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker keeps serving the current pair, computing no reason codes itself, until
    the new propensity model's reasons for every account are prepared elsewhere; then the
    pair is swapped together and every stored account's reasons are at hand at once."""
    import mlflow

    from pipelines.registry import NEXT_BEST_ACTION_MODEL, open_registry, set_alias

    store = open_registry(service.tracking_uri)
    alias = "prepared-test"
    for name in (PROPENSITY, NEXT_BEST_ACTION_MODEL):
        set_alias(store, name, alias, "1", "prepared reasons test")
    worker = _in_process(service, alias)
    _until(lambda: worker.refresh() is not None and worker.reasons_held()[0] > 0)
    computed: list[int] = []
    model_class = type(worker.propensity.model)  # type: ignore[union-attr]
    real = model_class.reasons_encoded

    def counted(self: Any, encoded: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        computed.append(len(encoded))
        return real(self, encoded, *args, **kwargs)

    monkeypatch.setattr(model_class, "reasons_encoded", counted)
    copies = {}
    for name in (PROPENSITY, NEXT_BEST_ACTION_MODEL):
        copy = mlflow.register_model(f"models:/{name}/1", name)
        copies[name] = str(copy.version)
        set_alias(store, name, alias, copies[name], "prepared reasons test: new pair")
    messages = worker.refresh()
    assert any(m.startswith("preparing reasons of cobranza-propensity") for m in messages)
    assert worker.versions() == {PROPENSITY: "1", NEXT_BEST_ACTION_MODEL: "1"}  # not yet
    _until(lambda: any(m.startswith("swapped") for m in worker.refresh()))
    assert worker.versions() == copies  # both at once
    assert computed == []
    held, total = worker.reasons_held()
    assert held == total > 0
    with_features = worker.portfolio.frame.index[worker.portfolio.has_features]  # type: ignore[union-attr]
    ids = [i for i in with_features if i not in worker.closed.index][:5]  # closed: unscored
    items = worker.score_ids(ids, with_reasons=True)
    assert [item["status"] for item in items] == ["scored"] * len(ids), items
    served = [item["reasons"] for item in items]
    assert computed == []  # prepared: looked up, not computed
    rows = worker.portfolio.frame.loc[ids]  # type: ignore[union-attr]
    model = worker.propensity.model  # type: ignore[union-attr]
    assert served == real(model, model.encoder_.to_array(rows), rows, 3)
    worker.close()


def test_a_preparation_that_keeps_failing_is_given_up_and_said(service: Running) -> None:
    worker = _in_process(service, "champion")
    assert worker.propensity is not None and worker.portfolio is not None
    missing = LoadedModel(PROPENSITY, "champion", "999", None, worker.propensity.model)
    states = [worker.prepare(worker.portfolio.stamp, SERVICES, missing)]
    deadline = time.monotonic() + 240
    while states[-1] != "without" and time.monotonic() < deadline:
        time.sleep(0.2)
        states.append(worker.prepare(worker.portfolio.stamp, SERVICES, missing))
    assert set(states) == {"preparing", "without"}
    assert any("preparation failed 3 times" in note for note in worker.notes)
    assert worker.with_reasons(worker.portfolio, missing)  # goes on without them
    worker.close()


def test_a_worker_started_after_a_preparation_starts_from_its_files(service: Running) -> None:
    """A restarted worker reads the prepared features and reasons: every account's reasons
    at hand at once, no preparation started, no online store read needed."""
    alias = pin_first_pair(service, "prepared-restart", "restart test")
    first = _in_process(service, alias)
    _until(
        lambda: (
            first.refresh(swap=False) is not None
            and first.reasons_held()[1] > 0
            and first.reasons_held()[0] == first.reasons_held()[1]
        )
    )
    first.close()
    second = _in_process(service, alias)
    second.refresh(swap=False)
    held, total = second.reasons_held()
    assert held == total > 0 and not second.preparations
    direct, _ = read_feature_frame(service.portfolio, list(second.portfolio.services))  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(second.portfolio.frame, direct)  # type: ignore[union-attr]


def test_one_materialization_is_one_feature_swap_with_its_reasons_ready(service: Running) -> None:
    from pipelines.feature_store import materialize_latest

    alias = pin_first_pair(service, "prepared-restart", "feature swap test")
    worker = _in_process(service, alias)
    before = worker.portfolio.stamp  # type: ignore[union-attr]
    materialize_latest(service.portfolio)
    published = published_generation(service.portfolio)
    assert published is not None and published.name != before
    swaps: list[str] = []
    deadline = time.monotonic() + 240
    quiet_until = None
    while quiet_until is None or time.monotonic() < quiet_until:  # go on 3 s after a swap
        assert time.monotonic() < deadline, "no feature swap"
        swaps += [m for m in worker.refresh() if m.startswith("swapped features")]
        if swaps and quiet_until is None:
            quiet_until = time.monotonic() + 3
        time.sleep(0.2)
    assert len(swaps) == 1
    assert worker.portfolio.stamp == published.name  # type: ignore[union-attr]
    held, total = worker.reasons_held()
    assert held == total > 0
    worker.close()
