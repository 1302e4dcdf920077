"""``GET /v1/ticks`` and ``GET /v1/candles`` (also ``HEAD``: the row count)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from tickpipe_shared.db.ohlcv import source_candle_sides
from tickpipe_shared.kinds import KindError, Timeframe

from tickpipe_api.answers import answer
from tickpipe_api.auth import Principal, require
from tickpipe_api.formats import MEDIA_TYPES
from tickpipe_api.models import CandlesPage, ProblemModel, TicksPage
from tickpipe_api.problems import Problem, bad_parameter
from tickpipe_api.queries import find_instrument
from tickpipe_api.routes.common import (
    CountOnlyParam,
    CursorParam,
    EndParam,
    FormatParam,
    PriceFormatParam,
    StartParam,
    ctx_of,
    format_of,
    limit_of,
)
from tickpipe_api.series import Series
from tickpipe_api.times import parse_range

router = APIRouter(prefix="/v1", tags=["data"])

_ERRORS: dict[int | str, dict[str, object]] = {
    s: {"model": ProblemModel, "content": {"application/problem+json": {}}}
    for s in (401, 403, 404, 422, 429)
}


def _content(model: type) -> dict[int | str, dict[str, object]]:
    streams: dict[str, dict[str, object]] = {m: {} for f, m in MEDIA_TYPES.items() if f != "json"}
    return {
        200: {
            "model": model,
            "description": "json: one page (see CountAnswer for count_only); other formats "
            "stream the whole range",
            "content": {"application/json": {}, **streams},
        },
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **_ERRORS,
    }


@router.get(
    "/ticks",
    responses=_content(TicksPage),
    summary="Ticks of an instrument over [start, end)",
)
async def ticks(
    request: Request,
    principal: Annotated[Principal, Depends(require("read"))],
    instrument: Annotated[str, Query(description="EURUSD (any spelling), R_50, C:EURUSD …")],
    start: StartParam,
    end: EndParam,
    format_: FormatParam = None,
    price_format: PriceFormatParam = "decimal",
    limit: Annotated[int | None, Query(description="json: rows per page (default 1000)")] = None,
    cursor: CursorParam = None,
    count_only: CountOnlyParam = False,
) -> Response:
    """Ticks ordered by ``ts``: bid, ask (exact decimals at the instrument's scale), volumes in
    the source's unit, validation flags. json pages with a keyset cursor; ndjson, csv, arrow
    and parquet stream the whole range."""
    ctx = ctx_of(request)
    fmt = format_of(request, format_)
    lo, hi = parse_range(start, end)
    inst = await find_instrument(ctx.pool, instrument)
    series = Series("ticks", inst.instrument, lo, hi, inst.price_scale, price_format)
    return await answer(
        request, ctx, series, fmt, route="ticks", limit=limit_of(ctx, limit), cursor=cursor,
        count_only=count_only,
    )  # fmt: skip


@router.get(
    "/candles",
    responses=_content(CandlesPage),
    summary="OHLCV candles of an instrument whose open time is in [start, end)",
)
async def candles(
    request: Request,
    principal: Annotated[Principal, Depends(require("read"))],
    instrument: Annotated[str, Query(description="EURUSD (any spelling), R_50, C:EURUSD …")],
    start: StartParam,
    end: EndParam,
    timeframe: Annotated[
        str, Query(description="1m, 5m, 15m, 1h, 4h, 1d, 1w … (source candles: any stored)")
    ] = "1h",
    side: Annotated[
        Literal["bid", "ask", "mid", "trade"] | None,
        Query(description="Computed: bid (default), ask or mid; source candles: the stored side"),
    ] = None,
    source_candles: Annotated[
        bool, Query(description="The sources' own bars (table candles), not computed from ticks")
    ] = False,
    format_: FormatParam = None,
    price_format: PriceFormatParam = "decimal",
    limit: Annotated[int | None, Query(description="json: candles per page (default 1000)")] = None,
    cursor: CursorParam = None,
    count_only: CountOnlyParam = False,
) -> Response:
    """Candles labelled by their open time. Computed from ticks (bid, ask or mid): from the
    continuous aggregate of the timeframe where one exists (TimescaleDB), otherwise with
    ``date_bin`` buckets (TimescaleDB's ``time_bucket`` origin). ``source_candles=true``: the
    bars the source served."""
    ctx = ctx_of(request)
    fmt = format_of(request, format_)
    lo, hi = parse_range(start, end)
    try:
        tf = Timeframe.parse(timeframe)
    except KindError as e:
        raise bad_parameter("timeframe", str(e)) from None
    inst = await find_instrument(ctx.pool, instrument)
    if source_candles:
        if side is None:
            sides = [s for _, s in await source_candle_sides(ctx.pool, inst.instrument, str(tf))]
            if len(sides) != 1:
                raise bad_parameter(
                    "side",
                    f"{inst.instrument} has {tf} source candles of sides: "
                    f"{', '.join(sides) or 'none'}; choose one with side=",
                )
            side = sides[0]  # type: ignore[assignment]
        series = Series(
            "source_candles", inst.instrument, lo, hi, inst.price_scale, price_format,
            timeframe=str(tf), side=side,
        )  # fmt: skip
    else:
        if tf.duration_ms is None:
            raise bad_parameter(
                "timeframe",
                f"candles computed from ticks take a fixed timeframe (s, m, h, d, w), not {tf}; "
                "calendar timeframes are served as source candles (source_candles=true)",
            )
        side = side or "bid"
        if side == "trade":
            raise bad_parameter(
                "side", "computed candles are bid, ask or mid (trade: source candles)"
            )
        series = Series(
            "candles", inst.instrument, lo, hi, inst.price_scale, price_format,
            timeframe=str(tf), side=side, width=timedelta(milliseconds=tf.duration_ms),
        )  # fmt: skip
    if series.kind == "candles" and series.tick_window()[1] <= series.tick_window()[0]:
        raise Problem(
            422, "invalid-parameter", "Invalid parameter",
            f"no {tf} bar opens in [{start}, {end})", "start",
        )  # fmt: skip
    return await answer(
        request, ctx, series, fmt, route="candles", limit=limit_of(ctx, limit), cursor=cursor,
        count_only=count_only,
    )  # fmt: skip


# HEAD: the same answers without a body, the row count in X-Row-Count (not in the schema: the
# OpenAPI operation is the GET).
router.add_api_route("/ticks", ticks, methods=["HEAD"], include_in_schema=False)
router.add_api_route("/candles", candles, methods=["HEAD"], include_in_schema=False)
