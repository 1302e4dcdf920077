"""Market Data API throughput and latency against the database read directly, in the same run.

Run: ``uv run python bench/bench_api.py [--rows 1000000] [--repeat 3] [--clients 50]
[--seconds 10] [--think-ms 50]`` with the local stack's PostgreSQL up (``uv run tickpipe-stack up
--infra-only``; ``TICKPIPE_DATABASE_URL`` for another server). It creates a scratch database,
stores ``--rows`` synthetic ticks of one UTC day (2020-01-07) with a complete ledger (so the
range is closed and fully stored: cacheable), starts ``tickpipe-api`` processes on free ports
and measures:

* **streaming**: rows/s of the whole day through ``format=arrow``, ``csv`` and ``ndjson``
  (client reads and discards the bytes), next to ``psql -c "COPY (SELECT …) TO STDOUT"`` of the
  same rows (``> /dev/null``), best of ``--repeat``. Target: Arrow ≥ 0.5× COPY.
* **candles**: p50/p99 latency and requests/s of the 1-day 1m-candle json query
  (``/v1/candles?timeframe=1m&limit=1440``, about 230 kB) under ``--clients`` concurrent
  clients, cached (the answer cache on, the same closed range: every request after the first is
  a hit) and uncached (``TICKPIPE_API_CACHE_MAX_ENTRIES=0``), next to the same SQL run directly
  on an asyncpg pool of ``--clients`` connections. The HTTP load comes from ``wrk`` (C; Debian
  package ``wrk``), so that the load generator does not measure itself, in two shapes:

  - **paced**: each client asks, reads the answer, then waits ``--think-ms`` (50 ms: a client
    at the API's default per-key rate limit of 20 req/s) — 50 users at their limit. The cached
    p99 target (< 10 ms) is read here.
  - **saturated**: each client asks again as soon as it has its answer (no think time): the
    ceiling of one API process in requests/s. Latency is then ``clients / throughput`` (Little's
    law), a throughput figure in disguise.

The scratch database is dropped at the end. Figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
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
from tickpipe_api.queries import candle_sql, is_timescaledb
from tickpipe_api.series import Series
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.units import dt_to_ms
from tickpipe_writer.aggregates import OhlcvRefresher
from tickpipe_writer.plan import Plan, UnitWindow

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
        # As the writer leaves it: the continuous aggregates hold the day (TimescaleDB).
        refresher = await OhlcvRefresher.detect(conn)
        if refresher is not None:
            day = UnitWindow(INSTRUMENT, "ticks", dt_to_ms(DAY), dt_to_ms(DAY + timedelta(days=1)))
            await refresher.refresh(conn, Plan(deletes=[day]))
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


_PACED_LUA = """-- wrk: think time between a client's answer and its next request
function delay()
  return %d
end
"""


def _wrk(url: str, clients: int, seconds: float, think_ms: int) -> tuple[float, float, float]:
    """p50 ms, p99 ms and requests/s of ``clients`` wrk connections asking ``url`` for
    ``seconds``, each waiting ``think_ms`` after every answer (0: none). Raises
    :class:`RuntimeError` when an answer was not 2xx/3xx."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(_PACED_LUA % think_ms)
        script.flush()
        cmd = ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency"]
        cmd += ["--timeout", "120s"]
        if think_ms:
            cmd += ["-s", script.name]
        out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed answers or socket errors:\n{out}")

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m is None:
            raise RuntimeError(f"no {label}% latency in wrk's output:\n{out}")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{out}")
    return ms("50"), ms("99"), float(rps.group(1))


def _candles_url(url: str) -> str:
    params = {**PARAMS, "timeframe": "1m", "limit": "1440"}
    first = httpx.get(f"{url}/v1/candles", params=params, timeout=120)
    first.raise_for_status()
    assert len(first.json()["data"]) == 1440, "expected 1440 one-minute candles"
    return str(first.url)


async def _direct_load(dsn: str, clients: int, requests: int) -> tuple[float, float, float]:
    series = Series("candles", INSTRUMENT, DAY, DAY + timedelta(days=1), 5, "float",
                    timeframe="1m", side="bid", width=timedelta(minutes=1))  # fmt: skip
    async with asyncpg.create_pool(dsn, min_size=clients, max_size=clients) as pool:
        # The query the API runs: from the continuous aggregate where the schema has one.
        sql, args = candle_sql(series, timescaledb=await is_timescaledb(pool), paged=False)

        async def one() -> None:
            rows = await pool.fetch(sql, *args)
            assert len(rows) == 1440

        return await _load(clients, requests, one)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0, help="wrk run length per figure")
    ap.add_argument("--think-ms", type=int, default=50, help="paced clients' think time")
    ap.add_argument("--warmup-seconds", type=float, default=3.0,
                    help="unmeasured paced load before each API process's figures")  # fmt: skip
    ap.add_argument("--direct-requests", type=int, default=300)
    args = ap.parse_args()

    if shutil.which("wrk") is None:
        sys.exit("bench_api needs wrk for the HTTP load: apt-get install wrk")
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
            print(f"\n1-day 1m candles (1440 rows, json), {args.clients} concurrent clients "
                  f"(wrk; paced: {args.think_ms} ms think time per client)")  # fmt: skip
            candles = _candles_url(url)
            # Warm-up, not measured: the process's first thousands of answers (connections
            # opened, caches and code paths first taken) are not the steady state.
            _wrk(candles, args.clients, args.warmup_seconds, args.think_ms)
            for shape, think in (("paced", args.think_ms), ("saturated", 0)):
                p50, p99, rps = _wrk(candles, args.clients, args.seconds, think)
                print(f"  {'api cached, ' + shape:<26} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                      f"{rps:8.0f} req/s")  # fmt: skip
        with (
            tempfile.TemporaryDirectory() as tmp,
            _api(dsn, Path(tmp), {"TICKPIPE_API_CACHE_MAX_ENTRIES": "0"}) as url,
        ):
            candles = _candles_url(url)
            _wrk(candles, args.clients, args.warmup_seconds, args.think_ms)
            for shape, think in (("paced", args.think_ms), ("saturated", 0)):
                p50, p99, rps = _wrk(candles, args.clients, args.seconds, think)
                print(f"  {'api uncached, ' + shape:<26} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
                      f"{rps:8.0f} req/s")  # fmt: skip
        p50, p99, rps = asyncio.run(_direct_load(dsn, args.clients, args.direct_requests))
        print(f"  {'asyncpg direct, saturated':<26} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  "
              f"{rps:8.0f} req/s")  # fmt: skip
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
