"""``POST /v1/requests`` (publish a fetch request) and ``GET /v1/requests/{id}`` (its progress)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from tickpipe_shared.wire.requests import RequestError, parse_request

from tickpipe_api import metrics
from tickpipe_api.auth import Principal, require
from tickpipe_api.models import FetchRequestBody, ProblemModel, RequestAccepted, RequestStatus
from tickpipe_api.problems import Problem
from tickpipe_api.routes.common import ctx_of
from tickpipe_api.times import parse_time

router = APIRouter(prefix="/v1", tags=["requests"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ProblemModel, "content": {"application/problem+json": {}}}
    for s in (401, 403, 404, 422, 429, 503)
}


def _status_url(request: Request, request_id: str) -> str:
    base = ctx_of(request).api.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return f"{base}/v1/requests/{request_id}"


@router.post(
    "/requests",
    status_code=202,
    response_model=RequestAccepted,
    responses=_ERRORS,
    summary="Publish a fetch request (as `tickpipe request` does)",
)
async def submit(
    request: Request,
    body: FetchRequestBody,
    principal: Annotated[Principal, Depends(require("request"))],
) -> JSONResponse:
    """Validate the request like the CLI (``tickpipe_shared.wire.requests.parse_request``) and
    publish it on ``fetch-requests``. Answers its id and the URL of its status. Instruments are
    resolved by the fetcher's planner: an unknown one shows as ``rejected`` in the status."""
    ctx = ctx_of(request)
    payload: dict[str, Any] = {
        "instrument": body.instrument,
        "source": body.source or ctx.settings.default_source,
        "kind": body.kind,
        "from": parse_time(body.start, "start").isoformat(),
        "to": parse_time(body.end, "end").isoformat(),
    }
    if body.timeframe is not None:
        payload["timeframe"] = body.timeframe
    if body.side is not None:
        payload["side"] = body.side
    if body.skip_existing:
        payload["skip_existing"] = True
    try:
        req = parse_request(json.dumps(payload).encode())
    except RequestError as e:
        raise Problem(422, "invalid-request", "Invalid fetch request", str(e), "body") from None
    record = json.loads(req.to_json())
    await ctx.pool.execute(
        "INSERT INTO api_requests (request_id, key_id, body) VALUES ($1, $2, $3::jsonb)",
        req.request_id,
        None if principal.key_id == "local" else principal.key_id,
        json.dumps(record),
    )
    try:
        await ctx.publisher.publish(req)
    except (KafkaError, TimeoutError) as e:
        await ctx.pool.execute("DELETE FROM api_requests WHERE request_id = $1", req.request_id)
        raise Problem(
            503, "kafka-unavailable", "Kafka unavailable",
            f"cannot publish the request: {type(e).__name__}", headers={"Retry-After": "5"},
        ) from None  # fmt: skip
    metrics.REQUESTS_PUBLISHED.inc()
    url = _status_url(request, req.request_id)
    return JSONResponse(
        {"request_id": req.request_id, "status_url": url, "request": record},
        status_code=202,
        headers={"Location": url},
    )


@router.get(
    "/requests/{request_id}",
    response_model=RequestStatus,
    responses=_ERRORS,
    summary="Progress and completion of a fetch request",
)
async def status(
    request: Request,
    request_id: Annotated[str, Path(min_length=1, max_length=128)],
    principal: Annotated[Principal, Depends(require("read"))],
) -> JSONResponse:
    """``pending`` (published, no event yet), ``running`` (units stored / empty / failed so far
    of ``units``), ``completed`` (with up to 5 failure reasons) or ``rejected`` (with the
    planner's reason), from the tracker's request events."""
    ctx = ctx_of(request)
    state = ctx.events.get(request_id)
    body: dict[str, Any] = {"request_id": request_id}
    try:
        row = await ctx.pool.fetchrow(
            "SELECT body::text AS body, created_at FROM api_requests WHERE request_id = $1",
            request_id,
        )
    except asyncpg.PostgresError:
        row = None
    if row is not None:
        body["request"] = json.loads(row["body"])
    if state is None:
        if row is None:
            raise Problem(
                404, "unknown-request", "Unknown request",
                f"no fetch request {request_id!r} was published here and no event about it "
                "was seen", "request_id",
            )  # fmt: skip
        body["status"] = "pending"
        return JSONResponse(body)
    body.update({k: v for k, v in state.items() if k != "ticks"})
    body["rows"] = state.get("ticks", 0) or 0
    return JSONResponse(body)
