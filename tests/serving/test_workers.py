"""`cobranza serve` as an operator runs it, in a subprocess on a loopback port: dead workers
are logged and replaced (and the service gives up with a non-zero status when it cannot keep
them alive); idle connections neither exhaust a worker's file descriptors nor stay open."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import KEY, Api, Running, pin_first_pair

pytestmark = [pytest.mark.integration, pytest.mark.slow]
COBRANZA = str(Path(sys.executable).with_name("cobranza"))
ALIAS = "workers-test"
"""Version 1 of both models: the champion alias moves during the end-to-end tests."""
START_SECONDS = 180
"""How long a worker may take to start (imports, models, features): deadlines are time, not
request counts, so a busy machine slows the test down instead of failing it."""


@dataclass
class Started:
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, seconds: float = 30, count: int = 1) -> list[re.Match[str]]:
        """The first `count` matches of `pattern` in the service's log, waiting for them."""
        deadline = time.monotonic() + seconds
        while True:
            found = list(re.finditer(pattern, self.text()))
            if len(found) >= count:
                return found[:count]
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no {pattern!r} in the log:\n{self.text()[-3000:]}")
            time.sleep(0.1)

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if Api(self.url).get("/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"the service was not ready:\n{self.text()[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def alias(service: Running) -> str:
    return pin_first_pair(service, ALIAS, "worker tests")


@contextmanager
def cobranza_serve(
    service: Running,
    tmp_path: Path,
    *options: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    before: Callable[[], None] | None = None,
) -> Iterator[Started]:
    """`cobranza serve` on the test portfolio and registry; stopped at the end."""
    port = port or free_port()
    environment = {
        **os.environ,
        "COBRANZA_SERVING__API_KEYS": json.dumps([KEY]),
        "COBRANZA_SERVING__MODEL_ALIAS": ALIAS,
        "COBRANZA_SERVING__WATCH_SECONDS": "0",
        "COBRANZA_SERVING__PRECOMPUTE_REASONS": "false",
        **(env or {}),
    }
    command = [COBRANZA, "serve", "--portfolio", str(service.portfolio)]
    command += ["--tracking-uri", service.tracking_uri, "--port", str(port), *options]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=environment, stdout=out, stderr=subprocess.STDOUT, preexec_fn=before
        )
    try:
        yield Started(process, log, port)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def gone(pid: int) -> bool:
    """The process has exited and been reaped (a zombie still counts as there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def closed_by_peer(sock: socket.socket) -> bool:
    """The other end closed the connection: at end of stream (or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def score(url: str) -> int:
    return Api(url).post("/v1/scores", json={"account_ids": ["1", "2"]}).status_code


# ---- 6: supervised workers -------------------------------------------------------------------


def test_a_killed_worker_is_logged_and_replaced_and_too_many_deaths_stop_the_service(
    service: Running, alias: str, tmp_path: Path
) -> None:
    with cobranza_serve(
        service, tmp_path, "--workers", "2", env={"COBRANZA_SERVING__WORKER_RESTARTS": "1"}
    ) as started:
        serving = started.wait_for(r"worker (\d+) serving", seconds=START_SECONDS, count=2)
        victim, survivor = (int(match.group(1)) for match in serving)
        started.wait_ready()
        assert [score(started.url) for _ in range(10)] == [200] * 10
        os.kill(victim, signal.SIGKILL)
        started.wait_for(rf"worker {victim} died: killed by signal SIGKILL", seconds=20)
        assert gone(victim)  # reaped, not a zombie
        [replaced] = started.wait_for(rf"worker (\d+) replaces worker {victim}", seconds=20)
        new = int(replaced.group(1))
        statuses = []  # requests keep being answered while the replacement starts
        deadline = time.monotonic() + START_SECONDS
        while not re.search(rf"worker {new} serving", started.text()):
            statuses.append(score(started.url))
            time.sleep(0.05)  # a steady trickle, leaving the cores to the starting worker
            if time.monotonic() > deadline:
                raise AssertionError(f"the replacement never served:\n{started.text()[-3000:]}")
        statuses += [score(started.url) for _ in range(20)]
        assert set(statuses) == {200}
        # one replacement is the budget here: the next death within the window ends it
        os.kill(new, signal.SIGKILL)
        assert started.process.wait(timeout=60) == 1
        log = started.text()
        assert f"worker {new} died: killed by signal SIGKILL" in log and "giving up" in log
        assert gone(survivor)  # stopped with the service, not left serving alone


def test_workers_that_cannot_start_make_the_service_exit_non_zero(
    service: Running, tmp_path: Path
) -> None:
    with socket.socket() as taken:  # the port is held by a socket without SO_REUSEPORT
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with cobranza_serve(service, tmp_path, "--workers", "2", port=port) as started:
            assert started.process.wait(timeout=120) == 1
            log = started.text()
    assert re.search(r"worker \d+ died: exited with status 1", log), log[-3000:]
    assert "giving up" in log


# ---- 9: idle connections ---------------------------------------------------------------------

IDLE = 1500
IDLE_TIMEOUT = 3.0


def low_open_files_limit() -> None:
    """In the service's process: the common default of 1,024 open files."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))


def test_idle_connections_neither_exhaust_a_worker_nor_stay_open(
    service: Running, alias: str, tmp_path: Path
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * IDLE:
        pytest.skip(f"the hard open files limit ({hard}) is too low for this test")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4 * IDLE), hard))
    env = {"COBRANZA_SERVING__IDLE_TIMEOUT": str(IDLE_TIMEOUT)}
    idle: list[socket.socket] = []
    try:
        with cobranza_serve(service, tmp_path, env=env, before=low_open_files_limit) as started:
            started.wait_ready()
            for _ in range(IDLE):  # connections that never send a request
                idle.append(socket.create_connection(("127.0.0.1", started.port)))
            opened = time.monotonic()
            assert [score(started.url) for _ in range(20)] == [200] * 20
            limits = Path(f"/proc/{started.process.pid}/limits").read_text()
            [files] = [line.split()[3:5] for line in limits.splitlines() if "open files" in line]
            assert files[0] == files[1]  # the soft limit was raised to the hard one
            started.wait_for(r"closed \d+ idle connection\(s\) for new ones: the limit is 1000")
            # every idle connection is closed by the service once its deadline passes; on a
            # busy machine the worker accepts (and so starts timing) the last ones later
            time.sleep(max(0.0, opened + IDLE_TIMEOUT - time.monotonic()))
            waiting, deadline = set(idle), time.monotonic() + 60
            while waiting and time.monotonic() < deadline:
                waiting = {sock for sock in waiting if not closed_by_peer(sock)}
                time.sleep(0.2)
            assert len(idle) - len(waiting) == IDLE
            started.wait_for(r"sent no complete request within 3\.0 s")
            assert score(started.url) == 200
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
