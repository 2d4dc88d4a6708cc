"""Run the service under uvicorn with one or several worker processes.

With several workers each process binds its own listening socket with SO_REUSEPORT, so the
kernel spreads new connections evenly over them. (uvicorn's own `workers=` shares one socket,
and measured here a closed-loop client's keep-alive connections all landed on one worker,
leaving the other core idle.) Every worker applies the connection limits of
serving/connections.py.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
from types import FrameType
from typing import Any

from data_contracts.settings import ServingSettings, get_settings
from serving.connections import uvicorn_options

APP = "serving.app:create_app"


def configure_logging() -> None:
    """cobranza's warnings on stderr with time, level, logger and pid."""
    package = logging.getLogger("cobranza")
    if not package.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
        )
        package.addHandler(handler)
        package.setLevel(logging.WARNING)


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


def _worker(host: str, port: int, log_level: str) -> None:
    import uvicorn

    configure_logging()
    config = _config(host, port, log_level, get_settings().serving)
    sock = _listening_socket(host, port)
    uvicorn.Server(config).run(sockets=[sock])


def run(host: str, port: int, workers: int = 1, log_level: str = "warning") -> None:
    """Serve until interrupted (SIGINT or SIGTERM stop every worker)."""
    import uvicorn

    configure_logging()
    settings = get_settings().serving
    if workers <= 1:
        uvicorn.Server(_config(host, port, log_level, settings)).run()
        return
    if not hasattr(socket, "SO_REUSEPORT"):
        raise RuntimeError("several workers need SO_REUSEPORT, which this system lacks")
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, log_level), daemon=True)
        for _ in range(workers)
    ]

    def stop(signum: int, frame: FrameType | None) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.start()
    for process in processes:
        process.join()
