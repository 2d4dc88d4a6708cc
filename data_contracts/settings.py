"""Runtime settings of every cobranza component, read from the environment and `.env`.

One object, nested by area, built on first use by the cached `get_settings()`; nothing is read
at import time. Environment variables use the prefix `COBRANZA_` and `__` between levels, e.g.
`COBRANZA_FEATURE_STORE__ONLINE_STORE=redis`. Secrets come only from the environment and are
never logged. It lives in the root package so that every other package can read it.
"""

from __future__ import annotations

from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class FeatureStoreSettings(BaseModel):
    """Where Feast keeps its registry and online store for a portfolio."""

    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: SecretStr | None = None
    """Redis address and options in Feast's format, e.g. `localhost:6379,password=...`."""
    training_engine: Literal["direct", "feast"] = "direct"
    """How training sets are joined: `direct` (pandas as-of join over the same snapshots and
    TTLs, measured fastest) or `feast` (Feast's DuckDB offline store)."""


class TrainingSettings(BaseModel):
    """Where runs and models are tracked, and how much of the machine training uses."""

    tracking_uri: str | None = None
    """MLflow tracking and registry URI; default: a SQLite store under `data/mlflow/`
    (embedded, no server). Set `http://host:5000` for an MLflow server."""
    data_root: str = "data"
    """The project's data folder, home of the embedded MLflow store."""
    threads: int = 2
    """LightGBM threads for training (the machine's cores)."""


MAX_BODY_BYTES = 8 * 2**20
"""The default body limit, 8 MiB: sized for the largest request, 1,000 full feature payloads
(159 features each). Measured on a simulated portfolio with int64 ids: 5.1 MB as compact JSON,
5.4 MB as Python's `json.dumps` writes it, 6.7 MB indented by two spaces, and 7.7 MB if every
value were a 19-digit float. A worklist restricted to more than about 900,000 seven-digit
account ids needs more."""


class ServingSettings(BaseModel):
    """The scoring service: what it serves, who may call it, how much at once."""

    model_config = ConfigDict(hide_input_in_errors=True)  # an invalid key is never printed

    portfolio: str = "data/demo"
    """Portfolio folder whose Feast online store holds the latest features."""
    model_alias: str = "champion"
    api_keys: list[SecretStr] = []
    """Keys accepted in the `X-API-Key` header (from the environment only, never logged), e.g.
    `COBRANZA_SERVING__API_KEYS='["key-one","key-two"]'`."""
    max_batch: int = 1000
    """Most accounts scored in one request; larger batches get 413."""
    reasons: int = 3
    """Reason codes given per direction (up and down) for each score."""
    watch_seconds: float = 30.0
    """How often the service checks the registry for a new champion (0: never)."""
    contact_rules: str | None = None
    """Contact limits the worklist enforces: defaults and stricter ones per jurisdiction
    (default: the rules packaged with cobranza, `data_contracts/contact_rules.yaml`)."""
    reason_cache: int = 200_000
    """Accounts whose reason codes computed on demand are kept for reuse (per model version
    and feature copy; 0: compute every time). Exact TreeSHAP costs about 2 ms per account.
    Prepared reason codes do not count: they are kept for every account."""
    precompute_reasons: bool = True
    """Prepare every stored account's reason codes once per model version and feature
    generation, in one low-priority process shared by the workers (`serving.prepared`); a new
    champion or generation is swapped in when they are ready. Off: swaps happen at once and
    reason codes are computed on demand."""
    open_docs: bool = False
    """Serve `/docs`, `/redoc` and `/openapi.json` without a key (default: they need one, like
    every endpoint but `/health`)."""
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1)
    """Largest request body accepted; larger ones get 413 without being read."""
    idle_timeout: float = Field(default=5.0, gt=0)
    """Seconds a connection may stay open without sending a request (before its first one or
    between keep-alive requests) before the worker closes it."""
    max_connections: int = Field(default=1000, ge=1)
    """Open connections per worker; past it the longest-idle one is closed (and logged)."""
    worker_restarts: int = Field(default=5, ge=0)
    """Dead workers replaced within `worker_restart_window` seconds before the service gives
    up and exits with a non-zero status (with `--workers` 2 or more)."""
    worker_restart_window: float = Field(default=60.0, gt=0)
    """Seconds over which replaced workers are counted against `worker_restarts`."""

    @field_validator("api_keys")
    @classmethod
    def _keys_fit_a_header(cls, keys: list[SecretStr]) -> list[SecretStr]:
        """Refuse keys no request could carry. Header values are ASCII (RFC 9110) and clients
        encode other characters differently (Latin-1 or UTF-8), and HTTP strips spaces around a
        value: such a key could never match, so the service refuses to start. The message
        says which key (by position), never the key itself."""
        for position, key in enumerate(keys, start=1):
            text = key.get_secret_value()
            if not text:
                raise ValueError(f"API key {position} is empty")
            if not all(" " <= char <= "~" for char in text):
                raise ValueError(
                    f"API key {position} has characters outside printable ASCII; an HTTP "
                    "header cannot carry them reliably"
                )
            if text != text.strip():
                raise ValueError(
                    f"API key {position} starts or ends with a space, which HTTP strips"
                )
        return keys


class Settings(BaseSettings):
    """All runtime settings."""

    model_config = SettingsConfigDict(
        env_prefix="COBRANZA_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        hide_input_in_errors=True,  # settings hold secrets: errors never print values
    )
    feature_store: FeatureStoreSettings = FeatureStoreSettings()
    training: TrainingSettings = TrainingSettings()
    serving: ServingSettings = ServingSettings()


@cache
def get_settings() -> Settings:
    """The settings, read once from the environment and `.env`."""
    return Settings()
