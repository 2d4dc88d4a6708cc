"""The FastAPI application factory. Models and the store load in the lifespan, never at
import."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from data_contracts.settings import ServingSettings, get_settings
from serving.errors import Redactor, validation_error_handler
from serving.guard import DOC_PATHS, OPEN_PATHS, Guard
from serving.metrics import ServiceMetrics
from serving.routes import api, public
from serving.service import ScoringService

logger = logging.getLogger("cobranza.serving")


def settle_heap(collect: bool = False) -> None:
    """Move what is loaded (models, features, cached reasons) to the garbage collector's
    permanent generation, so its full passes stop walking it: on 5,000 accounts each pass
    otherwise stalls every request for about 0.13 s, and longer on bigger portfolios.
    With `collect`, the garbage among what was loaded since the last call is freed first.

    The permanent generation is never collected again (a full pass over it holds every
    request for 0.35 s): a swapped-out model and feature copy are freed by reference counting
    when the last request using them ends; what they leave in reference cycles stays
    (measured: 10 objects per swap)."""
    if collect:
        gc.collect()
    gc.freeze()


SWITCH_INTERVAL = 0.001
"""Seconds a thread may hold the interpreter lock while another waits for it (Python's
default: 0.005). The watch loads and smoke-tests new models in a thread of the worker that
serves the requests; each request waits for the lock several times, so shorter turns keep
request latency down while it works."""


PREPARING_POLL = 0.5
"""Seconds between looks while a preparation is under way (a file check: cheap), so a swap
follows within half a second of its reason codes being ready."""


async def watch(service: ScoringService, metrics: ServiceMetrics, every: float) -> None:
    """Every `every` seconds (0: never) check the registry and the online store and hot-swap
    a new champion or feature generation once its reason codes are prepared; attach those of
    what serves when they are ready. Runs in a worker thread, so requests keep being
    answered meanwhile."""
    while True:
        pause = every if every > 0 else PREPARING_POLL
        await asyncio.sleep(min(pause, PREPARING_POLL) if service.waiting() else pause)
        try:
            messages = await run_in_threadpool(service.refresh, every > 0)
        except Exception as error:  # never let the watch die; tried again next round
            logger.warning("model watch failed: %s", type(error).__name__)
            continue
        for message in messages:
            outcome = message.split(" ", 1)[0]  # swapped, refused, unreachable, preparing...
            metrics.swaps.labels(outcome).inc()
            logger.warning("model watch: %s", message)
        if any(message.startswith("swapped") for message in messages):
            await run_in_threadpool(settle_heap, True)
        metrics.show_versions(service)
        if every <= 0 and not service.waiting():
            return  # never swapping: done once the reasons of what serves are attached


class _Measured:
    """The metrics' ASGI middleware in the form `add_middleware` takes."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.measured = metrics.middleware(app)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.measured(scope, receive, send)


def create_app(settings: ServingSettings | None = None, tracking_uri: str | None = None) -> FastAPI:
    """The scoring service for `settings` (default: from the environment)."""
    settings = settings or get_settings().serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sys.setswitchinterval(SWITCH_INTERVAL)
        service = ScoringService.load(settings, tracking_uri)
        settle_heap(collect=True)
        app.state.service = service
        metrics = app.state.metrics
        metrics.show_versions(service)
        for message in await run_in_threadpool(service.refresh, False):  # reasons: prepare
            logger.warning("model watch: %s", message)
        tasks = [asyncio.create_task(watch(service, metrics, settings.watch_seconds))]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await run_in_threadpool(service.close)

    app = FastAPI(
        title="cobranza scoring service",
        summary="Propensity to pay, next best actions and reasons for collection front ends.",
        version="1",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: validation_error_handler},
    )
    keys = [key.get_secret_value() for key in settings.api_keys]  # printable ASCII: checked
    app.state.api_keys = [key.encode("ascii") for key in keys]
    app.state.redactor = Redactor(keys)
    app.state.metrics = ServiceMetrics()
    open_paths = OPEN_PATHS | DOC_PATHS if settings.open_docs else OPEN_PATHS
    app.add_middleware(
        Guard,
        api_keys=app.state.api_keys,
        max_body_bytes=settings.max_body_bytes,
        open_paths=open_paths,
    )
    app.add_middleware(_Measured, metrics=app.state.metrics)  # outside: counts refusals too
    app.include_router(public)
    app.include_router(api)
    return app
