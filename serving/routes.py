"""HTTP endpoints of the scoring service."""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from pipelines.registry import REPORT_FILE, stored_audit
from serving.dependencies import Authorized, Service
from serving.schemas import (
    AccountIdInPath,
    Excluded,
    Health,
    ModelInfo,
    ModelsResponse,
    ModelVersionInPath,
    ScoreItem,
    ScoreRequest,
    ScoreResponse,
    WorklistItem,
    WorklistRequest,
    WorklistResponse,
)
from serving.service import PayloadError, ServiceNotReady

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key in the X-API-Key header"},
    403: {"description": "API key not accepted"},
}
public = APIRouter()
api = APIRouter(prefix="/v1", dependencies=[Authorized], responses=AUTH_RESPONSES)
INLINE_ROWS = 20
"""Batches up to this size are scored on the event loop (sub-10 ms); larger ones in a thread."""


@public.get("/health", response_model=Health, summary="The process is alive")
async def health() -> Health:
    return Health(status="ok")


@public.get(
    "/ready",
    response_model=Health,
    dependencies=[Authorized],
    summary="Models and the online store are loaded",
    responses={503: {"description": "Not ready: says what is missing"}, **AUTH_RESPONSES},
)
async def ready(service: Service) -> Health | JSONResponse:
    if service.ready:
        done, total = service.reasons_held()
        detail = {
            "models": service.versions(),
            "features": service.portfolio.stamp if service.portfolio is not None else None,
            "reasons_precomputed": f"{done}/{total}",
        }
        return Health(status="ready", detail=detail)
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"status": "not ready", "detail": {"missing": service.errors}},
    )


@public.get(
    "/metrics",
    dependencies=[Authorized],
    summary="Prometheus metrics: requests, latencies, accounts scored, model versions",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}, **AUTH_RESPONSES},
)
async def metrics(request: Request) -> Response:
    return request.app.state.metrics.render()


@api.get("/models", response_model=ModelsResponse, summary="The model versions in use")
async def models(service: Service) -> ModelsResponse:
    loaded = [m for m in (service.propensity, service.actions) if m is not None]
    return ModelsResponse(
        models=[
            ModelInfo(
                name=m.name,
                alias=m.alias,
                version=m.version,
                run_id=m.run_id,
                feature_service=m.feature_service,
            )
            for m in loaded
        ]
    )


@api.get(
    "/models/{name}/{version}/audit",
    response_class=HTMLResponse,
    summary="The audit report of a model version (self-contained HTML)",
    description="The page `cobranza audit` logged to the version's MLflow run: explanations, "
    "group fairness, proxies, drift, collection KPIs, the data window and the model card. "
    "Open it in a browser; it needs nothing else.",
    responses={
        200: {"content": {"text/html": {"example": "<!DOCTYPE html><html>...</html>"}}},
        404: {"description": "No audit stored for this model version"},
    },
)
async def audit_report(
    name: Annotated[
        str,
        Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", examples=["cobranza-propensity"]),
    ],
    version: Annotated[ModelVersionInPath, Path(examples=[3])],
) -> HTMLResponse:
    page = await run_in_threadpool(stored_audit, name, str(version), REPORT_FILE)
    if page is None:  # the name is not echoed: it could be anything the caller typed
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail="no audit stored for this model version "
            f"(run `cobranza audit --model {version}`)",
        )
    return HTMLResponse(page)


@api.post(
    "/scores",
    response_model=ScoreResponse,
    summary="Propensity, expected amount, best action and reasons for up to 1,000 accounts",
    responses={
        413: {"description": "More accounts than the batch limit"},
        503: {"description": "Models or store not loaded"},
    },
)
async def scores(request: ScoreRequest, service: Service, http: Request) -> ScoreResponse:
    count = len(request.account_ids or request.accounts or [])
    limit = service.settings.max_batch
    if count > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"{count} accounts in one request; the limit is {limit}",
        )
    ids, payloads = request.account_ids, request.accounts

    def work() -> list[dict[str, object]]:
        if ids is not None:
            return service.score_ids(ids, request.reasons)
        return service.score_payloads(payloads or [], request.reasons)

    try:
        items = work() if count <= INLINE_ROWS else await run_in_threadpool(work)
    except ServiceNotReady as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
    except PayloadError as error:
        raise RequestValidationError(error.problems) from None
    counter = http.app.state.metrics.accounts
    for item in items:
        counter.labels(item["status"]).inc()
    return ScoreResponse(
        items=[ScoreItem.model_validate(item) for item in items], models=service.versions()
    )


@api.get(
    "/accounts/{account_id}/explanation",
    response_model=ScoreItem,
    summary="An account's score and its reason codes (or why a closed account is not scored)",
    responses={404: {"description": "Unknown account"}},
)
async def explanation(
    account_id: Annotated[AccountIdInPath, Path(description="The account id.")],
    service: Service,
) -> ScoreItem:
    try:
        [item] = service.score_ids([account_id], with_reasons=True)
    except ServiceNotReady as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
    if item["status"] == "unknown_account":  # a closed account is known: it says why
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=item["detail"])
    return ScoreItem.model_validate(item)


def _clean(record: dict[Any, Any]) -> dict[str, Any]:
    """NaN and missing values as None, numpy numbers as Python numbers."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, float) and math.isnan(value):
            value = None
        elif hasattr(value, "item"):
            value = value.item()
        out[str(key)] = value
    return out


@api.post(
    "/worklists",
    response_model=WorklistResponse,
    summary="A compliant, prioritized worklist for a day and the capacities given",
    responses={503: {"description": "Models, store or contact rules not loaded"}},
)
async def worklists(request: WorklistRequest, service: Service) -> WorklistResponse:
    def work() -> WorklistResponse:
        items, excluded, counts = service.worklist(
            request.date, request.capacity.model_dump(), request.account_ids
        )
        rows = [_clean(r) for r in items.head(request.limit).to_dict("records")]
        for row in rows:
            if row.get("installments") is not None:
                row["installments"] = int(row["installments"])
        return WorklistResponse(
            date=request.date,
            items=[WorklistItem.model_validate(row) for row in rows],
            excluded=[Excluded.model_validate(_clean(r)) for r in excluded.to_dict("records")],
            counts=counts,
            models=service.versions(),
        )

    try:
        return await run_in_threadpool(work)
    except ServiceNotReady as error:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
