"""Storage report on TimescaleDB: bytes per tick on disk before and after native compression,
the compression ratio, and candle query times from the continuous aggregates against the same
candles computed from raw ticks.

Run: ``uv run python bench/bench_storage.py [--ticks N] [--repeat N]`` with the local stack up
(``uv run tickpipe-stack up --infra-only``; TimescaleDB built by ``bin/bootstrap``). Two data
sets, each in a scratch database of its own (dropped at the end):

* **sample**: the recorded EURUSD ticks of ``../shared/data/dukascopy`` (49 ``.bi5`` hours and
  the JSON API hour, 271 521 ticks), decoded by the decoder (skipped when ``../shared`` is absent);
* **synthetic**: ``--ticks`` (default 10 000 000) ticks as hour units of 5–10k ticks over three
  instruments (``bench_writer.synthetic_batches``: random-walk prices in points, short decimal
  volumes, a flag bit on 1 tick in 200).

For each: rows are loaded with the writer's binary COPY, the aggregates refreshed, then the
size of ``ticks`` (heap + indexes + TOAST, ``hypertable_detailed_size``) is read, every chunk is
compressed (the compression policy's job; the data is older than its 7 days) and the size read
again. Query times are the best of ``--repeat`` runs of a 1-day and a 1-month range of 1h
candles of one instrument: from ``ohlcv_1h`` (materialized) and computed with ``time_bucket``
from the compressed ``ticks``. The target is a compression ratio of at least 10x on ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import common  # noqa: F401  (puts tests/ on sys.path: the support builds the sample's batches)
import structlog
from bench_writer import synthetic_batches
from support.golden_db import golden_tick_hours, sample_tick_batches
from support.shared_data import locate_shared_dir
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import candles_sql
from tickpipe_shared.wire.batch import TickBatch
from tickpipe_writer.copy_binary import SIGNATURE, TICK_COPY_COLUMNS, TRAILER, encode_tick_rows
from tickpipe_writer.store import write

#: 1h candles computed from raw ticks, the query the aggregate saves: ``$1`` instrument,
#: ``$2``/``$3`` the range.
RAW_1H = """
SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, first(bid_points, ts), max(bid_points),
       min(bid_points), last(bid_points, ts), first(ask_points, ts), max(ask_points),
       min(ask_points), last(ask_points, ts), count(*),
       sum(bid_volume), sum(ask_volume)
FROM ticks WHERE instrument = $1 AND ts >= $2 AND ts < $3
GROUP BY 1 ORDER BY 1
"""


async def load(conn: asyncpg.Connection, batches: Sequence[TickBatch], chunk: int = 200) -> None:
    """Rows by binary COPY (as the writer sends them) and one ledger transaction for a few
    units, so that the ingest log and instruments exist too."""
    await write(conn, batches[:1])
    rest = batches[1:]
    for i in range(0, len(rest), chunk):
        body = b"".join(encode_tick_rows(b) for b in rest[i : i + chunk])
        await conn.copy_to_table(
            "ticks",
            source=memoryview(SIGNATURE + body + TRAILER),
            columns=list(TICK_COPY_COLUMNS),
            format="binary",
        )


async def table_bytes(conn: asyncpg.Connection) -> int:
    sql = "SELECT sum(total_bytes) FROM hypertable_detailed_size('ticks')"
    return int(await conn.fetchval(sql))


async def best_of(repeat: int, conn: asyncpg.Connection, sql: str, *args: object) -> float:
    times = []
    rows = 0
    for _ in range(repeat):
        t = time.perf_counter()
        rows = len(await conn.fetch(sql, *args))
        times.append(time.perf_counter() - t)
    if rows == 0:
        raise SystemExit(f"query returned no rows: {sql[:60]}…")
    return min(times)


async def report(settings: Settings, label: str, batches: Sequence[TickBatch], repeat: int) -> None:
    admin_dsn = settings.database_url.get_secret_value()
    name = f"tp_bench_storage_{uuid.uuid4().hex[:8]}"
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(dsn, command_timeout=3600)
        try:
            if not (await migrate(conn, "on")).timescaledb:
                raise SystemExit("TimescaleDB is not available: run bin/bootstrap")
            # The policy's first run starts at once and would compress chunks while they load
            # (the data is older than 7 days), spoiling "before": it runs below, on purpose.
            job = await conn.fetchval(
                "SELECT job_id FROM timescaledb_information.jobs "
                "WHERE proc_name = 'policy_compression' AND hypertable_name = 'ticks'"
            )
            await conn.execute("SELECT alter_job($1, scheduled => false)", job)
            t = time.perf_counter()
            await load(conn, batches)
            load_s = time.perf_counter() - t
            rows = int(await conn.fetchval("SELECT count(*) FROM ticks"))
            lo, hi = await conn.fetchrow("SELECT min(ts), max(ts) FROM ticks")
            for view in ("ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d"):
                await conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
            before = await table_bytes(conn)
            t = time.perf_counter()
            await conn.execute(f"CALL run_job({job})")
            compress_s = time.perf_counter() - t
            after = await table_bytes(conn)
            chunks = await conn.fetchrow(
                "SELECT count(*) AS n, count(*) FILTER (WHERE is_compressed) AS c "
                "FROM timescaledb_information.chunks WHERE hypertable_name = 'ticks'"
            )
            instrument = await conn.fetchval(
                "SELECT instrument FROM ticks GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"
            )
            day_start = datetime.combine(lo.date(), datetime.min.time(), lo.tzinfo)
            ranges = {"1 day": timedelta(days=1), "1 month": timedelta(days=30)}
            print(f"\n== {label}: {rows:,} ticks, {lo:%Y-%m-%d} → {hi:%Y-%m-%d}, "
                  f"{chunks['n']} chunks ({chunks['c']} compressed); loaded in {load_s:.1f} s, "
                  f"compressed in {compress_s:.1f} s")  # fmt: skip
            print(f"{'ticks on disk':28} {'bytes':>14} {'bytes/tick':>11}")
            print(f"{'before compression':28} {before:>14,} {before / rows:>11.1f}")
            print(f"{'after compression':28} {after:>14,} {after / rows:>11.1f}")
            print(f"compression ratio {before / after:.1f}x (target ≥ 10x)")
            print(f"\n1h candles of {instrument}, best of {repeat}:")
            print(f"{'range':10} {'aggregate ms':>13} {'raw ticks ms':>13} {'speed-up':>9}")
            for rng, width in ranges.items():
                end = min(day_start + width, hi + timedelta(hours=1))
                agg = await best_of(repeat, conn, candles_sql("1h"), instrument, day_start, end)
                raw = await best_of(repeat, conn, RAW_1H, instrument, day_start, end)
                print(f"{rng:10} {agg * 1000:>13.2f} {raw * 1000:>13.2f} {raw / agg:>8.1f}x")
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def bench(args: argparse.Namespace) -> None:
    settings = Settings()
    shared = locate_shared_dir()
    if shared is None:
        print("== sample: skipped (../shared with the recorded payloads is absent)")
    else:
        base = shared / "data" / "dukascopy"
        batches = sample_tick_batches(base, golden_tick_hours(base), max_batch_bytes=1 << 30)
        await report(settings, "recorded sample (EURUSD)", batches, args.repeat)
    t = time.perf_counter()
    synthetic = synthetic_batches(args.ticks)
    print(f"\n(generated {args.ticks:,} synthetic ticks in {time.perf_counter() - t:.1f} s)")
    await report(settings, "synthetic", synthetic, args.repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=float, default=10_000_000, help="synthetic ticks (e.g. 1e6)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    args.ticks = int(args.ticks)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
