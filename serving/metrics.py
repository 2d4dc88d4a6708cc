"""Prometheus metrics of the service: requests, latencies, accounts scored, model versions.

Each app has its own registry (tests start several apps in one process). With several uvicorn
workers each worker counts its own requests; a scraper sums them per instance.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cobranza_requests",
            "HTTP requests by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cobranza_request_seconds",
            "Time to answer a request, by route template.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accounts = Counter(
            "cobranza_accounts_scored",
            "Accounts scored, by outcome (scored or unknown_account).",
            ["status"],
            registry=self.registry,
        )
        self.model_version = Gauge(
            "cobranza_model_version",
            "Registered model version in use (the value is the version number).",
            ["model", "alias"],
            registry=self.registry,
        )

        self.swaps = Counter(
            "cobranza_model_swaps",
            "Registry and store checks: a new champion or feature copy swapped in, refused "
            "(failed to load or to answer a smoke prediction), waiting (no features to test it "
            "on yet), or the registry or online store unreachable; and the preparations of "
            "reason codes (preparing, preparation failed).",
            ["outcome"],
            registry=self.registry,
        )

    def show_versions(self, service: Any) -> None:
        for model in (service.propensity, service.actions):
            if model is not None:
                self.model_version.labels(model.name, model.alias).set(float(model.version))

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """Count and time every request by its route template (never by raw path, so ids
        in paths do not become labels). Plain ASGI: Starlette's `BaseHTTPMiddleware` costs
        about a millisecond a request, as much as scoring an account."""

        async def measured(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            start = time.perf_counter()
            status = [500]

            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                template = getattr(scope.get("route"), "path", "unmatched")
                self.latency.labels(template).observe(time.perf_counter() - start)
                self.requests.labels(scope["method"], template, str(status[0])).inc()

        return measured
