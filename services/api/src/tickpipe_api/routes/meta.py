"""``GET /v1/instruments`` and ``GET /v1/coverage``: what is stored, and where the gaps are."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from tickpipe_shared.db.coverage import coverage, status_report
from tickpipe_shared.instruments.schedule import default_schedule_for
from tickpipe_shared.kinds import Kind, KindError

from tickpipe_api.auth import Principal, require
from tickpipe_api.formats import MEDIA_TYPES, stream_records
from tickpipe_api.models import CoverageAnswer, InstrumentList, ProblemModel
from tickpipe_api.problems import bad_parameter
from tickpipe_api.queries import all_instruments, find_instrument
from tickpipe_api.routes.common import FormatParam, ctx_of, format_of
from tickpipe_api.times import parse_time

router = APIRouter(prefix="/v1", tags=["coverage"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ProblemModel, "content": {"application/problem+json": {}}}
    for s in (401, 403, 404, 422, 429)
}


def _records(
    request: Request, fmt_value: str | None, meta: dict[str, Any], rows: list[dict[str, Any]]
) -> Response:
    fmt = format_of(request, fmt_value)
    headers = {"X-Tickpipe-Source": str(meta["source"]), "Cache-Control": "no-store"}
    if fmt == "json":
        body = json.dumps({**meta, "data": rows}, separators=(",", ":"), default=str)
        return Response(body, media_type=MEDIA_TYPES["json"], headers=headers)
    return StreamingResponse(
        stream_records(fmt, rows), media_type=MEDIA_TYPES[fmt], headers=headers
    )


@router.get("/instruments", responses={200: {"model": InstrumentList}, **_ERRORS})
async def instruments(
    request: Request,
    principal: Annotated[Principal, Depends(require("read"))],
    format_: FormatParam = None,
) -> Response:
    """Every stored instrument: price scale, asset class, codes at each source, and per kind
    (ticks, ``candles:<timeframe>:<side>``) the units stored / empty / suspect-empty / partial
    / failed, rows, first and last row. csv and arrow/parquet list one row per instrument and
    kind."""
    ctx = ctx_of(request)
    insts = await all_instruments(ctx.pool)
    async with ctx.pool.acquire() as conn:
        covered = await coverage(conn)
    by: dict[str, list[dict[str, Any]]] = {}
    for c in covered:
        d = c.to_dict()
        for legacy in ("ticks", "first_tick", "last_tick", "instrument"):
            d.pop(legacy, None)
        by.setdefault(c.instrument, []).append(d)
    rows: list[dict[str, Any]] = [
        {
            "instrument": i.instrument,
            "price_scale": i.price_scale,
            "asset_class": i.asset_class,
            "source_codes": i.source_codes,
            "coverage": by.get(i.instrument, []),
        }
        for i in insts
    ]
    fmt = format_of(request, format_)
    if fmt != "json":
        rows = [
            {k: v for k, v in r.items() if k != "coverage"}
            | {"source_codes": str(r["source_codes"])}
            | c
            for r in rows
            for c in (r["coverage"] or [{}])
        ]
    return _records(request, format_, {"source": "instruments, ingest_log"}, rows)


async def _failures(
    ctx: Any, instrument: str | None, kind: str, lo: datetime | None, hi: datetime | None
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    rows = await ctx.pool.fetch(
        """SELECT instrument, unit_start, failure_stage, failure_reason FROM ingest_log
           WHERE state = 'failed' AND ($1::text IS NULL OR instrument = $1) AND kind = $2
             AND ($3::timestamptz IS NULL OR unit_end > $3)
             AND ($4::timestamptz IS NULL OR unit_start < $4)
           ORDER BY unit_start""",
        instrument,
        kind,
        lo,
        hi,
    )
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        unit = r["unit_start"].astimezone(UTC).isoformat().replace("+00:00", "Z")
        out.setdefault((r["instrument"], unit), []).append(
            {"unit": unit, "stage": r["failure_stage"], "reason": r["failure_reason"]}
        )
    return out


@router.get("/coverage", responses={200: {"model": CoverageAnswer}, **_ERRORS})
async def coverage_report(
    request: Request,
    principal: Annotated[Principal, Depends(require("read"))],
    instrument: Annotated[
        str | None, Query(description="Only this instrument (default: all)")
    ] = None,
    kind: Annotated[
        str, Query(description="ticks, or candles:<timeframe>:<side> (e.g. candles:1m:bid)")
    ] = "ticks",
    start: Annotated[
        str | None, Query(description="From (default: the first unit); widened to whole periods")
    ] = None,
    end: Annotated[
        str | None, Query(description="To, exclusive (default: the last unit's end)")
    ] = None,
    format_: FormatParam = None,
) -> Response:
    """Per instrument and period (UTC day for hour and day units; month or year for longer
    candle units), against the instrument's trading schedule: units expected, stored, empty,
    suspect-empty (no data although the market was open), partial, failed (with the stage and
    reason) and missing (expected, never recorded)."""
    ctx = ctx_of(request)
    format_of(request, format_)
    try:
        k = str(Kind.parse(kind))
    except KindError as e:
        raise bad_parameter("kind", str(e)) from None
    lo = parse_time(start, "start") if start else None
    hi = parse_time(end, "end") if end else None
    if lo and hi and hi <= lo:
        raise bad_parameter("end", "end must be after start")
    name = (await find_instrument(ctx.pool, instrument)).instrument if instrument else None
    async with ctx.pool.acquire() as conn:
        rows = await status_report(
            conn, default_schedule_for, name, k, by_period=True, from_=lo, to=hi
        )
    failures = await _failures(ctx, name, k, lo, hi) if any(r["failed"] for r in rows) else {}
    for r in rows:
        r["failures"] = [
            f for unit in r["failed_units"] for f in failures.get((r["instrument"], unit), [])
        ]
    meta = {"source": "ingest_log against the trading schedule", "kind": k}
    return _records(request, format_, meta, rows)
