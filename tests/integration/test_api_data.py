"""The Market Data API's data endpoints against a real database and a real ``tickpipe-api``
process: ticks and candles in every format, exact prices, time semantics, count-only, cursor
paging (also across a unit rewrite), ETags/304s, and every error shape."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from support.api import ApiProcess, api_process, seed_hour, seed_instrument, synthetic_ticks
from support.database import scratch_database
from support.golden_db import points_text
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate

pytestmark = pytest.mark.integration

T0 = datetime(2019, 2, 4, 10, tzinfo=UTC)  # a Monday
HOURS = 3
PER_HOUR = 600
SCALE = 5
INSTRUMENT = "EURUSD"


@pytest.fixture(scope="module")
def seeded(infra: Settings) -> Iterator[tuple[str, list[tuple]]]:
    """A scratch database with 3 stored hours of EURUSD ticks; yields (dsn, ticks by ts)."""
    holder: dict[str, object] = {}
    loop = asyncio.new_event_loop()

    async def setup() -> AsyncIterator[str]:
        async with scratch_database(infra, "tp_api") as dsn:
            conn = await asyncpg.connect(dsn)
            try:
                await migrate(conn)
                await seed_instrument(conn, INSTRUMENT, SCALE)
                rows = []
                for h in range(HOURS):
                    start = T0 + timedelta(hours=h)
                    ticks = synthetic_ticks(start, PER_HOUR, SCALE, 113_000, seed=h)
                    await seed_hour(conn, INSTRUMENT, start, ticks)
                    rows += ticks
                holder["rows"] = rows
            finally:
                await conn.close()
            yield dsn

    gen = setup()
    dsn = loop.run_until_complete(gen.__anext__())
    try:
        yield dsn, holder["rows"]  # type: ignore[misc]
    finally:
        with pytest.raises(StopAsyncIteration):
            loop.run_until_complete(gen.__anext__())
        loop.close()


@pytest.fixture(scope="module")
def api(
    seeded: tuple[str, list[tuple]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    with api_process(seeded[0], tmp_path_factory.mktemp("api"), auth="off") as p:
        yield p


@pytest.fixture
def http(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60) as c:
        yield c


def _dec(points: int) -> str:
    """A stored price in points as the API's decimal string at the instrument's scale."""
    return points_text(points, SCALE)


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


RANGE = {"instrument": INSTRUMENT, "start": "2019-02-04T10:00:00Z", "end": "2019-02-04T13:00:00Z"}


def test_ticks_json_page_has_exact_decimal_prices_and_meta(
    http: httpx.Client, seeded: tuple
) -> None:
    rows = sorted(seeded[1], key=lambda r: r[0])
    r = http.get("/v1/ticks", params={**RANGE, "limit": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "ticks" and body["price_scale"] == SCALE
    assert body["units"]["ts"].startswith("ISO 8601 UTC")
    assert len(body["data"]) == 5 and body["next"]
    first = body["data"][0]
    assert first["ts"] == _iso(rows[0][0])
    assert first["bid"] == _dec(rows[0][1]) and isinstance(first["bid"], str)
    assert r.headers["x-tickpipe-source"] == "ticks"


def test_price_format_float(http: httpx.Client) -> None:
    body = http.get("/v1/ticks", params={**RANGE, "limit": 1, "price_format": "float"}).json()
    assert isinstance(body["data"][0]["bid"], float)


def test_offset_and_epoch_ms_times_are_utc(http: httpx.Client) -> None:
    a = http.get("/v1/ticks", params={**RANGE, "count_only": "true"}).json()["rows"]
    b = http.get(
        "/v1/ticks",
        params={
            "instrument": "eur/usd",
            "start": "2019-02-04T11:00:00+01:00",
            "end": str(int(datetime(2019, 2, 4, 13, tzinfo=UTC).timestamp() * 1000)),
            "count_only": "true",
        },
    ).json()["rows"]
    assert a == b == HOURS * PER_HOUR


def test_end_is_exclusive_and_start_inclusive(http: httpx.Client, seeded: tuple) -> None:
    rows = sorted(seeded[1], key=lambda r: r[0])
    t = rows[10][0]
    params = {
        "instrument": INSTRUMENT,
        "start": _iso(t),
        "end": _iso(t + timedelta(milliseconds=1)),
    }
    got = http.get("/v1/ticks", params=params).json()["data"]
    assert {g["ts"] for g in got} == {_iso(t)}
    assert len(got) == sum(1 for r in rows if r[0] == t)


def test_every_streaming_format_holds_the_whole_range(http: httpx.Client, seeded: tuple) -> None:
    rows = seeded[1]
    n = len(rows)
    arrow = ipc.open_stream(
        http.get("/v1/ticks", params={**RANGE, "format": "arrow"}).content
    ).read_all()
    assert arrow.num_rows == n
    assert pa.types.is_decimal(arrow.schema.field("bid").type)
    assert arrow.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
    assert arrow.schema.metadata[b"source"] == b"ticks"
    want = sorted(_dec(r[1]) for r in rows)
    assert sorted(str(v) for v in arrow.column("bid").to_pylist()) == want
    pq_table = pq.read_table(
        io.BytesIO(http.get("/v1/ticks", params={**RANGE, "format": "parquet"}).content)
    )
    assert (
        pq_table.num_rows == n
        and pq_table.column("bid").to_pylist() == arrow.column("bid").to_pylist()
    )
    text = http.get("/v1/ticks", params={**RANGE, "format": "csv"}).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert len(table) == n and list(table[0]) == [
        "ts",
        "bid",
        "ask",
        "bid_volume",
        "ask_volume",
        "flags",
    ]
    assert sorted(t["bid"] for t in table) == want
    assert any(t["bid_volume"] == "" for t in table)  # NULL volumes are empty fields
    lines = http.get("/v1/ticks", params={**RANGE, "format": "ndjson"}).text.splitlines()
    objs = [json.loads(line) for line in lines]
    assert len(objs) == n and sorted(o["bid"] for o in objs) == want
    assert any(o["bid_volume"] is None for o in objs)


def test_accept_header_picks_the_format(http: httpx.Client) -> None:
    r = http.get("/v1/ticks", params=RANGE, headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    r = http.get(
        "/v1/ticks", params=RANGE, headers={"Accept": "application/vnd.apache.arrow.stream"}
    )
    assert ipc.open_stream(r.content).read_all().num_rows == HOURS * PER_HOUR


def test_head_and_count_only_give_rows_and_size(http: httpx.Client) -> None:
    r = http.head("/v1/ticks", params={**RANGE, "format": "csv"})
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["x-row-count"]) == HOURS * PER_HOUR
    assert int(r.headers["x-estimated-bytes"]) > 0
    body = http.get("/v1/ticks", params={**RANGE, "count_only": "true"}).json()
    assert body["rows"] == HOURS * PER_HOUR and body["estimated_bytes"] > 0


def _page_all(http: httpx.Client, params: dict[str, object], between: object = None) -> list[dict]:
    out: list[dict] = []
    cursor = None
    pages = 0
    while True:
        p = {**params, **({"cursor": cursor} if cursor else {})}
        body = http.get("/v1/ticks", params=p).json()
        out += body["data"]
        pages += 1
        cursor = body["next"]
        if pages == 2 and callable(between):
            between()
        if cursor is None:
            return out


def test_cursor_paging_has_no_gaps_or_repeats(http: httpx.Client, seeded: tuple) -> None:
    whole = http.get("/v1/ticks", params={**RANGE, "format": "ndjson"}).text.splitlines()
    paged = _page_all(http, {**RANGE, "limit": 7})  # 7: pages end inside runs of equal ts
    # Same rows (1 == 1.0: ndjson writes whole volumes without a fraction), in paging order.
    assert paged == sorted((json.loads(x) for x in whole), key=paged_key)
    assert len(paged) == HOURS * PER_HOUR


def paged_key(o: dict) -> tuple:
    """The paging order: ts, then the values (NULL volumes last, as PostgreSQL sorts them)."""
    inf = float("inf")
    bv = inf if o["bid_volume"] is None else o["bid_volume"]
    av = inf if o["ask_volume"] is None else o["ask_volume"]
    return (o["ts"], Decimal(o["bid"]), Decimal(o["ask"]), bv, av, o["flags"])


def test_cursor_paging_across_a_unit_rewrite(http: httpx.Client, seeded: tuple) -> None:
    dsn = seeded[0]
    ticks = synthetic_ticks(T0, PER_HOUR, SCALE, 113_000, seed=0)

    def rewrite() -> None:
        async def run() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                # The writer's unit replace: delete the hour, insert it again (rows in a new
                # physical order), new ledger row.
                await seed_hour(conn, INSTRUMENT, T0, list(reversed(ticks)), sha="1" * 64)
            finally:
                await conn.close()

        asyncio.run(run())

    before = _page_all(http, {**RANGE, "limit": 50})
    during = _page_all(http, {**RANGE, "limit": 50}, between=rewrite)
    assert len(during) == len(before) == HOURS * PER_HOUR
    assert during == before


def test_candles_computed_from_ticks_and_labelled_by_open_time(
    http: httpx.Client, seeded: tuple
) -> None:
    rows = sorted(seeded[1], key=lambda r: r[0])
    body = http.get("/v1/candles", params={**RANGE, "timeframe": "1h"}).json()
    assert [c["ts"] for c in body["data"]] == [
        "2019-02-04T10:00:00.000Z",
        "2019-02-04T11:00:00.000Z",
        "2019-02-04T12:00:00.000Z",
    ]  # fmt: skip: every ts has milliseconds
    first_hour = [r for r in rows if r[0] < T0 + timedelta(hours=1)]
    c = body["data"][0]
    assert c["high"] == _dec(max(r[1] for r in first_hour))
    assert c["low"] == _dec(min(r[1] for r in first_hour))
    assert c["open"] == _dec(first_hour[0][1]) or first_hour[0][0] == first_hour[1][0]
    assert c["tick_count"] == PER_HOUR
    two_h = http.get("/v1/candles", params={**RANGE, "timeframe": "2h", "format": "csv"}).text
    got = list(csv.DictReader(io.StringIO(two_h)))
    assert [g["ts"] for g in got] == ["2019-02-04T10:00:00.000Z", "2019-02-04T12:00:00.000Z"]
    assert int(got[0]["tick_count"]) == 2 * PER_HOUR
    mid = http.get("/v1/candles", params={**RANGE, "timeframe": "1h", "side": "mid"}).json()
    assert mid["price_scale"] == SCALE + 1 and mid["side"] == "mid"
    paged = []
    cursor = None
    while True:
        p = {**RANGE, "timeframe": "5m", "limit": 7, **({"cursor": cursor} if cursor else {})}
        b = http.get("/v1/candles", params=p).json()
        paged += b["data"]
        if not (cursor := b["next"]):
            break
    whole = http.get("/v1/candles", params={**RANGE, "timeframe": "5m", "format": "ndjson"})
    streamed = [json.loads(line) for line in whole.text.splitlines()]
    assert len(paged) == len(streamed) > 7 and [x["ts"] for x in paged] == [
        x["ts"] for x in streamed
    ]
    assert all(x["ts"][14:16] in {f"{5 * i:02d}" for i in range(12)} for x in paged)


def test_closed_stored_range_has_etag_and_304(http: httpx.Client) -> None:
    r = http.get("/v1/candles", params={**RANGE, "timeframe": "1h"})
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = http.get(
        "/v1/candles", params={**RANGE, "timeframe": "1h"}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    other = http.get("/v1/candles", params={**RANGE, "timeframe": "1h", "format": "csv"})
    assert other.headers["etag"] != etag


def test_rewriting_a_unit_changes_the_etag(http: httpx.Client, seeded: tuple) -> None:
    params = {
        "instrument": INSTRUMENT,
        "start": "2019-02-04T12:00:00Z",
        "end": "2019-02-04T13:00:00Z",
    }
    etag = http.get("/v1/ticks", params=params).headers["etag"]
    ticks = synthetic_ticks(T0 + timedelta(hours=2), PER_HOUR, SCALE, 113_000, seed=2)

    async def rewrite() -> None:
        conn = await asyncpg.connect(seeded[0])
        try:
            await seed_hour(conn, INSTRUMENT, T0 + timedelta(hours=2), ticks, sha="2" * 64)
        finally:
            await conn.close()

    asyncio.run(rewrite())
    # A write reaches cached answers with its change notification, milliseconds after commit.
    deadline = time.monotonic() + 5
    while (
        r := http.get("/v1/ticks", params=params, headers={"If-None-Match": etag})
    ).status_code == 304:
        assert time.monotonic() < deadline, "the rewrite never changed the ETag"
        time.sleep(0.05)
    assert r.status_code == 200 and r.headers["etag"] != etag


def test_open_or_incomplete_ranges_are_not_cached(http: httpx.Client) -> None:
    # 13:00-14:00 has no ledger row: not fully stored.
    r = http.get(
        "/v1/ticks",
        params={
            "instrument": INSTRUMENT,
            "start": "2019-02-04T12:00:00Z",
            "end": "2019-02-04T14:00:00Z",
        },
    )
    assert r.status_code == 200 and "etag" not in r.headers
    assert r.headers["cache-control"] == "no-store"
    now = datetime.now(UTC)
    r = http.get(
        "/v1/ticks",
        params={
            "instrument": INSTRUMENT,
            "start": _iso(now - timedelta(hours=1)),
            "end": _iso(now + timedelta(hours=1)),
        },
    )
    assert r.status_code == 200 and "etag" not in r.headers


# --------------------------------------------------------------------------- errors


def _problem(r: httpx.Response, status: int, parameter: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    if parameter is not None:
        assert body["parameter"] == parameter
    return body


def test_unknown_instrument_is_404_with_close_matches(http: httpx.Client) -> None:
    body = _problem(
        http.get("/v1/ticks", params={**RANGE, "instrument": "EURUSX"}), 404, "instrument"
    )
    assert "EURUSD" in body["matches"] and body["type"] == "/problems/unknown-instrument"


def test_bad_range_and_timeframe_are_422(http: httpx.Client) -> None:
    _problem(http.get("/v1/ticks", params={**RANGE, "end": "2019-02-04T09:00:00Z"}), 422, "end")
    _problem(http.get("/v1/ticks", params={**RANGE, "start": "yesterday"}), 422, "start")
    _problem(http.get("/v1/candles", params={**RANGE, "timeframe": "7x"}), 422, "timeframe")
    _problem(http.get("/v1/candles", params={**RANGE, "timeframe": "1mo"}), 422, "timeframe")
    _problem(http.get("/v1/ticks", params={**RANGE, "format": "xml"}), 422, "format")
    _problem(http.get("/v1/ticks", params={**RANGE, "cursor": "garbage"}), 422, "cursor")
    _problem(http.get("/v1/ticks", params={**RANGE, "limit": 0}), 422, "limit")
    _problem(http.get("/v1/ticks", params={"instrument": INSTRUMENT}), 422, "start")


def test_cursor_of_another_query_is_422(http: httpx.Client) -> None:
    nxt = http.get("/v1/ticks", params={**RANGE, "limit": 2}).json()["next"]
    other = {**RANGE, "end": "2019-02-04T12:00:00Z", "cursor": nxt}
    _problem(http.get("/v1/ticks", params=other), 422, "cursor")


def test_unknown_path_is_a_problem(http: httpx.Client) -> None:
    _problem(http.get("/v1/nope"), 404)


def test_range_too_large_for_json_names_the_streaming_formats(
    seeded: tuple, tmp_path: Path
) -> None:
    with api_process(seeded[0], tmp_path, {"TICKPIPE_API_JSON_MAX_ROWS": "100"}, auth="off") as p:
        r = httpx.get(f"{p.url}/v1/ticks", params=RANGE)
        body = _problem(r, 422, "format")
        assert body["type"] == "/problems/range-too-large"
        assert set(body["formats"]) == {"ndjson", "csv", "arrow", "parquet"}
        assert httpx.get(f"{p.url}/v1/ticks", params={**RANGE, "format": "csv"}).status_code == 200
