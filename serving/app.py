"""The FastAPI application factory. Models and the store load in the lifespan, never at
import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from data_contracts.settings import ServingSettings, get_settings


def create_app(settings: ServingSettings | None = None, tracking_uri: str | None = None) -> FastAPI:
    """The scoring service for `settings` (default: from the environment)."""
    settings = settings or get_settings().serving

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from serving.service import ScoringService

        service = ScoringService.load(settings, tracking_uri)
        for model in (service.propensity, service.actions):
            if model is not None:
                app.state.metrics.model_version.labels(model.name, model.alias).set(
                    float(model.version)
                )
        app.state.service = service
        yield

    from serving.routes import api, public

    app = FastAPI(
        title="cobranza scoring service",
        summary="Propensity to pay, next best actions and reasons for collection front ends.",
        version="1",
        lifespan=lifespan,
    )
    from serving.metrics import ServiceMetrics

    app.state.api_keys = [key.get_secret_value() for key in settings.api_keys]
    app.state.metrics = ServiceMetrics()
    app.middleware("http")(app.state.metrics.middleware)
    app.include_router(public)
    app.include_router(api)
    return app
