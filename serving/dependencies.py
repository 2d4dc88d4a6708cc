"""Request dependencies: the API key check and the loaded service."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from serving.service import ScoringService

API_KEY_HEADER = "X-API-Key"
_header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="The caller's API key.")


async def require_api_key(request: Request, key: Annotated[str | None, Depends(_header)]) -> None:
    """401 without a key, 403 with a wrong one; keys are compared in constant time and never
    logged or echoed. (`async` so FastAPI runs it on the event loop: a plain `def` dependency
    costs a thread-pool hop per request.)"""
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"missing API key: send it in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": "APIKey"},
        )
    accepted = request.app.state.api_keys
    matched = False
    for candidate in accepted:  # every key is compared, so timing says nothing about which
        matched |= hmac.compare_digest(key.encode(), candidate.encode())
    if not matched:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="API key not accepted")


async def get_service(request: Request) -> ScoringService:
    return request.app.state.service


Service = Annotated[ScoringService, Depends(get_service)]
Authorized = Depends(require_api_key)
