"""``/healthz`` (the process answers) and ``/readyz`` (the database is reachable)."""

from __future__ import annotations

import asyncio

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tickpipe_api.models import Health
from tickpipe_api.routes.common import ctx_of

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> JSONResponse:
    """200 while the process serves requests (liveness)."""
    return JSONResponse({"ok": True, "reason": "ok"})


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(request: Request) -> JSONResponse:
    """200 when the database answers ``SELECT 1`` within 2 s, else 503 (readiness)."""
    try:
        await asyncio.wait_for(ctx_of(request).pool.fetchval("SELECT 1"), 2.0)
    except (OSError, asyncpg.PostgresError, TimeoutError, RuntimeError) as e:
        return JSONResponse({"ok": False, "reason": f"database: {type(e).__name__}"}, 503)
    return JSONResponse({"ok": True, "reason": "ok"})
