"""API keys, scopes, rate limits, request publishing and the service endpoints of the Market
Data API, against a real ``tickpipe-api`` process with auth on (the default)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from support.api import ApiProcess, api_process, seed_hour, seed_instrument, synthetic_ticks
from support.database import scratch_database
from tickpipe_shared.config import Settings
from tickpipe_shared.db.api_keys import create_key, hash_key, revoke_key
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.kafka.topics import FETCH_REQUESTS
from tickpipe_shared.wire.headers import decode_headers

pytestmark = pytest.mark.integration

T0 = datetime(2019, 2, 4, 10, tzinfo=UTC)
RANGE = {"instrument": "EURUSD", "start": "2019-02-04T10:00:00Z", "end": "2019-02-04T11:00:00Z"}


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.new_event_loop().run_until_complete(coro)


@pytest.fixture(scope="module")
def db(infra: Settings) -> Iterator[tuple[str, dict[str, str]]]:
    """A scratch database with an hour of ticks and keys: read, request-only, slow, revoked."""
    cm = scratch_database(infra, "tp_api_auth")
    loop = asyncio.new_event_loop()
    dsn = loop.run_until_complete(cm.__aenter__())

    async def setup() -> dict[str, str]:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await seed_instrument(conn, "EURUSD", 5)
            await seed_hour(conn, "EURUSD", T0, synthetic_ticks(T0, 100, 5, 113_000, seed=1))
            keys = {}
            for name, scopes, rate in (
                ("reader", ["read"], None),
                ("requester", ["request"], None),
                ("both", ["read", "request"], None),
                ("slow", ["read"], 0.5),
                ("gone", ["admin"], None),
            ):
                _, keys[name] = await create_key(conn, name, scopes, rate)
            await revoke_key(conn, "gone")
            return keys
        finally:
            await conn.close()

    try:
        yield dsn, loop.run_until_complete(setup())
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


@pytest.fixture(scope="module")
def api(
    db: tuple[str, dict[str, str]], infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    env = {"TICKPIPE_API_RATE_LIMIT": "1000", "TICKPIPE_KAFKA_BOOTSTRAP": infra.kafka_bootstrap}
    with api_process(db[0], tmp_path_factory.mktemp("api"), env) as p:
        yield p


@pytest.fixture
def http(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30) as c:
        yield c


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def test_missing_unknown_and_revoked_keys_are_401(http: httpx.Client, db: tuple) -> None:
    body = _problem(http.get("/v1/ticks", params=RANGE), 401)
    assert body["parameter"] == "X-API-Key"
    _problem(
        http.get(
            "/v1/ticks", params=RANGE, headers={"X-API-Key": "tp_0123456789abcdef_" + "x" * 32}
        ),
        401,
    )
    _problem(http.get("/v1/ticks", params=RANGE, headers={"X-API-Key": "nonsense"}), 401)
    gone = _problem(http.get("/v1/ticks", params=RANGE, headers={"X-API-Key": db[1]["gone"]}), 401)
    assert "revoked" in gone["detail"]
    assert "www-authenticate" in http.get("/v1/instruments").headers


def test_header_and_bearer_keys_work(http: httpx.Client, db: tuple) -> None:
    key = db[1]["reader"]
    assert http.get("/v1/ticks", params=RANGE, headers={"X-API-Key": key}).status_code == 200
    assert (
        http.get("/v1/ticks", params=RANGE, headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )


def test_revocation_takes_effect(http: httpx.Client, db: tuple) -> None:
    async def make() -> str:
        conn = await asyncpg.connect(db[0])
        try:
            return (await create_key(conn, "short-lived", ["read"]))[1]
        finally:
            await conn.close()

    key = _run(make())
    assert http.get("/v1/instruments", headers={"X-API-Key": key}).status_code == 200

    async def revoke() -> None:
        conn = await asyncpg.connect(db[0])
        try:
            await revoke_key(conn, "short-lived")
        finally:
            await conn.close()

    _run(revoke())
    _problem(http.get("/v1/instruments", headers={"X-API-Key": key}), 401)


def test_only_the_hash_is_stored_and_keys_are_never_logged(
    http: httpx.Client, db: tuple, api: ApiProcess
) -> None:
    key = db[1]["reader"]
    http.get("/v1/ticks", params=RANGE, headers={"X-API-Key": key})

    async def stored() -> list[str]:
        conn = await asyncpg.connect(db[0])
        try:
            return [str(v) for r in await conn.fetch("SELECT * FROM api_keys") for v in r.values()]
        finally:
            await conn.close()

    values = _run(stored())
    assert hash_key(key) in values and key not in values
    log = api.log.read_text()
    assert '"msg": "request"' in log and key not in log
    assert key.split("_")[2] not in log


def test_scopes_are_403(http: httpx.Client, db: tuple) -> None:
    body = _problem(
        http.get("/v1/ticks", params=RANGE, headers={"X-API-Key": db[1]["requester"]}), 403
    )
    assert body["required_scope"] == "read"
    req = {"instrument": "EURUSD", "start": "2019-02-04T10:00:00Z", "end": "2019-02-04T11:00:00Z"}
    _problem(http.post("/v1/requests", json=req, headers={"X-API-Key": db[1]["reader"]}), 403)


def test_rate_limit_headers_and_429(http: httpx.Client, db: tuple) -> None:
    ok = http.get("/v1/instruments", headers={"X-API-Key": db[1]["reader"]})
    assert int(ok.headers["ratelimit-limit"]) == 5000  # 1000/s × 5 s burst
    assert int(ok.headers["ratelimit-remaining"]) < 5000
    assert "ratelimit-reset" in ok.headers and ok.headers["ratelimit-policy"].startswith("5000;w=")
    slow = {"X-API-Key": db[1]["slow"]}  # 0.5/s, burst 2.5 → 2 requests at once
    answers = [http.get("/v1/instruments", headers=slow) for _ in range(3)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    body = _problem(answers[2], 429)
    assert body["type"] == "/problems/rate-limited"
    assert int(answers[2].headers["retry-after"]) >= 1
    assert answers[2].headers["ratelimit-remaining"] == "0"


def test_post_request_publishes_like_the_cli(
    http: httpx.Client, db: tuple, infra: Settings
) -> None:
    body = {
        "instrument": "EURUSD",
        "source": "dukascopy-bi5",
        "start": "2019-02-04",
        "end": "2019-02-04T02:00:00+01:00",
    }
    r = http.post("/v1/requests", json=body, headers={"X-API-Key": db[1]["both"]})
    assert r.status_code == 202, r.text
    out = r.json()
    rid = out["request_id"]
    assert (
        out["status_url"].endswith(f"/v1/requests/{rid}")
        and r.headers["location"] == out["status_url"]
    )
    assert (
        out["request"]["from"] == "2019-02-04T00:00:00Z"
        and out["request"]["to"] == "2019-02-04T01:00:00Z"
    )

    async def find() -> dict:
        consumer = AIOKafkaConsumer(
            infra.topic(FETCH_REQUESTS),
            bootstrap_servers=infra.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            deadline = asyncio.get_running_loop().time() + 20
            while asyncio.get_running_loop().time() < deadline:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for rec in records:
                        value = json.loads(rec.value)
                        if value.get("request_id") == rid:
                            assert rec.key == b"EURUSD"
                            assert decode_headers(rec.headers)["request_id"] == rid
                            return value
            raise AssertionError("request not published")
        finally:
            await consumer.stop()

    published = _run(find())
    assert published["source"] == "dukascopy-bi5" and published["kind"] == "ticks"
    status = http.get(f"/v1/requests/{rid}", headers={"X-API-Key": db[1]["both"]}).json()
    assert status["status"] in ("pending", "running", "rejected", "completed")
    assert status["request"]["request_id"] == rid


def test_invalid_fetch_requests_are_422(http: httpx.Client, db: tuple) -> None:
    key = {"X-API-Key": db[1]["both"]}
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    for body in (
        {"instrument": "EURUSD", "start": future, "end": future + "1"},
        {
            "instrument": "EURUSD",
            "start": "2019-02-04",
            "end": "2019-02-05",
            "kind": "candles",
            "source": "deriv",
            "timeframe": "7x",
        },
        {"instrument": "EURUSD", "start": "2019-02-05", "end": "2019-02-04"},
        {"instrument": "EURUSD", "start": "2019-02-04", "end": "2019-02-05", "color": "red"},
        {"instrument": "EURUSD", "start": "2019-02-04", "end": "2019-02-05", "source": "nasdaq"},
    ):
        _problem(http.post("/v1/requests", json=body, headers=key), 422)


def test_unknown_request_is_404(http: httpx.Client, db: tuple) -> None:
    body = _problem(http.get("/v1/requests/nope", headers={"X-API-Key": db[1]["reader"]}), 404)
    assert body["parameter"] == "request_id"


def test_service_endpoints(http: httpx.Client, api: ApiProcess) -> None:
    assert http.get("/healthz").json() == {"ok": True, "reason": "ok"}
    assert http.get("/readyz").json()["ok"] is True
    spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and "/v1/ticks" in spec["paths"]
    assert "text/html" in http.get("/docs").headers["content-type"]
    metrics = httpx.get(f"{api.metrics_url}/metrics").text
    for name in (
        "tickpipe_api_requests_total",
        "tickpipe_api_request_duration_seconds_bucket",
        "tickpipe_api_rows_total",
        "tickpipe_api_bytes_total",
        "tickpipe_api_auth_failures_total",
    ):
        assert name in metrics
    assert httpx.get(f"{api.metrics_url}/healthz").status_code == 200
    rid = http.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"]
    assert rid == "abc-123"
