"""A worker's connections: idle ones time out, and their number is bounded.

uvicorn closes a keep-alive connection idle between requests (`timeout_keep_alive`), but never
one that has not sent a request yet (measured with its httptools and h11 protocols: 1,500 such
sockets stayed open, and at 1,024 file descriptors every new connection failed). Its
`limit_concurrency` counts idle connections too, and then answers every new request with 503.
Here a connection that sends no complete request within `idle_timeout` is closed, and past
`max_connections` the longest-idle connection is closed to make room for the new one; both are
logged (at most every 10 s, with counts).
"""

from __future__ import annotations

import asyncio
import logging
import math
import resource
from typing import Any

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Http
except ImportError:  # pragma: no cover - uvicorn's own choice when httptools is missing
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Http  # type: ignore[assignment]

logger = logging.getLogger("cobranza.serving.connections")
LOG_EVERY = 10.0
RESERVED_FILES = 200
"""File descriptors kept for what a worker opens besides connections (stores, models, logs)."""


class _Tally:
    """Counts events and logs them at most every `LOG_EVERY` seconds."""

    def __init__(self, message: str) -> None:
        self.message, self.count, self.logged = message, 0, -math.inf

    def add(self, now: float, *args: object) -> None:
        self.count += 1
        if now - self.logged >= LOG_EVERY:
            logger.warning(self.message, self.count, *args)
            self.count, self.logged = 0, now


EVICTED = _Tally("closed %d idle connection(s) for new ones: the limit is %d per worker")
REFUSED = _Tally("closed %d new connection(s): all %d of this worker's connections are busy")
SILENT = _Tally("closed %d connection(s) that sent no complete request within %.1f s")


class GuardedHttp(_Http):
    """uvicorn's HTTP protocol with a deadline for requests and a bound on connections."""

    max_connections = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.last_active = self.loop.time()
        self.waiting_since: float | None = self.last_active
        self._arm(self.timeout_keep_alive)
        if len(self.connections) > self.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.last_active = now
        if self.waiting_since is None and not self._busy():  # the first bytes of a request
            self.waiting_since = now
        super().data_received(data)
        if self._busy():
            self.waiting_since = None
        elif self.waiting_since is not None and not self.transport.is_closing():
            # a request still incomplete: the deadline counts from its first byte
            self._arm(max(0.0, self.waiting_since + self.timeout_keep_alive - now))

    def on_response_complete(self) -> None:
        self.last_active = self.loop.time()
        super().on_response_complete()  # arms uvicorn's keep-alive timeout

    def _busy(self) -> bool:
        cycle = getattr(self, "cycle", None)
        return cycle is not None and not cycle.response_complete

    def _arm(self, seconds: float) -> None:
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(seconds, self._no_request)

    def _no_request(self) -> None:
        if not self.transport.is_closing():
            SILENT.add(self.loop.time(), float(self.timeout_keep_alive))
            self.transport.close()

    def _make_room(self) -> None:
        idle = [
            connection
            for connection in self.connections
            if isinstance(connection, GuardedHttp)
            and connection is not self
            and not connection._busy()
            and not connection.transport.is_closing()
        ]
        now = self.loop.time()
        if idle:
            min(idle, key=lambda connection: connection.last_active).transport.close()
            EVICTED.add(now, self.max_connections)
        else:
            self.transport.close()
            REFUSED.add(now, self.max_connections)


def guarded_http(max_connections: int) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (`http=`) for at most `max_connections`."""
    return type("GuardedHttp", (GuardedHttp,), {"max_connections": max_connections})


def raise_open_files_limit() -> int:
    """Raise this process's soft limit on open files to its hard limit (1,024 by default on
    many systems, below what a worker with a thousand connections needs); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            logger.warning("could not raise the open files limit from %d", soft)
    return soft


def connection_budget(wanted: int, open_files: int) -> int:
    """`wanted` connections, or fewer if the open files limit cannot hold them (logged)."""
    if open_files == resource.RLIM_INFINITY or wanted + RESERVED_FILES <= open_files:
        return wanted
    budget = max(1, open_files - RESERVED_FILES)
    logger.warning(
        "max_connections lowered from %d to %d: the open files limit is %d",
        wanted,
        budget,
        open_files,
    )
    return budget


def uvicorn_options(idle_timeout: float, max_connections: int) -> dict[str, Any]:
    """The uvicorn.Config options that apply these limits."""
    budget = connection_budget(max_connections, raise_open_files_limit())
    return {"http": guarded_http(budget), "timeout_keep_alive": idle_timeout, "ws": "none"}
