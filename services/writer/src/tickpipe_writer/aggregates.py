"""Refresh the OHLCV continuous aggregates for exactly what the writer wrote, off the write path.

On TimescaleDB, ``ohlcv_1m`` … ``ohlcv_1d`` are continuous aggregates (migrations 0002, 0006).
Their refresh policies only look at invalidated buckets on a schedule, and real-time aggregation
only covers buckets past the watermark: a historical backfill stays invisible in the candles
until its window is refreshed. So the writer refreshes the windows it touched — the unit windows
it replaced and the span of the ticks it inserted — aligned outwards to each timeframe's
buckets, merged, finest first (each level reads the one below).

That refresh used to follow every transaction and took most of the writer's time. Now each
transaction records its windows (aligned to minutes) in ``ohlcv_pending`` — in the same
transaction as the ticks, so they are durable exactly when the ticks are — and
:meth:`OhlcvRefresher.run`, a background task of the writer, refreshes every pending window
once the writer has been idle for ``TICKPIPE_WRITER_OHLCV_REFRESH_SECONDS`` (and at least every
ten such periods while it keeps writing), coalesced across transactions, then deletes the rows
it refreshed. A crash leaves them in the table: the next writer refreshes them after its start.
Until then the aggregates of a backfilled window below the watermark lag (by at most ten
periods plus a refresh); :func:`pending_windows` says whether any is still pending.

``CALL refresh_continuous_aggregate`` cannot run in a transaction block: it runs on its own. A
failure is logged and counted and never fails the records — the data is committed, the windows
stay pending and are retried at the next round. On plain PostgreSQL ``ohlcv_*`` are views over
``ticks``: nothing to refresh, :meth:`OhlcvRefresher.detect` returns ``None``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

import asyncpg
import structlog
from prometheus_client import Counter, Gauge, Histogram
from tickpipe_shared.db.ohlcv import TIMEFRAMES, view_name
from tickpipe_shared.units import ms_to_dt
from tickpipe_shared.wire.batch import TickBatch

from tickpipe_writer.plan import Plan

log = structlog.get_logger()

REFRESH_SECONDS = Histogram(
    "tickpipe_writer_ohlcv_refresh_seconds",
    "Duration of one background round refreshing the pending OHLCV windows",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
REFRESH_FAILURES = Counter(
    "tickpipe_writer_ohlcv_refresh_failures_total",
    "Background OHLCV refresh rounds that failed (the data is stored; the windows stay pending)",
)
PENDING_WINDOWS = Gauge(
    "tickpipe_writer_ohlcv_pending_windows",
    "Pending OHLCV refresh windows the last background round found (0: aggregates current)",
)

#: Advisory lock of the background refresh: one writer replica drains at a time.
_DRAIN_LOCK_ID = 0x6F686C63  # "ohlc"
#: Pending rows read per round at most (a backlog is drained over a few rounds).
DRAIN_ROWS = 10_000
#: While the writer keeps writing, a refresh round runs at least every BUSY_ROUNDS periods.
BUSY_ROUNDS = 10

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
    """Refreshes the continuous aggregates over written windows: pending ones in the background
    (:meth:`run`), or those of one :class:`Plan` at once (:meth:`refresh`)."""

    def __init__(self, views: Sequence[str]) -> None:
        self.views = frozenset(views)

    @classmethod
    async def detect(cls, conn: asyncpg.Connection) -> OhlcvRefresher | None:
        """A refresher when ``ohlcv_*`` are continuous aggregates, else ``None``. Logs which."""
        views = await continuous_aggregates(conn)
        if not views:
            log.info("ohlcv: plain PostgreSQL views over ticks, nothing to refresh")
            return None
        log.info("ohlcv: TimescaleDB continuous aggregates, pending windows refreshed in the "
                 "background", views=views)  # fmt: skip
        return cls(views)

    async def refresh(self, conn: asyncpg.Connection, work: Plan) -> int:
        """Refresh, on ``conn`` (outside a transaction block), every aggregate window ``work``
        wrote, finest level first, at once (tests and tools; the writer service records them
        with :func:`record_pending` and refreshes them in :meth:`run`); returns the number of
        refresh calls. Raises what the database raises."""
        return await self.refresh_windows(conn, written_windows(work))

    async def refresh_windows(self, conn: asyncpg.Connection, windows: Sequence[Window]) -> int:
        """Refresh, on ``conn`` (outside a transaction block), every aggregate over
        ``windows``, finest level first; returns the number of refresh calls. Raises what the
        database raises."""
        steps = [(v, w) for v, w in refresh_plan(windows) if v in self.views]
        for view, window in steps:
            await _refresh(conn, refresh_sql(view, window))
        return len(steps)

    async def drain(self, pool: asyncpg.Pool) -> int:
        """One background round: refresh every window pending in ``ohlcv_pending`` (up to
        :data:`DRAIN_ROWS` rows, coalesced) and delete the rows refreshed; returns how many.
        Skips the round (returns 0) while another writer holds the drain lock. Raises what the
        database raises (:meth:`run` is the never-raising loop)."""
        async with pool.acquire() as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _DRAIN_LOCK_ID):
                return 0
            try:
                rows = await conn.fetch(
                    "SELECT id, window_start, window_end FROM ohlcv_pending ORDER BY id LIMIT $1",
                    DRAIN_ROWS,
                )
                PENDING_WINDOWS.set(len(rows))
                if not rows:
                    return 0
                started = time.monotonic()
                windows = [(dt_ms(r["window_start"]), dt_ms(r["window_end"])) for r in rows]
                calls = await self.refresh_windows(conn, windows)
                await conn.execute(
                    "DELETE FROM ohlcv_pending WHERE id = ANY($1::bigint[])",
                    [r["id"] for r in rows],
                )
                REFRESH_SECONDS.observe(time.monotonic() - started)
                log.debug("ohlcv refreshed", windows=len(rows), calls=calls)
                return len(rows)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _DRAIN_LOCK_ID)

    async def run(
        self,
        pool: asyncpg.Pool,
        interval_s: float,
        idle_s: Callable[[], float] = lambda: float("inf"),
    ) -> None:
        """Drain the pending windows until cancelled: a round once the writer has been idle
        for ``interval_s`` (``idle_s()``: seconds since its last write), and during a sustained
        backfill at least every :data:`BUSY_ROUNDS` × ``interval_s`` — so the refresh uses the
        database while the writes pause, and coalesces more windows while they do not; at once
        again while a backlog remains. Never raises otherwise: a failed round is logged and
        counted in ``tickpipe_writer_ohlcv_refresh_failures_total``, its windows stay pending
        and the next round retries them."""
        last_round = time.monotonic()
        while True:
            await asyncio.sleep(interval_s)
            overdue = time.monotonic() - last_round >= BUSY_ROUNDS * interval_s
            if idle_s() < interval_s and not overdue:
                continue
            last_round = time.monotonic()
            try:
                drained = await self.drain(pool)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the ticks are committed whatever happens here
                REFRESH_FAILURES.inc()
                log.warning(
                    "ohlcv refresh failed; its windows stay pending and are retried",
                    error=f"{type(e).__name__}: {e}",
                )
                drained = 0
            while drained >= DRAIN_ROWS:  # a backlog: the next rows at once
                try:
                    drained = await self.drain(pool)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    REFRESH_FAILURES.inc()
                    break


def dt_ms(value: datetime) -> int:
    """A timezone-aware datetime as ms since the Unix epoch."""
    return int(value.timestamp() * 1000)


async def record_pending(conn: asyncpg.Connection, work: Plan) -> int:
    """Record in ``ohlcv_pending``, on ``conn`` (inside the write's transaction), the windows
    ``work`` changed, aligned to whole minutes and merged; returns how many rows."""
    windows = align(written_windows(work), LEVELS[0][1])
    if windows:
        await conn.execute(
            "INSERT INTO ohlcv_pending (window_start, window_end) "
            "SELECT * FROM unnest($1::timestamptz[], $2::timestamptz[])",
            [ms_to_dt(s) for s, _ in windows],
            [ms_to_dt(e) for _, e in windows],
        )
    return len(windows)


async def pending_windows(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """Windows still waiting for their refresh (0: the aggregates reflect every committed
    write). Raises :class:`asyncpg.UndefinedTableError` on a schema older than version 7."""
    return int(await conn.fetchval("SELECT count(*) FROM ohlcv_pending"))
