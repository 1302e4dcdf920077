"""The Market Data API in tests: a ``tickpipe-api`` process on free ports against a scratch
database, and rows seeded straight into ``ticks``, ``candles``, ``instruments`` and
``ingest_log`` (as the writer would leave them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from tickpipe_shared.units import dt_to_ms
from tickpipe_writer.aggregates import OhlcvRefresher
from tickpipe_writer.plan import Plan, UnitWindow

from support.pipeline import free_port


@dataclass(frozen=True)
class ApiProcess:
    """A running ``tickpipe-api``: its base URL, metrics URL and process."""

    url: str
    metrics_url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_bytes(self) -> int:
        """Resident set size of the process now."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


@contextmanager
def api_process(
    dsn: str, tmp: Path, env: Mapping[str, str] | None = None, *, auth: str = "on"
) -> Iterator[ApiProcess]:
    """Start ``tickpipe-api`` on free ports against ``dsn``; wait for ``/readyz``; stop it
    afterwards (SIGTERM, then SIGKILL). Its log is ``tmp/api.log``."""
    port, mport = free_port(), free_port()
    full = {
        **os.environ,
        "TICKPIPE_DATABASE_URL": dsn,
        "TICKPIPE_API_PORT": str(port),
        "TICKPIPE_API_HOST": "127.0.0.1",
        "TICKPIPE_METRICS_PORT": str(mport),
        "TICKPIPE_METRICS_HOST": "127.0.0.1",
        "TICKPIPE_API_AUTH": auth,
        "TICKPIPE_API_KEY_CACHE_S": "0",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    log = tmp / "api.log"
    exe = Path(sys.executable).parent / "tickpipe-api"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(exe)], env=full, stdout=out, stderr=subprocess.STDOUT)
    api = ApiProcess(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{mport}", proc, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tickpipe-api exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{api.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"tickpipe-api not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield api
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def hour(t: datetime) -> datetime:
    """``t`` floored to its UTC hour."""
    return t.replace(minute=0, second=0, microsecond=0)


async def seed_instrument(conn: asyncpg.Connection, instrument: str, scale: int) -> None:
    """An ``instruments`` row."""
    await conn.execute(
        """INSERT INTO instruments (instrument, price_scale, asset_class, source_codes)
           VALUES ($1, $2, 'fx', '{"dukascopy-bi5": "x"}'::jsonb)
           ON CONFLICT (instrument) DO UPDATE SET price_scale = EXCLUDED.price_scale""",
        instrument,
        scale,
    )


async def seed_hour(
    conn: asyncpg.Connection,
    instrument: str,
    start: datetime,
    ticks: list[tuple[datetime, int, int, float | None, float | None, int]],
    *,
    state: str = "stored",
    sha: str = "0" * 64,
    fetched_at: datetime | None = None,
) -> None:
    """Replace the tick unit ``[start, start + 1h)`` like the writer: delete its ticks, copy
    ``ticks`` (ts, bid and ask points, volumes, flags), upsert its ledger row, then (on
    TimescaleDB) refresh the unit's windows of the continuous aggregates."""
    end = start + timedelta(hours=1)
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM ticks WHERE instrument = $1 AND ts >= $2 AND ts < $3",
            instrument,
            start,
            end,
        )
        await conn.copy_records_to_table(
            "ticks",
            records=[(instrument, *t) for t in ticks],
            columns=[
                "instrument",
                "ts",
                "bid_points",
                "ask_points",
                "bid_volume",
                "ask_volume",
                "flags",
            ],
        )
        await ledger_row(conn, instrument, "ticks", start, end, state, len(ticks), sha, fetched_at)
    refresher = await OhlcvRefresher.detect(conn)
    if refresher is not None:
        window = UnitWindow(instrument, "ticks", dt_to_ms(start), dt_to_ms(end))
        await refresher.refresh(conn, Plan(deletes=[window]))


async def ledger_row(
    conn: asyncpg.Connection,
    instrument: str,
    kind: str,
    start: datetime,
    end: datetime,
    state: str,
    rows: int,
    sha: str = "0" * 64,
    fetched_at: datetime | None = None,
    failure: str | None = None,
) -> None:
    """Upsert one ``ingest_log`` row (``written_at`` now)."""
    fetched = fetched_at or max(end, datetime.now(UTC))
    await conn.execute(
        """INSERT INTO ingest_log (instrument, kind, unit_start, unit_end, source, state, rows,
               part_count, parts_written, payload_sha256, decoder_version, fetched_at,
               decoded_at, failure_stage, failure_reason, written_at)
           VALUES ($1, $2, $3, $4, 'dukascopy-bi5', $5, $6, 1, 1, $7, 'test', $8, $8,
                   $9, $10, clock_timestamp())
           ON CONFLICT (instrument, kind, unit_start) DO UPDATE SET
               state = EXCLUDED.state, rows = EXCLUDED.rows,
               payload_sha256 = EXCLUDED.payload_sha256, fetched_at = EXCLUDED.fetched_at,
               failure_stage = EXCLUDED.failure_stage, failure_reason = EXCLUDED.failure_reason,
               written_at = clock_timestamp()""",
        instrument,
        kind,
        start,
        end,
        state,
        rows,
        None if state == "failed" else sha,
        None if state == "failed" else fetched,
        "fetcher" if failure else None,
        failure,
    )


def synthetic_ticks(
    start: datetime, n: int, scale: int, first: int, seed: int, ties: bool = True
) -> list[tuple[datetime, int, int, float | None, float | None, int]]:
    """``n`` ticks in the hour from ``start``: ms timestamps (every third repeats the previous
    one when ``ties``), bid/ask in points as stored (``scale``: their decimals), every fifth tick
    without volumes, a flag now and then."""
    import random

    rng = random.Random(seed)
    out = []
    ms = 0
    bid = first
    step = max(1, 3_600_000 // (n + 1))
    for i in range(n):
        if not (ties and i % 3 == 2):
            ms += rng.randint(1, step)
        bid += rng.randint(-3, 3)
        ask = bid + rng.randint(0, 20)
        vol = None if i % 5 == 4 else rng.choice([0.5, 1.0, 1.25, 2.06])
        out.append(
            (
                start + timedelta(milliseconds=ms),
                bid,
                ask,
                vol,
                vol,
                1 if i % 17 == 0 else 0,
            )
        )
    return out
