"""A running scoring service for the serving tests: uvicorn on a loopback socket, models
from a real MLflow registry (trained on the session's simulated portfolio), features from the
real Feast online store."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from data_contracts.settings import ServingSettings
from pipelines.feature_store import materialize_latest
from pipelines.train import train_portfolio
from training.config import ExperimentConfig

REPO = Path(__file__).resolve().parents[2]
KEY = "test-key-not-a-secret"
TLS = ssl.create_default_context()
"""One TLS context for every test client: httpx builds one per client otherwise (loading the
system's certificates, about 50 ms of CPU per request here), though these URLs are plain HTTP."""
QUICK = {
    "name": "serving-quick",
    "split": {"valid_periods": 4, "test_periods": 4},
    "lightgbm": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7},
}


@dataclass
class Running:
    url: str
    portfolio: Path
    server: object
    tracking_uri: str = ""


def serve(app: object) -> tuple[str, object, threading.Thread]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


@pytest.fixture(scope="package")
def service(
    featured_portfolio: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    from serving.app import create_app

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    materialize_latest(featured_portfolio)
    config = ExperimentConfig.model_validate(QUICK)
    train_portfolio(featured_portfolio, config, "", tracking_uri=uri)
    settings = ServingSettings(
        portfolio=str(featured_portfolio),
        api_keys=[SecretStr(KEY)],
        contact_rules=str(REPO / "data_contracts" / "contact_rules.yaml"),
        watch_seconds=0.3,
    )
    url, server, thread = serve(create_app(settings, tracking_uri=uri))
    yield Running(url, featured_portfolio, server, uri)
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=10)


class Api:
    """Requests to a running service, each on its own closed connection."""

    def __init__(self, url: str, key: str | None = KEY) -> None:
        self.url, self.headers = url, ({"X-API-Key": key} if key else {})

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        with httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=TLS) as http:
            return http.request(method, path, **kwargs)  # type: ignore[arg-type]

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return self.request("POST", path, **kwargs)


def client(running: Running, key: str | None = KEY) -> Api:
    return Api(running.url, key)


def pin_first_pair(running: Running, alias: str, why: str) -> str:
    """Give the first trained pair (version 1 of both models) an alias of its own, for tests
    that must not follow `champion` (other tests move it, to a broken model on purpose)."""
    from pipelines.registry import (
        NEXT_BEST_ACTION_MODEL,
        PROPENSITY_MODEL,
        open_registry,
        set_alias,
    )

    store = open_registry(running.tracking_uri)
    for name in (PROPENSITY_MODEL, NEXT_BEST_ACTION_MODEL):
        set_alias(store, name, alias, "1", why)
    return alias
