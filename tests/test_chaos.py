"""Chaos: a materialization, a service worker and a training run killed at random points
(seeded), while the real service answers a steady load. The service keeps answering (only the
requests in flight on the killed worker may fail) and every store comes back consistent."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from pipelines.feature_store import materialize_latest, online_folder, published_generation
from pipelines.feature_store import snapshot_times as feature_snapshot_times
from pipelines.registry import CHALLENGER, CHAMPION, MODEL_NAMES, alias_version, open_registry
from pipelines.train import train_portfolio
from training.config import load_experiment

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = 20261129
COBRANZA = str(Path(sys.executable).with_name("cobranza"))
KEY = "chaos-test-key"
QUICK = {
    "name": "chaos",
    "split": {"valid_periods": 4, "test_periods": 4},
    "lightgbm": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7},
    "tuning": {"trials": 1},
}
LOAD_THREADS = 2
TLS = ssl.create_default_context()
"""One TLS context for every request: httpx builds one per call otherwise (about 50 ms of CPU
loading the system's certificates), though the service's URL is plain HTTP."""
PAUSE = 0.05
"""Seconds each client waits between requests: a steady load (tens of requests a second) that
leaves the two cores to the service and to the runs being killed. Unpaced, the clients and the
workers took both cores and every materialization and training run under test crawled."""


class Load:
    """`LOAD_THREADS` clients, each sending one scoring request at a time on a new connection
    (so a failure belongs to the request in flight, not to a stale pooled connection), `PAUSE`
    seconds apart."""

    def __init__(self, url: str, ids: list[int]) -> None:
        self.url, self.ids = url, ids
        self.results: list[tuple[float, float, str]] = []  # (sent, answered, outcome)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(LOAD_THREADS)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                answer = httpx.post(
                    f"{self.url}/v1/scores",
                    json={"account_ids": [rng.choice(self.ids)], "reasons": False},
                    headers={"X-API-Key": KEY, "Connection": "close"},
                    timeout=30,
                    verify=TLS,
                )
                outcome = "ok" if answer.status_code == 200 else str(answer.status_code)
            except httpx.HTTPError as error:
                outcome = type(error).__name__
            self.results.append((sent, time.monotonic(), outcome))
            self.stop.wait(PAUSE)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _account_ids(portfolio: Path) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(portfolio / "accounts.parquet", columns=["account_id"])
    return [str(a) for a in frame["account_id"].head(500)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _workers(parent: int) -> set[int]:
    """The service's worker processes (its other child is multiprocessing's tracker)."""
    command = ["ps", "ww", "-o", "pid=,args=", "--ppid", str(parent)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line.split(None, 1) for line in done.stdout.splitlines() if line.strip()]
    return {int(fields[0]) for fields in lines if "spawn_main" in fields[-1]}


def _wait(condition: Callable[[], bool], seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:]
    raise AssertionError(f"not {what} within {seconds:.0f} s; last answer {LAST[0]}; log:\n{tail}")


LAST = ["none"]


def _ready(url: str) -> bool:
    try:
        answer = httpx.get(f"{url}/ready", headers={"X-API-Key": KEY}, timeout=10, verify=TLS)
    except httpx.HTTPError as error:
        LAST[0] = type(error).__name__
        return False
    LAST[0] = f"{answer.status_code} {answer.text[:300]}"
    return answer.status_code == 200


def _kill_after(command: list[str], seconds: float, env: dict[str, str]) -> int | None:
    """Run a command and SIGKILL it after `seconds` if still running; its exit status."""
    with subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return None


def _pairs_are_whole() -> bool:
    """Both models holding an alias come from one training run."""
    for alias in (CHAMPION, CHALLENGER):
        versions = [alias_version(name, alias) for name in MODEL_NAMES.values()]
        held = [v for v in versions if v is not None]
        if held and (len(held) != len(versions) or len({v.run_id for v in held}) != 1):
            return False
    return True


def test_random_kills_leave_the_service_answering_and_the_stores_consistent(
    featured_portfolio: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    portfolio = tmp_path / "portfolio"
    shutil.copytree(featured_portfolio, portfolio)
    materialize_latest(portfolio)
    (tmp_path / "mlflow").mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    experiment = tmp_path / "chaos.yaml"
    experiment.write_text(yaml.safe_dump(QUICK))
    config, text = load_experiment(experiment)
    train_portfolio(portfolio, config, text, tracking_uri=uri)
    env = {
        **os.environ,
        "COBRANZA_SERVING__API_KEYS": f'["{KEY}"]',
        "COBRANZA_SERVING__WATCH_SECONDS": "0.5",
        "COBRANZA_TRAINING__TRACKING_URI": uri,
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [COBRANZA, "serve", "--portfolio", str(portfolio), "--port", str(port)]
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    service = subprocess.Popen([*serve, "--workers", "2"], env=env, stdout=log, stderr=log)
    try:
        _wait(lambda: _ready(url) and len(_workers(service.pid)) == 2, 180, "ready", log_path)
        ids = _account_ids(portfolio)
        with Load(url, ids) as load:
            time.sleep(2)
            # 1. a materialization killed at a random point
            materialize = [COBRANZA, "features", "materialize", str(portfolio)]
            _kill_after(materialize, rng.uniform(0.5, 8), env)
            assert _ready(url)
            # 2. a worker killed at a random moment: it is replaced
            time.sleep(rng.uniform(0.5, 3))
            victim = rng.choice(sorted(_workers(service.pid)))
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            replaced = "a worker replaced"
            _wait(lambda: len(_workers(service.pid) - {victim}) == 2, 120, replaced, log_path)
            # 3. a training run killed at a random point
            train = [COBRANZA, "train", "--data", str(portfolio), "--experiment", str(experiment)]
            _kill_after([*train, "--tracking-uri", uri], rng.uniform(2, 40), env)
            assert _pairs_are_whole()
            # the next runs recover by themselves
            done = subprocess.run(materialize, env=env, capture_output=True)
            assert done.returncode == 0, done.stderr
            done = subprocess.run([*train, "--tracking-uri", uri], env=env, capture_output=True)
            assert done.returncode == 0, done.stderr
            time.sleep(2)
        failed = [r for r in load.results if r[2] != "ok"]
        # only requests in flight when the worker died may fail: one per client at most
        assert len(failed) <= LOAD_THREADS, failed
        in_flight = [
            sent <= killed_at + 1 and answered >= killed_at for sent, answered, _ in failed
        ]
        assert all(in_flight), (failed, killed_at)
        assert len(load.results) > 100
        assert _ready(url) and service.poll() is None
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()
    # every store consistent: one whole published generation of the latest snapshot, and the
    # registry's aliases held by whole pairs, the new run's as challenger
    generation = published_generation(portfolio)
    assert generation is not None and generation.path.is_file()
    assert generation.as_of == feature_snapshot_times(portfolio)[-1].isoformat()
    assert sorted(p.name for p in online_folder(portfolio).glob("*.db")) == [generation.name]
    open_registry(uri, create=False)
    assert _pairs_are_whole()
    assert alias_version(MODEL_NAMES["propensity"], CHALLENGER) is not None
