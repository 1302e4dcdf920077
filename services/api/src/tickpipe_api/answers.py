"""Answering a ticks or candles query: count-only, json pages with keyset cursors, streams of
every other format, ETags, 304s and the answer cache.

Cursors (json): opaque URL-safe base64 of ``{"t": ts, "k": n, "q": query hash}`` — the next
page starts at timestamp ``t`` after skipping the first ``n`` rows at exactly ``t`` in the
paging order ``(ts, bid, ask, bid_volume, ask_volume, flags)`` (candles: ``n`` is 0, a bar's
start is unique). The order within a timestamp is by the rows' values, so rewriting a unit
with the same rows (a re-fetch, a replay) neither repeats nor skips a row. No OFFSET: the
database seeks to ``t`` in the ``(instrument, ts)`` index.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from tickpipe_shared.units import dt_to_ms

from tickpipe_api import metrics
from tickpipe_api.batches import TickCopyReader, records_batch, schema_of, tick_batch
from tickpipe_api.cache import CachedAnswer, KnownAnswer, etag_matches, etag_of, request_key
from tickpipe_api.context import Context
from tickpipe_api.formats import (
    BYTES_PER_VALUE,
    MEDIA_TYPES,
    STREAMING,
    Format,
    json_page,
    stream,
)
from tickpipe_api.ledger_watch import Stamp
from tickpipe_api.problems import Problem, bad_parameter
from tickpipe_api.queries import (
    candle_sql,
    closed,
    columns_of,
    copy_ticks,
    count_rows,
    estimate_rows,
    ledger_state,
    tick_page_sql,
)
from tickpipe_api.series import Series
from tickpipe_api.times import iso

_DONE = object()


# --------------------------------------------------------------------------- cursors


def _query_hash(series: Series) -> str:
    return hashlib.sha256(series.cache_key().encode()).hexdigest()[:12]


def encode_cursor(series: Series, t: datetime, k: int) -> str:
    """The opaque cursor of the page starting at ``t`` after ``k`` rows at ``t``."""
    raw = json.dumps({"t": t.astimezone(UTC).isoformat(), "k": k, "q": _query_hash(series)})
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(series: Series, cursor: str) -> tuple[datetime, int]:
    """``(t, k)`` of ``cursor``; 422 when it is malformed or belongs to another query."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        t, k, q = datetime.fromisoformat(data["t"]), int(data["k"]), str(data["q"])
    except (ValueError, KeyError, TypeError):
        raise bad_parameter(
            "cursor", "malformed cursor: pass the 'next' of a previous page"
        ) from None
    if q != _query_hash(series):
        raise bad_parameter("cursor", "this cursor belongs to another query (instrument, range…)")
    return t, max(0, k)


# --------------------------------------------------------------------------- headers


def describe(series: Series) -> dict[str, Any]:
    """The ``meta`` of an answer: what, from where, in which units."""
    return {
        "instrument": series.instrument,
        "kind": series.kind,
        "timeframe": series.timeframe,
        "side": series.side,
        "start": iso(series.start),
        "end": iso(series.end),
        "source": series.description(),
        "units": {
            "ts": "ISO 8601 UTC (arrow/parquet: timestamp ms UTC); candles: the bar's open time",
            "prices": f"exact decimals at scale {series.price_scale}"
            + (" (float64)" if series.price_format == "float" else " (strings in json)"),
            "volume": "the source's unit (Dukascopy: millions; Polygon: shares or ticks)",
        },
        "price_scale": series.price_scale,
        "price_format": series.price_format,
    }


def series_headers(series: Series) -> dict[str, str]:
    """Headers every data answer carries: source and units."""
    return {
        "X-Tickpipe-Source": series.description(),
        "X-Tickpipe-Price-Scale": str(series.price_scale),
        "X-Tickpipe-Units": "ts=UTC ms (bar open time); prices=exact decimals at price scale; "
        "volume=source unit",
    }


# --------------------------------------------------------------------------- batches


async def tick_batches(
    ctx: Context, series: Series, schema: pa.Schema
) -> AsyncIterator[pa.RecordBatch]:
    """Every tick of ``series`` as record batches of about ``stream_batch_rows`` rows, read with
    binary ``COPY`` on one pooled connection; at most two batches wait in memory."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
    reader = TickCopyReader()
    pending: list[Any] = []
    size = [0]
    batch_rows = ctx.api.stream_batch_rows

    async def flush() -> None:
        if pending:
            rows = np.concatenate(pending) if len(pending) > 1 else pending[0]
            pending.clear()
            size[0] = 0
            await queue.put(rows)

    async def sink(chunk: bytes) -> None:
        rows = reader.feed(chunk)
        if rows is not None:
            pending.append(rows)
            size[0] += len(rows)
            if size[0] >= batch_rows:
                await flush()

    async def run() -> None:
        try:
            async with ctx.pool.acquire() as conn:
                await copy_ticks(conn, series, sink)
            reader.finish()
            await flush()
            await queue.put(_DONE)
        except Exception as e:  # handed to the consumer, which raises it
            await queue.put(e)

    task = asyncio.get_running_loop().create_task(run())
    try:
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield tick_batch(item, series, schema)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def candle_batches(
    ctx: Context, series: Series, schema: pa.Schema
) -> AsyncIterator[pa.RecordBatch]:
    """Every candle of ``series`` as record batches, read with a server-side cursor."""
    sql, args = candle_sql(series, ctx.timescaledb, paged=False)
    columns = columns_of(series)
    async with ctx.pool.acquire() as conn, conn.transaction():
        cur = await conn.cursor(sql, *args)
        while True:
            rows = await cur.fetch(ctx.api.stream_batch_rows)
            if not rows:
                return
            yield records_batch(rows, columns, series, schema)


def batches_of(ctx: Context, series: Series, schema: pa.Schema) -> AsyncIterator[pa.RecordBatch]:
    """The whole range of ``series`` as record batches."""
    if series.kind == "ticks":
        return tick_batches(ctx, series, schema)
    return candle_batches(ctx, series, schema)


async def page(
    ctx: Context, series: Series, cursor: str | None, limit: int
) -> tuple[pa.RecordBatch, str | None]:
    """One json page of at most ``limit`` rows and the cursor of the next (``None`` at the end)."""
    columns = columns_of(series)
    schema = schema_of(series, columns)
    t, k = decode_cursor(series, cursor) if cursor else (series.tick_window()[0], 0)
    if series.kind == "ticks":
        lo = max(series.start, t)
        rows = list(
            await ctx.pool.fetch(tick_page_sql(), series.instrument, lo, series.end, limit + k + 1)
        )
        skip = 0
        while skip < min(k, len(rows)) and rows[skip]["ts"] == t:
            skip += 1
        rows = rows[skip:]
    else:
        sql, args = candle_sql(series, ctx.timescaledb, paged=True)
        rows = list(await ctx.pool.fetch(sql, *args, t, limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    batch = records_batch(rows, columns, series, schema)
    if not more or not rows:
        return batch, None
    last = rows[-1]["ts"]
    if series.kind != "ticks":
        # Bars have unique starts: the next page starts right after the last one.
        step = series.width if series.width is not None else timedelta(microseconds=1)
        return batch, encode_cursor(series, last + step, 0)
    same = sum(1 for r in rows if r["ts"] == last) + (k if last == t else 0)
    return batch, encode_cursor(series, last, same)


# --------------------------------------------------------------------------- answers


def _count_only(series: Series, fmt: Format, rows: int, head: bool) -> Response:
    estimated = int(rows * len(columns_of(series)) * BYTES_PER_VALUE[fmt])
    headers = {
        "X-Row-Count": str(rows),
        "X-Estimated-Bytes": str(estimated),
        "Cache-Control": "no-store",
        **series_headers(series),
    }
    if head:
        return Response(status_code=200, headers=headers, media_type=MEDIA_TYPES[fmt])
    body = {**describe(series), "format": fmt, "rows": rows, "estimated_bytes": estimated}
    return Response(json.dumps(body).encode(), headers=headers, media_type="application/json")


async def answer(
    request: Request,
    ctx: Context,
    series: Series,
    fmt: Format,
    *,
    route: str,
    limit: int,
    cursor: str | None,
    count_only: bool,
) -> Response:
    """The answer to a data query in ``fmt`` (see the module docstring)."""
    head = request.method == "HEAD"
    if count_only or head:
        rows = await count_rows(ctx.pool, series, ctx.timescaledb)
        return _count_only(series, fmt, rows, head)
    headers = series_headers(series)
    etag: str | None = None
    # Taken before the ledger state is read: if anything about the instrument changes from here
    # on, the answer is still given but not remembered for requests to come.
    stamp = ctx.watch.stamp(series.instrument)
    if closed(series):
        state = await ledger_state(ctx.pool, series)
        if state.complete:
            query = f"{series.cache_key()}|{cursor}|{limit if fmt == 'json' else ''}"
            etag = etag_of(query, fmt, state.digest)
    if etag is None:
        headers["Cache-Control"] = "no-store"
    else:
        headers["ETag"] = etag
        headers["Cache-Control"] = "public, max-age=0, must-revalidate"
        if etag_matches(request.headers.get("if-none-match"), etag):
            metrics.CACHE.labels("304").inc()
            return Response(status_code=304, headers=headers)
        cached = ctx.cache.get(etag)
        if cached is not None:
            metrics.CACHE.labels("hit").inc()
            metrics.ROWS.labels(route, fmt).inc(cached.rows)
            response = Response(
                cached.body,
                media_type=cached.media_type,
                headers={**headers, **dict(cached.headers)},
            )
            _remember(ctx, request, series, fmt, route, etag, stamp, response)
            return response
        metrics.CACHE.labels("miss").inc()
    if fmt == "json":
        estimate = await estimate_rows(ctx.pool, series)
        if estimate > ctx.api.json_max_rows:
            raise Problem(
                422,
                "range-too-large",
                "Range too large for json",
                f"the range holds about {estimate} rows, more than json answers "
                f"({ctx.api.json_max_rows}); use a streaming format: {', '.join(STREAMING)} "
                "(format=… or the Accept header), or a shorter range",
                "format",
                formats=list(STREAMING),
            )
    if fmt == "json":
        batch, next_cursor = await page(ctx, series, cursor, limit)
        meta = describe(series)
        meta["limit"] = limit
        if next_cursor is not None:
            meta["next_url"] = str(request.url.include_query_params(cursor=next_cursor))
        body = json_page(meta, batch, next_cursor)
        metrics.ROWS.labels(route, fmt).inc(batch.num_rows)
        response = Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)
        if etag is not None:
            ctx.cache.put(etag, CachedAnswer(body, MEDIA_TYPES[fmt], (), batch.num_rows))
            _remember(ctx, request, series, fmt, route, etag, stamp, response)
        return response
    if cursor is not None:
        raise bad_parameter(
            "cursor", "cursors page json answers; streaming formats hold the whole range"
        )
    schema = schema_of(series, columns_of(series))
    return StreamingResponse(
        _streamed(ctx, series, fmt, schema, route, etag, _Later(request, headers, stamp)),
        media_type=MEDIA_TYPES[fmt],
        headers=headers,
    )


def _remember(
    ctx: Context,
    request: Request,
    series: Series,
    fmt: Format,
    route: str,
    etag: str,
    stamp: Stamp | None,
    response: Response,
) -> None:
    """Let repeats of ``request`` be answered with ``response`` before routing
    (:mod:`tickpipe_api.serve_cached`), unless the instrument changed since ``stamp``."""
    if not ctx.watch.current(series.instrument, stamp):
        return
    lo, hi = series.tick_window()
    known = KnownAnswer(
        etag, tuple(response.raw_headers), route, fmt, series.instrument, dt_to_ms(lo), dt_to_ms(hi)
    )
    ctx.cache.remember(request_key(request.scope), known)


class _Later:
    """What a streamed answer needs to be remembered once its last byte is out."""

    __slots__ = ("headers", "request", "stamp")

    def __init__(self, request: Request, headers: dict[str, str], stamp: Stamp | None) -> None:
        self.request, self.headers, self.stamp = request, headers, stamp


async def _streamed(
    ctx: Context,
    series: Series,
    fmt: Format,
    schema: pa.Schema,
    route: str,
    etag: str | None,
    later: _Later,
) -> AsyncIterator[bytes]:
    """The streamed body; kept for the cache when it turns out small enough and cacheable."""
    keep: list[bytes] | None = [] if etag is not None and ctx.cache.enabled else None
    kept = 0
    rows = [0]

    async def counted() -> AsyncIterator[pa.RecordBatch]:
        async for b in batches_of(ctx, series, schema):
            rows[0] += b.num_rows
            metrics.ROWS.labels(route, fmt).inc(b.num_rows)
            yield b

    async for chunk in stream(fmt, schema, counted()):
        if not chunk:
            continue
        if keep is not None:
            kept += len(chunk)
            if kept > ctx.cache.max_entry_bytes:
                keep = None
            else:
                keep.append(chunk)
        yield chunk
    if keep is not None and etag is not None:
        body = b"".join(keep)
        ctx.cache.put(etag, CachedAnswer(body, MEDIA_TYPES[fmt], (), rows[0]))
        response = Response(body, media_type=MEDIA_TYPES[fmt], headers=later.headers)
        _remember(ctx, later.request, series, fmt, route, etag, later.stamp, response)
