"""Refresh the OHLCV continuous aggregates for exactly what a transaction wrote.

On TimescaleDB, ``ohlcv_1m`` … ``ohlcv_1d`` are continuous aggregates (migration 0002). Their
refresh policies only look at invalidated buckets on a schedule, and real-time aggregation only
covers buckets past the watermark: a historical backfill stays invisible in the candles until
its window is refreshed. So after each committed transaction the writer refreshes the windows
it touched — the unit windows it replaced and the span of the ticks it inserted — aligned
outwards to each timeframe's buckets, merged, finest first (each level reads the one below).

``CALL refresh_continuous_aggregate`` cannot run in a transaction block: it runs after the
commit, on its own. A failure is logged and counted and never fails the records — the data is
committed, and the refresh policies catch up. On plain PostgreSQL ``ohlcv_*`` are views over
``ticks``: nothing to refresh, :meth:`OhlcvRefresher.detect` returns ``None``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import asyncpg
import structlog
from prometheus_client import Counter, Histogram
from tickpipe_shared.db.ohlcv import TIMEFRAMES, view_name
from tickpipe_shared.wire.batch import TickBatch

from tickpipe_writer.plan import Plan

log = structlog.get_logger()

REFRESH_SECONDS = Histogram(
    "tickpipe_writer_ohlcv_refresh_seconds",
    "Duration of the OHLCV continuous-aggregate refresh after one transaction",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REFRESH_FAILURES = Counter(
    "tickpipe_writer_ohlcv_refresh_failures_total",
    "OHLCV refreshes after a commit that failed (the data is stored; the policies catch up)",
)

Window = tuple[int, int]
"""``[start, end)`` in ms since the Unix epoch (UTC)."""

#: Timeframes finest first, with their bucket width in ms.
LEVELS: tuple[tuple[str, int], ...] = tuple(
    (tf, int(width.total_seconds() * 1000)) for tf, width in TIMEFRAMES.items()
)


def written_windows(work: Plan) -> list[Window]:
    """The time windows of ``ticks`` a transaction changed: each replaced tick unit's window
    and, per inserted tick batch, ``[first tick, last tick + 1 ms)`` (batches without ticks
    change nothing). Candle units are left out: the aggregates are computed from ticks only."""
    out: list[Window] = [(w.start_ms, w.end_ms) for w in work.deletes if w.kind == "ticks"]
    for batch in work.inserts:
        if not isinstance(batch, TickBatch):
            continue
        ts = batch.ticks.ts_ms
        if len(ts):
            out.append((int(ts.min()), int(ts.max()) + 1))
    return out


def align(windows: Iterable[Window], width_ms: int) -> list[Window]:
    """``windows`` widened to whole buckets of ``width_ms`` (floor start, ceil end; buckets
    start at multiples of the width from the Unix epoch, which for 1m … 1d are TimescaleDB's
    ``time_bucket`` boundaries), sorted, overlapping and touching ones merged. Empty windows
    are dropped."""
    aligned = sorted((s - s % width_ms, e + (-e) % width_ms) for s, e in windows if e > s)
    merged: list[Window] = []
    for s, e in aligned:
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def refresh_plan(windows: Iterable[Window]) -> list[tuple[str, Window]]:
    """``(view, window)`` to refresh, in order: every window of ``ohlcv_1m``, then ``ohlcv_5m``,
    ``ohlcv_1h``, ``ohlcv_1d`` (hierarchical: each level is computed from the one below)."""
    base = list(windows)
    return [(view_name(tf), w) for tf, width in LEVELS for w in align(base, width)]


def _literal(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def refresh_sql(view: str, window: Window) -> str:
    """The ``CALL refresh_continuous_aggregate`` text for one window (literal values: it runs
    with the simple query protocol, outside any transaction block)."""
    if view not in {view_name(tf) for tf in TIMEFRAMES}:
        raise ValueError(f"not an OHLCV aggregate: {view!r}")
    return (
        f"CALL refresh_continuous_aggregate('{view}', "
        f"'{_literal(window[0])}'::timestamptz, '{_literal(window[1])}'::timestamptz)"
    )


async def continuous_aggregates(conn: asyncpg.Connection) -> list[str]:
    """The ``ohlcv_*`` relations that are TimescaleDB continuous aggregates (none on plain
    PostgreSQL, where they are views)."""
    if not await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"):
        return []
    rows = await conn.fetch(
        """SELECT view_name FROM timescaledb_information.continuous_aggregates
           WHERE view_schema = current_schema() AND view_name = ANY($1::text[])""",
        [view_name(tf) for tf in TIMEFRAMES],
    )
    return sorted(r["view_name"] for r in rows)


#: Waits before retrying a refresh that met a concurrent one (a refresh policy's run, or another
#: writer's refresh of an overlapping window): TimescaleDB refuses overlapping refreshes with
#: LockNotAvailableError instead of queueing them, and they last a moment.
CONCURRENT_REFRESH_WAITS_S: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)


async def _refresh(conn: asyncpg.Connection, sql: str) -> None:
    """Run one refresh call, retrying while a concurrent refresh holds its window. Raises the
    last :class:`asyncpg.LockNotAvailableError` when it outlasts the waits."""
    for wait_s in (*CONCURRENT_REFRESH_WAITS_S, None):
        try:
            await conn.execute(sql)
            return
        except asyncpg.LockNotAvailableError:
            if wait_s is None:
                raise
            await asyncio.sleep(wait_s)


class OhlcvRefresher:
    """Refreshes the continuous aggregates for the windows of each committed :class:`Plan`."""

    def __init__(self, views: Sequence[str]) -> None:
        self.views = frozenset(views)

    @classmethod
    async def detect(cls, conn: asyncpg.Connection) -> OhlcvRefresher | None:
        """A refresher when ``ohlcv_*`` are continuous aggregates, else ``None``. Logs which."""
        views = await continuous_aggregates(conn)
        if not views:
            log.info("ohlcv: plain PostgreSQL views over ticks, nothing to refresh")
            return None
        log.info("ohlcv: TimescaleDB continuous aggregates, refreshed after each commit",
                 views=views)  # fmt: skip
        return cls(views)

    async def refresh(self, conn: asyncpg.Connection, work: Plan) -> int:
        """Refresh, on ``conn`` (outside a transaction block), every aggregate window ``work``
        wrote, finest level first; returns the number of refresh calls. Raises what the
        database raises (:meth:`after_commit` is the service's never-raising form)."""
        steps = [(v, w) for v, w in refresh_plan(written_windows(work)) if v in self.views]
        for view, window in steps:
            await _refresh(conn, refresh_sql(view, window))
        return len(steps)

    async def after_commit(self, pool: asyncpg.Pool, work: Plan) -> None:
        """Refresh what ``work`` wrote. Never raises (except cancellation): a failure is logged,
        counted in ``tickpipe_writer_ohlcv_refresh_failures_total`` and the remaining, coarser
        levels are skipped — the refresh policies catch up."""
        steps = [(v, w) for v, w in refresh_plan(written_windows(work)) if v in self.views]
        if not steps:
            return
        started = time.monotonic()
        view, window = steps[0]
        try:
            async with pool.acquire() as conn:
                for view, window in steps:
                    await _refresh(conn, refresh_sql(view, window))
        except Exception as e:  # the data is committed whatever happens here
            REFRESH_FAILURES.inc()
            log.warning(
                "ohlcv refresh failed; the refresh policies will catch up",
                view=view,
                start=_literal(window[0]),
                end=_literal(window[1]),
                error=f"{type(e).__name__}: {e}",
            )
            return
        REFRESH_SECONDS.observe(time.monotonic() - started)
        log.debug("ohlcv refreshed", calls=len(steps))
