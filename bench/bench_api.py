"""Market Data API throughput and latency against the database read directly, in the same run.

Run: ``uv run python bench/bench_api.py [--rows 1000000] [--repeat 3] [--clients 50]
[--requests 2000]`` with the local stack's PostgreSQL up (``uv run tickpipe-stack up
--infra-only``; ``TICKPIPE_DATABASE_URL`` for another server). It creates a scratch database,
stores ``--rows`` synthetic ticks of one UTC day (2020-01-07) with a complete ledger (so the
range is closed and fully stored: cacheable), starts ``tickpipe-api`` processes on free ports
and measures:

* **streaming**: rows/s of the whole day through ``format=arrow``, ``csv`` and ``ndjson``
  (client reads and discards the bytes), next to ``psql -c "COPY (SELECT …) TO STDOUT"`` of the
  same rows (``> /dev/null``), best of ``--repeat``. Target: Arrow ≥ 0.5× COPY.
* **candles**: p50/p99 latency and requests/s of the 1-day 1m-candle json query
  (``/v1/candles?timeframe=1m&limit=1440``) under ``--clients`` concurrent clients: cached (the
  answer cache on, the same closed range: every request after the first is a hit) and
  uncached (``TICKPIPE_API_CACHE_MAX_ENTRIES=0``), next to the same SQL run directly on an
  asyncpg pool of ``--clients`` connections. Target: cached p99 < 10 ms.

The scratch database is dropped at the end. Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from tickpipe_api.queries import candle_sql
from tickpipe_api.series import Series
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate

DAY = datetime(2020, 1, 7, tzinfo=UTC)
INSTRUMENT = "BENCH"
PARAMS = {"instrument": INSTRUMENT, "start": "2020-01-07T00:00:00Z", "end": "2020-01-08T00:00:00Z"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _seed(dsn: str, rows: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO instruments (instrument, price_scale) VALUES ($1, 5)", INSTRUMENT
        )
        step_us = int(86_400_000_000 / rows)
        await conn.execute(
            """INSERT INTO ticks (instrument, ts, bid_points, ask_points, bid_volume, ask_volume,
                                  flags)
               SELECT $1, $2::timestamptz + i * ($3 * INTERVAL '1 microsecond'),
                      110000 + (i * 7919) % 2000, 110004 + (i * 7919) % 2000,
                      CASE WHEN i % 7 = 0 THEN NULL ELSE 1.25 END, 0.75, 0
               FROM generate_series(0::bigint, $4 - 1) AS i""",
            INSTRUMENT,
            DAY,
            step_us,
            rows,
        )
        per_hour = rows // 24
        for h in range(24):
            start = DAY + timedelta(hours=h)
            await conn.execute(
                """INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state,
                       rows, part_count, parts_written, payload_sha256, decoder_version,
                       fetched_at, decoded_at)
                   VALUES ($1, 'ticks', $2, $3, 'dukascopy-bi5', 'stored', $4, 1, 1, $5,
                           'bench', now(), now())""",
                INSTRUMENT,
                start,
                start + timedelta(hours=1),
                per_hour,
                f"{h:064x}",
            )
        await conn.execute("ANALYZE ticks")
    finally:
        await conn.close()


@contextmanager
def _api(dsn: str, log_dir: Path, env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    full = {
        **os.environ,
        "TICKPIPE_DATABASE_URL": dsn,
        "TICKPIPE_API_PORT": str(port),
        "TICKPIPE_API_HOST": "127.0.0.1",
        "TICKPIPE_METRICS_PORT": str(_free_port()),
        "TICKPIPE_API_AUTH": "off",
        "TICKPIPE_API_POOL_MAX": "20",
        "TICKPIPE_LOG_LEVEL": "WARNING",  # no access log lines: they would be measured too
        **env,
    }
    exe = Path(sys.executable).parent / "tickpipe-api"
    with (log_dir / f"api-{port}.log").open("wb") as out:
        proc = subprocess.Popen([str(exe)], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("tickpipe-api did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def _best(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def _stream(url: str, fmt: str) -> None:
    with httpx.stream("GET", f"{url}/v1/ticks", params={**PARAMS, "format": fmt}, timeout=300) as r:
        r.raise_for_status()
        for _ in r.iter_raw(1 << 20):
            pass


def _psql_copy(dsn: str) -> None:
    sql = (
        "COPY (SELECT ts, bid_points, ask_points, bid_volume, ask_volume, flags FROM ticks "
        f"WHERE instrument = '{INSTRUMENT}' AND ts >= '{PARAMS['start']}' "
        f"AND ts < '{PARAMS['end']}' ORDER BY ts) TO STDOUT"
    )
    with open(os.devnull, "wb") as null:
        subprocess.run(["psql", dsn, "-X", "-q", "-c", sql], stdout=null, check=True)


async def _load(
    clients: int, requests: int, one: Callable[[], Awaitable[None]]
) -> tuple[float, float, float]:
    """p50 ms, p99 ms and requests/s of ``requests`` calls of ``one`` by ``clients`` workers."""
    latencies: list[float] = []
    left = [requests]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            t = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    return q[49] * 1000, q[98] * 1000, len(latencies) / wall


async def _http_load(url: str, clients: int, requests: int) -> tuple[float, float, float]:
    params = {**PARAMS, "timeframe": "1m", "limit": "1440"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        first = await http.get("/v1/candles", params=params)
        first.raise_for_status()
        assert len(first.json()["data"]) == 1440, "expected 1440 one-minute candles"

        async def one() -> None:
            r = await http.get("/v1/candles", params=params)
            r.raise_for_status()
            await r.aread()

        return await _load(clients, requests, one)


async def _direct_load(dsn: str, clients: int, requests: int) -> tuple[float, float, float]:
    series = Series("candles", INSTRUMENT, DAY, DAY + timedelta(days=1), 5, "float",
                    timeframe="1m", side="bid", width=timedelta(minutes=1))  # fmt: skip
    sql, args = candle_sql(series, timescaledb=False, paged=False)
    async with asyncpg.create_pool(dsn, min_size=clients, max_size=clients) as pool:

        async def one() -> None:
            rows = await pool.fetch(sql, *args)
            assert len(rows) == 1440

        return await _load(clients, requests, one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--uncached-requests", type=int, default=300)
    args = ap.parse_args()

    admin_dsn = Settings().database_url.get_secret_value()
    name = f"tp_bench_api_{uuid.uuid4().hex[:8]}"
    dsn = admin_dsn.rsplit("/", 1)[0] + "/" + name

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        t = time.perf_counter()
        asyncio.run(_seed(dsn, args.rows))
        print(f"seeded {args.rows:,} ticks of {INSTRUMENT} on {DAY:%Y-%m-%d} "
              f"({time.perf_counter() - t:.1f} s)")  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp, _api(dsn, Path(tmp), {}) as url:
            copy_s = _best(args.repeat, lambda: _psql_copy(dsn))
            copy_rate = args.rows / copy_s
            print(f"\nstreaming {args.rows:,} ticks (best of {args.repeat})")
            print(f"  {'psql COPY TO STDOUT':<22} {copy_rate:>12,.0f} rows/s  (baseline)")
            for fmt in ("arrow", "csv", "ndjson"):
                s = _best(args.repeat, lambda fmt=fmt: _stream(url, fmt))  # type: ignore[misc]
                rate = args.rows / s
                print(f"  {'api ' + fmt:<22} {rate:>12,.0f} rows/s  {rate / copy_rate:5.2f}× COPY")
            print(f"\n1-day 1m candles (1440 rows, json), {args.clients} concurrent clients")
            p50, p99, rps = asyncio.run(_http_load(url, args.clients, args.requests))
            print(f"  {'api cached':<22} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {rps:8.0f} req/s")
        with (
            tempfile.TemporaryDirectory() as tmp,
            _api(dsn, Path(tmp), {"TICKPIPE_API_CACHE_MAX_ENTRIES": "0"}) as url,
        ):
            p50, p99, rps = asyncio.run(_http_load(url, args.clients, args.uncached_requests))
            print(f"  {'api uncached':<22} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {rps:8.0f} req/s")
        p50, p99, rps = asyncio.run(_direct_load(dsn, args.clients, args.uncached_requests))
        print(f"  {'asyncpg direct':<22} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  {rps:8.0f} req/s")
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
