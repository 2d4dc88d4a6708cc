"""The FastAPI application factory. Models and the store load in the lifespan, never at
import."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
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
from serving.service import ScoringService, ServiceNotReady

logger = logging.getLogger("cobranza.serving")


def settle_heap(collect: bool = False) -> None:
    """Move what is loaded (models, features, cached reasons) to the garbage collector's
    permanent generation, so its full passes stop walking it: on 5,000 accounts each pass
    otherwise stalls every request for about 0.13 s, and longer on bigger portfolios.
    With `collect`, what is no longer used (a swapped-out model) is freed first."""
    if collect:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


async def watch(service: ScoringService, metrics: ServiceMetrics, every: float) -> None:
    """Check the registry every `every` seconds and hot-swap a new champion (in a worker
    thread, so requests keep being answered meanwhile)."""
    while True:
        await asyncio.sleep(every)
        messages = await run_in_threadpool(service.refresh)
        for message in messages:
            outcome = message.split(" ", 1)[0]  # swapped, refused or unreachable
            metrics.swaps.labels(outcome).inc()
            logger.warning("model watch: %s", message)
        if any(message.startswith("swapped") for message in messages):
            await run_in_threadpool(settle_heap, True)
        metrics.show_versions(service)


async def precompute_reasons(service: ScoringService, idle_seconds: float = 1.0) -> None:
    """Keep every stored account's reason codes computed for the models and features in use,
    one small batch at a time in a worker thread (requests are answered between batches)."""
    settled = False
    while True:
        try:
            done, total = await run_in_threadpool(service.precompute_reasons)
        except ServiceNotReady:
            done = total = 0
        except Exception as error:  # never let the helper die silently; retried next round
            logger.warning("reason precompute failed: %s", type(error).__name__)
            done = total = 0
        if done >= total:
            if not settled:
                settle_heap()
                settled = True
            await asyncio.sleep(idle_seconds)
        else:
            settled = False


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
        service = ScoringService.load(settings, tracking_uri)
        settle_heap(collect=True)
        app.state.service = service
        metrics = app.state.metrics
        metrics.show_versions(service)
        tasks = []
        if settings.watch_seconds > 0:
            tasks.append(asyncio.create_task(watch(service, metrics, settings.watch_seconds)))
        if settings.precompute_reasons and settings.reason_cache > 0:
            tasks.append(asyncio.create_task(precompute_reasons(service)))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
