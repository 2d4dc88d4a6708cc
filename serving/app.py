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

        app.state.service = ScoringService.load(settings, tracking_uri)
        yield

    from serving.routes import api, public

    app = FastAPI(
        title="cobranza scoring service",
        summary="Propensity to pay, next best actions and reasons for collection front ends.",
        version="1",
        lifespan=lifespan,
    )
    app.state.api_keys = [key.get_secret_value() for key in settings.api_keys]
    app.include_router(public)
    app.include_router(api)
    return app
