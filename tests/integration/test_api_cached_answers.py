"""Repeated queries answered from the answer cache without the database, kept honest by the
ledger's change notifications (migration 0008, ``tickpipe_api.ledger_watch``,
``tickpipe_api.serve_cached``), against a real database and a real ``tickpipe-api``."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from support.api import ApiProcess, api_process, seed_hour, seed_instrument, synthetic_ticks
from support.database import scratch_database
from tickpipe_api.ledger_watch import APPLICATION_NAME
from tickpipe_shared.config import Settings
from tickpipe_shared.db.api_keys import create_key, revoke_key
from tickpipe_shared.db.migrate import migrate

pytestmark = pytest.mark.integration

T0 = datetime(2019, 2, 4, 10, tzinfo=UTC)  # a Monday
SCALE = 5
DAY = {"instrument": "EURUSD", "start": "2019-02-04T10:00:00Z", "end": "2019-02-04T12:00:00Z"}
CANDLES = {**DAY, "timeframe": "1m", "limit": "1440"}


def _run(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="module")
def db(infra: Settings, loop: asyncio.AbstractEventLoop) -> Iterator[tuple[str, dict[str, str]]]:
    """Two stored hours of EURUSD ticks and keys: a reader and a revoked one."""
    cm = scratch_database(infra, "tp_api_known")
    dsn = _run(loop, cm.__aenter__())

    async def setup() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await seed_instrument(conn, "EURUSD", SCALE)
            for h in range(2):
                start = T0 + timedelta(hours=h)
                await seed_hour(
                    conn, "EURUSD", start, synthetic_ticks(start, 300, SCALE, 113_000, h)
                )
            _, reader = await create_key(conn, "reader", ["read"], None)
            _, gone = await create_key(conn, "gone", ["read"], None)
            return {"reader": reader, "gone": gone}
        finally:
            await conn.close()

    try:
        yield dsn, _run(loop, setup())
    finally:
        _run(loop, cm.__aexit__(None, None, None))


@pytest.fixture(scope="module")
def api(
    db: tuple[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    env = {"TICKPIPE_API_RATE_LIMIT": "1000"}
    with api_process(db[0], tmp_path_factory.mktemp("api"), env) as p:
        yield p


@pytest.fixture
def http(api: ApiProcess, db: tuple[str, dict[str, str]]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30, headers={"X-API-Key": db[1]["reader"]}) as c:
        yield c


def _hits(api: ApiProcess) -> float:
    text = httpx.get(f"{api.metrics_url}/metrics", timeout=5).text
    m = re.search(r'^tickpipe_api_cache_total\{result="hit"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def _eventually(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.05)


async def _listening(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        n = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION_NAME
        )
        return bool(n)
    finally:
        await conn.close()


def _rewrite(loop: asyncio.AbstractEventLoop, dsn: str, hour: int, seed: int, sha: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            start = T0 + timedelta(hours=hour)
            await seed_hour(
                conn, "EURUSD", start, synthetic_ticks(start, 300, SCALE, 114_000, seed), sha=sha
            )
        finally:
            await conn.close()

    _run(loop, run())


def test_a_repeated_query_is_answered_from_the_cache_even_with_the_ledger_locked(
    http: httpx.Client, api: ApiProcess, db: tuple, loop: asyncio.AbstractEventLoop
) -> None:
    _eventually(lambda: _run(loop, _listening(db[0])), "the API listens for ledger changes")
    first = http.get("/v1/candles", params=CANDLES)
    assert first.status_code == 200 and first.json()["data"]
    hits = _hits(api)

    async def locked_get() -> tuple[httpx.Response, httpx.Response | None]:
        # With ingest_log locked, anything that reads the ledger state waits: only an answer
        # that needs no database comes back.
        conn = await asyncpg.connect(db[0])
        try:
            async with conn.transaction():
                await conn.execute("LOCK TABLE ingest_log IN ACCESS EXCLUSIVE MODE")
                async with httpx.AsyncClient(
                    base_url=api.url, headers=http.headers, timeout=3
                ) as client:
                    known = await client.get("/v1/candles", params=CANDLES)
                    try:
                        other = await client.get(
                            "/v1/candles", params={**CANDLES, "timeframe": "5m"}
                        )
                    except httpx.TimeoutException:
                        other = None
                    return known, other
        finally:
            await conn.close()

    known, other = _run(loop, locked_get())
    assert known.status_code == 200 and known.content == first.content
    for h in (
        "etag",
        "content-type",
        "x-tickpipe-source",
        "x-tickpipe-price-scale",
        "cache-control",
    ):
        assert known.headers[h] == first.headers[h], h
    assert known.headers["ratelimit-limit"] and known.headers["x-request-id"]
    assert other is None, "a query nobody asked before must have waited for the ledger"
    assert _hits(api) == hits + 1
    again = http.get(
        "/v1/candles", params=CANDLES, headers={"If-None-Match": first.headers["etag"]}
    )
    assert (
        again.status_code == 304
        and again.content == b""
        and again.headers["etag"] == first.headers["etag"]
    )


def test_a_known_answer_still_needs_a_valid_key(
    http: httpx.Client, api: ApiProcess, db: tuple, loop: asyncio.AbstractEventLoop
) -> None:
    assert http.get("/v1/candles", params=CANDLES).status_code == 200
    with httpx.Client(base_url=api.url, timeout=10) as anon:
        r = anon.get("/v1/candles", params=CANDLES)
        assert r.status_code == 401 and r.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert (
            anon.get("/v1/candles", params=CANDLES, headers={"X-API-Key": "tp_0_nope"}).status_code
            == 401
        )
        _run(loop, _revoke(db[0], db[1]["gone"]))
        r = anon.get("/v1/candles", params=CANDLES, headers={"X-API-Key": db[1]["gone"]})
        assert r.status_code == 401 and "revoked" in r.json()["detail"]


async def _revoke(dsn: str, key: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await revoke_key(conn, key.split("_")[1])
    finally:
        await conn.close()


def test_rewriting_a_covered_unit_is_seen_by_the_next_requests(
    http: httpx.Client, db: tuple, loop: asyncio.AbstractEventLoop
) -> None:
    before = http.get("/v1/candles", params=CANDLES)
    assert http.get("/v1/candles", params=CANDLES).content == before.content  # known now
    _rewrite(loop, db[0], 1, seed=7, sha="7" * 64)
    # Visible once the notification arrived (milliseconds): never the old answer after that.
    _eventually(
        lambda: http.get("/v1/candles", params=CANDLES).headers["etag"] != before.headers["etag"],
        "the rewritten hour changes the answer",
        timeout_s=5,
    )
    after = http.get("/v1/candles", params=CANDLES)

    def hour(r: httpx.Response, h: str) -> list[dict[str, Any]]:
        return [c for c in r.json()["data"] if c["ts"][11:13] == h]

    assert hour(after, "11") and hour(after, "11") != hour(before, "11")  # the rewritten hour
    assert hour(after, "10") == hour(before, "10")  # the other


def test_a_lost_listening_session_revalidates_and_comes_back(
    http: httpx.Client, api: ApiProcess, db: tuple, loop: asyncio.AbstractEventLoop
) -> None:
    before = http.get("/v1/candles", params=CANDLES)
    assert http.get("/v1/candles", params=CANDLES).status_code == 200

    async def kill_listener_then_rewrite() -> None:
        conn = await asyncpg.connect(db[0])
        try:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1",
                APPLICATION_NAME,
            )
        finally:
            await conn.close()

    _run(loop, kill_listener_then_rewrite())
    # Nobody listens now: this write's notification is lost for good.
    _rewrite(loop, db[0], 0, seed=8, sha="8" * 64)
    _eventually(
        lambda: http.get("/v1/candles", params=CANDLES).headers["etag"] != before.headers["etag"],
        "the write made while nobody listened is seen",
    )
    _eventually(lambda: _run(loop, _listening(db[0])), "the API listens again")
    current = http.get("/v1/candles", params=CANDLES)
    hits = _hits(api)
    assert http.get("/v1/candles", params=CANDLES).content == current.content
    assert _hits(api) >= hits + 1
