"""Request dependencies: the API key check and the loaded service."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from serving.service import ScoringService

API_KEY_HEADER = "X-API-Key"
MISSING_KEY = f"missing API key: send it in the {API_KEY_HEADER} header"
WRONG_KEY = "API key not accepted"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The caller's API key.")


def key_refusal(sent: bytes | None, accepted: Sequence[bytes]) -> int | None:
    """None when `sent` (the header's raw bytes) is an accepted key, else the status to
    answer: 401 without a key, 403 with a wrong one. Every key is compared, in constant time,
    so timing says nothing about which one matched or how much of it."""
    if not sent:
        return status.HTTP_401_UNAUTHORIZED
    matched = False
    for candidate in accepted:
        matched |= hmac.compare_digest(sent, candidate)
    return None if matched else status.HTTP_403_FORBIDDEN


async def require_api_key(request: Request, key: Annotated[str | None, Depends(_header)]) -> None:
    """401 without a key, 403 with a wrong one; keys are never logged or echoed. The guard
    middleware (serving/guard.py) already refused such requests before their body was read;
    this dependency documents the key in the OpenAPI schema and checks it again.
    (`async` so FastAPI runs it on the event loop: a plain `def` dependency costs a thread-pool
    hop per request.)"""
    sent = None if key is None else key.encode("latin-1")  # Starlette decoded it as Latin-1
    refusal = key_refusal(sent, request.app.state.api_keys)
    if refusal == status.HTTP_401_UNAUTHORIZED:
        raise HTTPException(refusal, detail=MISSING_KEY, headers={"WWW-Authenticate": "APIKey"})
    if refusal is not None:
        raise HTTPException(refusal, detail=WRONG_KEY)


async def get_service(request: Request) -> ScoringService:
    return request.app.state.service


Service = Annotated[ScoringService, Depends(get_service)]
Authorized = Depends(require_api_key)
