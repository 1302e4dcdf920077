"""Writer throughput against ``psql``'s binary ``\\copy`` of the same rows into the same table.

Run: ``uv run python bench/bench_writer.py [--rows N] [--repeat N] [--txn-rows N]
[--kind ticks|candles]`` with the local stack up (``uv run tickpipe-stack up --infra-only``). It
creates a scratch database on the stack's PostgreSQL (``TICKPIPE_DATABASE_URL``), applies the
migrations, generates ``--rows`` synthetic validated rows — ticks as one-hour
:class:`TickBatch` units of 5–10k ticks, or with ``--kind candles`` source candles as one-day
:class:`CandleBatch` units of 1440 one-minute bid and ask candles (a quarter of the volumes NaN,
written as NULL) — over a few instruments, and times, in the same run, each on freshly
truncated tables (``ticks``/``candles`` and ``ingest_log``):

* **writer**: ``tickpipe_writer.store.write`` in transactions of ``--txn-rows`` rows, as the
  writer service runs it (ledger lock and plan, instrument upsert, binary COPY of rows encoded
  from the numpy columns, ingest-log upsert);
* **encode only**: ``encode_tick_rows`` (``encode_candle_rows``) of every batch, no database
  (the writer's CPU share);
* **psql \\copy** (the baseline): the same binary COPY bytes, written to a file beforehand (their
  encoding excluded), loaded by ``psql -c "\\copy ticks(…) FROM 'file' WITH (FORMAT binary)"`` —
  wall time of the psql process, one COPY;
* **asyncpg copy_to_table**: the same bytes by one ``copy_to_table`` (the client library's
  floor: what the writer pays beyond it is encoding, planning and the ledger).

On TimescaleDB (what the local stack runs) the table is the compressed hypertable with its
compression policy active, and three more figures are measured in the same run:

* **psql \\copy into a plain table**: the same bytes into ``CREATE TABLE … (LIKE ticks INCLUDING
  ALL)``, what the hypertable costs against no hypertable;
* **writer + aggregate refresh, per transaction** (the writer before schema 7): each
  transaction followed by the exact-window refresh of the OHLCV continuous aggregates;
* **writer + pending windows + background refresh**: the writer as the service runs it now,
  each transaction recording its windows in ``ohlcv_pending``, then the background refresh's
  rounds over them (run here after the writes, i.e. coalesced as a busy writer's rounds are;
  both timed);
* **writer, rewrite into compressed chunks**: the compression policy's job is run first (every
  chunk is compressed: the sample is years old), then the same units are written again — the
  replace path of a re-request or a replay into compressed data.

Each figure is the best of N rounds (each round runs every method once, in turn); the ratio
writer / psql into the same hypertable is the
target (≥ 0.8). The scratch database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import common  # noqa: F401  (puts tests/ on sys.path for support)
import numpy as np
import structlog
from support.batches import unit_meta
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import Batch, CandleBatch, TickBatch, rows_of
from tickpipe_writer.aggregates import OhlcvRefresher
from tickpipe_writer.copy_binary import (
    CANDLE_COPY_COLUMNS,
    SIGNATURE,
    TICK_COPY_COLUMNS,
    TRAILER,
    encode_candle_rows,
    encode_tick_rows,
)
from tickpipe_writer.stage import session_settings
from tickpipe_writer.store import write

HOUR_MS = 3_600_000
#: (instrument, price scale, first bid in points): a few instruments of different scales.
INSTRUMENTS = (("EURUSD", 5, 113_500), ("USDJPY", 3, 109_850), ("XAUUSD", 3, 1_925_400))
FIRST_HOUR = datetime(2019, 2, 4, tzinfo=UTC)
PSQL_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")


def synthetic_batches(total: int, seed: int = 7) -> list[TickBatch]:
    """``total`` ticks as validated one-hour batches of 5–10k ticks, instruments round-robin.

    Timestamps increase within each hour, prices are random walks in points, volumes short
    float32 decimals as Dukascopy's are, and about 1 tick in 200 carries a flag bit.
    """
    rng = np.random.default_rng(seed)
    vols = np.array([0.5, 1.0, 1.25, 2.06, 0.01, 3.75], dtype=np.float32).astype(np.float64)
    start = int(FIRST_HOUR.timestamp() * 1000)
    out: list[TickBatch] = []
    left, hour = total, 0
    while left > 0:
        name, scale, first_bid = INSTRUMENTS[hour % len(INSTRUMENTS)]
        n = min(left, int(rng.integers(5_000, 10_001)))
        unit_start = start + (hour // len(INSTRUMENTS)) * HOUR_MS
        ms = np.sort(rng.choice(HOUR_MS, size=n, replace=False)).astype(np.int64)
        bid = first_bid + np.cumsum(rng.integers(-3, 4, size=n))
        ask = bid + rng.integers(0, 6, size=n)
        ticks = Ticks(
            unit_start + ms,
            bid.astype(np.int64),
            ask.astype(np.int64),
            vols[rng.integers(0, len(vols), size=n)],
            vols[rng.integers(0, len(vols), size=n)],
        )
        flags = np.where(rng.random(n) < 0.005, 1 << int(rng.integers(0, 10)), 0).astype(np.uint16)
        unit = Unit("dukascopy-bi5", name, "ticks", unit_start, unit_start + HOUR_MS)
        meta = unit_meta(unit, n, scale, request_id="bench-writer", sha=f"{hour:064x}",
                         fetched_at_ms=unit_start + 2 * HOUR_MS)  # fmt: skip
        out.append(TickBatch(meta, ticks).with_flags(flags, {"gap": 0}, unit_start + 2 * HOUR_MS))
        left -= n
        hour += 1
    return out


DAY_MS = 24 * HOUR_MS


def synthetic_candle_batches(total: int, seed: int = 7) -> list[CandleBatch]:
    """About ``total`` one-minute candles as validated one-day units of 1440 candles, bid and
    ask alternating, instruments round-robin: random-walk prices in points, a quarter of the
    volumes NaN (stored as NULL), about 1 candle in 200 flagged."""
    rng = np.random.default_rng(seed)
    start = int(FIRST_HOUR.timestamp() * 1000)
    out: list[CandleBatch] = []
    unit = 0
    while sum(len(b.candles) for b in out) < total:
        name, scale, first = INSTRUMENTS[(unit // 2) % len(INSTRUMENTS)]
        side = ("bid", "ask")[unit % 2]
        day = start + (unit // (2 * len(INSTRUMENTS))) * DAY_MS
        n = 1440
        o = (first + np.cumsum(rng.integers(-3, 4, size=n))).astype(np.int64)
        c = o + rng.integers(-3, 4, size=n)
        vol = np.where(rng.random(n) < 0.25, np.nan, rng.integers(1, 400, size=n) / 4)
        candles = Candles(
            day + np.arange(n, dtype=np.int64) * 60_000, o, np.maximum(o, c) + 2,
            np.minimum(o, c) - 2, c, vol,
        )  # fmt: skip
        flags = np.where(rng.random(n) < 0.005, 1 << int(rng.integers(0, 10)), 0).astype(np.uint16)
        meta = unit_meta(
            Unit("dukascopy-json", name, f"candles:1m:{side}", day, day + DAY_MS), n, scale,
            request_id="bench-writer", sha=f"{unit:064x}", columns=list(CANDLE_COLUMNS),
            source_code=name, asset_class="fx",
        )  # fmt: skip
        out.append(CandleBatch(meta, candles).with_flags(flags, {}, day + DAY_MS))
        unit += 1
    return out


def transactions(batches: Sequence[Batch], rows: int) -> list[list[Batch]]:
    """Consecutive groups of batches of about ``rows`` rows each (the writer's soft cap)."""
    groups: list[list[Batch]] = [[]]
    filled = 0
    for b in batches:
        if filled >= rows:
            groups.append([])
            filled = 0
        groups[-1].append(b)
        filled += rows_of(b)
    return groups


def encode_rows(batch: Batch) -> bytes:
    """The writer's COPY rows of one batch (ticks or candles)."""
    if isinstance(batch, TickBatch):
        return encode_tick_rows(batch)
    return encode_candle_rows(batch)


def copy_bytes(batches: Sequence[Batch]) -> bytes:
    """One binary COPY stream of every batch (signature, rows, trailer)."""
    return b"".join([SIGNATURE, *(encode_rows(b) for b in batches), TRAILER])


def psql_binary() -> str:
    """The psql executable: on PATH or in a Debian PostgreSQL directory."""
    for d in PSQL_DIRS:
        if Path(d, "psql").exists():
            return str(Path(d, "psql"))
    found = shutil.which("psql")
    if found is None:
        raise SystemExit("psql not found (install postgresql-client)")
    return found


def libpq_env(dsn: str) -> dict[str, str]:
    """The DSN as libpq variables, so the password never shows on a command line."""
    u = urlsplit(dsn)
    env = {
        "PGHOST": u.hostname or "127.0.0.1",
        "PGPORT": str(u.port or 5432),
        "PGDATABASE": u.path.lstrip("/"),
    }
    if u.username:
        env["PGUSER"] = unquote(u.username)
    if u.password:
        env["PGPASSWORD"] = unquote(u.password)
    return env


async def truncate(conn: asyncpg.Connection) -> None:
    await conn.execute("TRUNCATE ticks, candles, ingest_log")


async def count(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT (SELECT count(*) FROM ticks) + count(*) FROM candles"))


Trial = Callable[[], Awaitable[float]]


def timed(conn: asyncpg.Connection, run: Callable[[], Awaitable[None]], expected: int) -> Trial:
    """One repetition of ``run`` on freshly truncated tables: its wall time, after checking
    that it stored ``expected`` rows."""

    async def trial() -> float:
        await truncate(conn)
        t = time.perf_counter()
        await run()
        elapsed = time.perf_counter() - t
        got = await count(conn)
        if got != expected:
            raise SystemExit(f"run stored {got:,} rows, expected {expected:,}")
        return elapsed

    return trial


async def best_of_interleaved(repeat: int, trials: Sequence[tuple[str, Trial]]) -> list[float]:
    """Best time of each trial over ``repeat`` rounds; every round runs each trial once, in
    turn, so that a burst of load elsewhere on the machine hits them all alike."""
    best = [float("inf")] * len(trials)
    for _ in range(repeat):
        for i, (_, trial) in enumerate(trials):
            best[i] = min(best[i], await trial())
    return best


async def bench(args: argparse.Namespace) -> None:
    settings = Settings()
    admin_dsn = settings.database_url.get_secret_value()
    name = f"tp_bench_{uuid.uuid4().hex[:8]}"
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    tmp = Path(tempfile.mkdtemp(prefix="tp_bench_writer_"))
    try:
        server = session_settings(settings)
        conn = await asyncpg.connect(dsn, command_timeout=600, server_settings=server)
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1, server_settings=server)
        try:
            report = await migrate(conn)
            t = time.perf_counter()
            candles = args.kind == "candles"
            batches: list[Batch] = [
                *(synthetic_candle_batches(args.rows) if candles else synthetic_batches(args.rows))
            ]
            gen_s = time.perf_counter() - t
            groups = transactions(batches, args.txn_rows)
            total = sum(rows_of(b) for b in batches)
            payload = copy_bytes(batches)
            table, columns = ("candles", CANDLE_COPY_COLUMNS) if candles else (
                "ticks", TICK_COPY_COLUMNS)  # fmt: skip
            copy_file = tmp / f"{table}.copy"
            copy_file.write_bytes(payload)
            variant = (
                "TimescaleDB compressed hypertable, compression policy active"
                if report.timescaledb
                else "plain PostgreSQL"
            )
            units = "day units of 1440 1m candles" if candles else "hour units of 5–10k ticks"
            print(
                f"{total:,} {table} in {len(batches):,} {units}, "
                f"{len(INSTRUMENTS)} instruments (generated in {gen_s:.1f} s); "
                f"{len(groups)} writer transactions of ~{args.txn_rows:,} rows; "
                f"COPY stream {len(payload) / 1e6:,.1f} MB; {variant}; "
                f"best of {args.repeat}\n"
            )

            async def writer() -> None:
                for group in groups:
                    await write(conn, group)

            async def raw_asyncpg() -> None:
                await conn.copy_to_table(
                    table, source=memoryview(payload), columns=list(columns), format="binary"
                )

            psql = psql_binary()
            cols = ", ".join(columns)
            psql_cmd = [
                psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                f"\\copy {table}({cols}) FROM '{copy_file}' WITH (FORMAT binary)",
            ]  # fmt: skip
            psql_env = {**os.environ, **libpq_env(dsn)}

            async def psql_copy() -> None:
                proc = await asyncio.create_subprocess_exec(*psql_cmd, env=psql_env)
                if await proc.wait() != 0:
                    raise SystemExit(f"psql exited with {proc.returncode}")

            def encode_only() -> float:
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    for b in batches:
                        encode_rows(b)
                    times.append(time.perf_counter() - t)
                return min(times)

            async def psql_copy_plain() -> None:
                plain_cmd = psql_cmd[-1].replace(f"\\copy {table}(", f"\\copy {table}_plain(")
                proc = await asyncio.create_subprocess_exec(*psql_cmd[:-1], plain_cmd, env=psql_env)
                if await proc.wait() != 0:
                    raise SystemExit(f"psql exited with {proc.returncode}")

            refresher = await OhlcvRefresher.detect(conn) if not candles else None

            async def writer_refreshing() -> None:
                for group in groups:
                    work = await write(conn, group)
                    if refresher is not None:
                        await refresher.refresh(conn, work)

            async def writer_pending() -> None:
                for group in groups:
                    await write(conn, group, record_windows=refresher is not None)
                if refresher is not None:
                    while await refresher.drain(pool):
                        pass

            async def compress_then_rewrite() -> float:
                """Seconds of the writer rewriting every unit into compressed chunks."""
                await truncate(conn)
                await writer()
                job = await conn.fetchval(
                    "SELECT job_id FROM timescaledb_information.jobs "
                    "WHERE proc_name = 'policy_compression' AND hypertable_name = $1",
                    table,
                )
                await conn.execute(f"CALL run_job({job})")
                t = time.perf_counter()
                await writer()
                elapsed = time.perf_counter() - t
                if await count(conn) != total:
                    raise SystemExit("rewrite into compressed chunks changed the row count")
                return elapsed

            trials: list[tuple[str, Trial]] = [
                (f"psql \\copy (FORMAT binary) into {table}", timed(conn, psql_copy, total)),
                ("asyncpg copy_to_table, 1 COPY", timed(conn, raw_asyncpg, total)),
                (f"writer store.write, {len(groups)} txns", timed(conn, writer, total)),
            ]
            if report.timescaledb:
                await conn.execute(f"CREATE TABLE {table}_plain (LIKE {table} INCLUDING ALL)")

                async def plain_trial() -> float:
                    await conn.execute(f"TRUNCATE {table}_plain")
                    t = time.perf_counter()
                    await psql_copy_plain()
                    elapsed = time.perf_counter() - t
                    got = await conn.fetchval(f"SELECT count(*) FROM {table}_plain")
                    if got != total:
                        raise SystemExit("psql copy into the plain table lost rows")
                    return elapsed

                trials.append(("psql \\copy into a plain table (no hypertable)", plain_trial))
                if refresher is not None:
                    trials.append(
                        ("writer + aggregate refresh per transaction",
                         timed(conn, writer_refreshing, total))
                    )  # fmt: skip
                    trials.append(
                        ("writer + pending windows + background refresh",
                         timed(conn, writer_pending, total))
                    )  # fmt: skip
                trials.append(("writer, rewrite into compressed chunks", compress_then_rewrite))
            best = await best_of_interleaved(args.repeat, trials)
            results = [(label, secs) for (label, _), secs in zip(trials, best, strict=True)]
            encoder = "encode_candle_rows" if candles else "encode_tick_rows"
            results.append((f"{encoder} only (no database)", encode_only()))
        finally:
            await pool.close()
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        shutil.rmtree(tmp, ignore_errors=True)

    base = results[0][1]
    print(f"{'method':48} {'seconds':>8} {'Mrows/s':>8} {'vs psql':>8}")
    for label, secs in results:
        print(f"{label:48} {secs:>8.3f} {total / secs / 1e6:>8.3f} {base / secs:>7.2f}x")
    ratio = base / results[2][1]
    into = "the compressed hypertable" if report.timescaledb else "the same table"
    print(f"\nwriter / psql \\copy into {into} = {ratio:.2f} (target ≥ 0.80)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--txn-rows", type=int, default=100_000, help="rows per writer transaction")
    ap.add_argument("--kind", choices=("ticks", "candles"), default="ticks", help="rows to write")
    # The writer's per-commit log lines would drown the figures: warnings only.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    asyncio.run(bench(ap.parse_args()))


if __name__ == "__main__":
    main()
