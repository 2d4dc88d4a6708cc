"""Run the service under uvicorn with one or several worker processes.

With several workers each process binds its own listening socket with SO_REUSEPORT, so the
kernel spreads new connections evenly over them. (uvicorn's own `workers=` shares one socket,
and measured here a closed-loop client's keep-alive connections all landed on one worker,
leaving the other core idle.)
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
from types import FrameType

APP = "serving.app:create_app"


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def _worker(host: str, port: int, log_level: str) -> None:
    import uvicorn

    sock = _listening_socket(host, port)
    config = uvicorn.Config(APP, factory=True, log_level=log_level)
    uvicorn.Server(config).run(sockets=[sock])


def run(host: str, port: int, workers: int = 1, log_level: str = "warning") -> None:
    """Serve until interrupted (SIGINT or SIGTERM stop every worker)."""
    import uvicorn

    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers, log_level=log_level)
        return
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
