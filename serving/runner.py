"""Run the service under uvicorn with one or several worker processes.

With several workers each process binds its own listening socket with SO_REUSEPORT, so the
kernel spreads new connections evenly over them. (uvicorn's own `workers=` shares one socket,
and measured here a closed-loop client's keep-alive connections all landed on one worker,
leaving the other core idle.) The parent supervises them: a worker that dies is reaped, logged
(pid, signal or exit status) and replaced; more than `worker_restarts` replacements within
`worker_restart_window` seconds mean the workers cannot be kept alive, and the parent stops the
others and exits with status 1. Each worker dies with the parent (Linux), never orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from data_contracts.settings import ServingSettings, get_settings
from serving.connections import uvicorn_options

APP = "serving.app:create_app"
EXIT_GAVE_UP = 1
STOP_SECONDS = 30.0
"""How long stopping workers may take to finish their requests before they are killed."""
PR_SET_PDEATHSIG = 1
logger = logging.getLogger("cobranza.serving.runner")


def configure_logging() -> None:
    """cobranza's warnings on stderr with time, level, logger and pid; worker starts and
    deaths too."""
    package = logging.getLogger("cobranza")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
        )
        package.addHandler(handler)
        package.setLevel(logging.WARNING)
    logger.setLevel(logging.INFO)


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _config(host: str, port: int, log_level: str, settings: ServingSettings) -> Any:
    import uvicorn

    limits = uvicorn_options(settings.idle_timeout, settings.max_connections)
    return uvicorn.Config(APP, factory=True, host=host, port=port, log_level=log_level, **limits)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker(host: str, port: int, log_level: str, parent: int) -> None:
    import uvicorn

    _die_with_parent(parent)
    configure_logging()
    config = _config(host, port, log_level, get_settings().serving)
    sock = _listening_socket(host, port)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                logger.info("worker %d serving", os.getpid())

    Server(config).run(sockets=[sock])


def describe_exit(code: int | None) -> str:
    """`killed by signal SIGKILL` or `exited with status 1`."""
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Keeps `workers` processes made by `start` alive, within a restart budget."""

    def __init__(
        self, start: Callable[[], BaseProcess], workers: int, restarts: int, window: float
    ) -> None:
        self.start, self.workers, self.restarts, self.window = start, workers, restarts, window
        self.processes: list[BaseProcess] = []
        self.replaced: list[float] = []  # when each recent replacement happened
        self.stopping = False

    def _launch(self) -> BaseProcess:
        process = self.start()
        process.start()
        self.processes.append(process)
        logger.info("worker %d started", process.pid)
        return process

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        """Stop every worker (SIGTERM: they finish their requests) and the supervision."""
        self.stopping = True
        for process in self.processes:
            if process.is_alive():
                process.terminate()

    def run(self) -> int:
        """Supervise until stopped (0) or until workers cannot be kept alive (1)."""
        for _ in range(self.workers):
            self._launch()
        while not self.stopping:
            by_sentinel = {process.sentinel: process for process in self.processes}
            for ended in multiprocessing.connection.wait(list(by_sentinel), timeout=1.0):
                assert isinstance(ended, int)  # a sentinel is a file descriptor
                if not self._replace(by_sentinel[ended]):
                    self.stop()
                    self._join_all()
                    return EXIT_GAVE_UP
        self._join_all()
        return 0

    def _replace(self, dead: BaseProcess) -> bool:
        """Reap a dead worker, log it and start another; False when over the budget."""
        dead.join()
        self.processes.remove(dead)
        if self.stopping:
            return True
        logger.error("worker %d died: %s", dead.pid, describe_exit(dead.exitcode))
        now = time.monotonic()
        self.replaced = [moment for moment in self.replaced if now - moment < self.window]
        if len(self.replaced) >= self.restarts:
            logger.critical(
                "giving up: %d worker(s) replaced in the last %.0f s and another died; "
                "stopping the service",
                len(self.replaced),
                self.window,
            )
            return False
        self.replaced.append(now)
        new = self._launch()
        logger.warning("worker %d replaces worker %d", new.pid, dead.pid)
        return True

    def _join_all(self) -> None:
        for process in self.processes:  # also one started while the stop was under way
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.warning("worker %d did not stop in time: killed", process.pid)
                process.kill()
                process.join()


def run(host: str, port: int, workers: int = 1, log_level: str = "warning") -> int:
    """Serve until interrupted (SIGINT or SIGTERM stop every worker); the exit status: 0
    when stopped, 1 when the workers could not be kept alive."""
    import uvicorn

    configure_logging()
    settings = get_settings().serving
    if workers <= 1:
        uvicorn.Server(_config(host, port, log_level, settings)).run()
        return 0
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("several workers need SO_REUSEPORT, which this system lacks")
    context = multiprocessing.get_context("spawn")
    parent = os.getpid()
    supervisor = Supervisor(
        lambda: context.Process(target=_worker, args=(host, port, log_level, parent), daemon=True),
        workers,
        settings.worker_restarts,
        settings.worker_restart_window,
    )
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    return supervisor.run()
