"""Streaming a 10 M-tick range from a real ``tickpipe-api`` process keeps the server's memory
flat: its RSS grows by less than 100 MB while the whole range goes out as Arrow and as CSV, and
every row arrives. (No timing asserts: speed is for bench/bench_api.py.)"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from support.api import ApiProcess, api_process, seed_instrument
from support.database import scratch_database
from tickpipe.client.stream import reader
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate

pytestmark = pytest.mark.integration

N = 10_000_000
RANGE = {"instrument": "BIG", "start": "2020-01-06T00:00:00Z", "end": "2020-01-17T00:00:00Z"}
GROWTH_LIMIT = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def big(infra: Settings) -> Iterator[str]:
    """A scratch database holding 10 M ticks of BIG, one every 86 ms from 2020-01-06."""
    cm = scratch_database(infra, "tp_api_big")
    loop = asyncio.new_event_loop()
    dsn = loop.run_until_complete(cm.__aenter__())

    async def fill() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await seed_instrument(conn, "BIG", 5)
            # An autovacuum worker (a superuser backend) would block the scratch database's
            # DROP … WITH (FORCE) afterwards.
            await conn.execute("ALTER TABLE ticks SET (autovacuum_enabled = false)")
            await conn.execute(
                """INSERT INTO ticks (instrument, ts, bid_points, ask_points, bid_volume,
                                      ask_volume, flags)
                   SELECT 'BIG', TIMESTAMPTZ '2020-01-06 00:00:00+00' + i * INTERVAL '86 ms',
                          110000 + i % 1000, 110003 + i % 1000,
                          CASE WHEN i % 7 = 0 THEN NULL ELSE 1.25 END, 0.5, 0
                   FROM generate_series(0, $1 - 1) AS i""",
                N,
            )
            await conn.execute("ANALYZE ticks")
        finally:
            await conn.close()

    try:
        loop.run_until_complete(fill())
        yield dsn
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


@pytest.fixture(scope="module")
def api(big: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with api_process(big, tmp_path_factory.mktemp("api"), auth="off") as p:
        yield p


class PeakRss:
    """Samples a process's RSS every 50 ms in a thread; ``peak`` is the largest seen."""

    def __init__(self, api: ApiProcess) -> None:
        self.api = api
        self.peak = api.rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.api.rss_bytes())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up(api: ApiProcess) -> int:
    """Exercise every code path once on a small range, then return the RSS to measure from."""
    small = {**RANGE, "end": "2020-01-06T01:00:00Z"}
    for fmt in ("arrow", "csv"):
        httpx.get(
            f"{api.url}/v1/ticks", params={**small, "format": fmt}, timeout=60
        ).raise_for_status()
    return api.rss_bytes()


@pytest.mark.timeout(1200)
def test_ten_million_ticks_stream_as_arrow_with_flat_server_memory(
    api: ApiProcess, tmp_path: Path
) -> None:
    base = _warm_up(api)
    rows = 0
    with (
        PeakRss(api) as rss,
        httpx.stream(
            "GET", f"{api.url}/v1/ticks", params={**RANGE, "format": "arrow"}, timeout=120
        ) as r,
    ):
        assert r.status_code == 200
        with ipc.open_stream(pa.PythonFile(reader(r.iter_bytes()), mode="r")) as batches:
            for batch in batches:
                rows += batch.num_rows
    assert rows == N
    assert rss.peak - base < GROWTH_LIMIT, f"RSS grew by {(rss.peak - base) / 2**20:.0f} MB"


@pytest.mark.timeout(1200)
def test_ten_million_ticks_stream_as_csv_with_flat_server_memory(api: ApiProcess) -> None:
    base = _warm_up(api)
    lines = 0
    with (
        PeakRss(api) as rss,
        httpx.stream(
            "GET", f"{api.url}/v1/ticks", params={**RANGE, "format": "csv"}, timeout=120
        ) as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_bytes():
            lines += chunk.count(b"\n")
    assert lines == N + 1  # the header
    assert rss.peak - base < GROWTH_LIMIT, f"RSS grew by {(rss.peak - base) / 2**20:.0f} MB"
