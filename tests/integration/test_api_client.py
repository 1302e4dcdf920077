"""``tickpipe.client.Client`` against a real ``tickpipe-api`` with auth on: DataFrames and
Arrow tables of ticks, candles and coverage, exact decimals, errors, and publishing a request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pandas as pd
import pyarrow as pa
import pytest
from support.api import (
    ApiProcess,
    api_process,
    ledger_row,
    seed_hour,
    seed_instrument,
    synthetic_ticks,
)
from support.database import scratch_database
from tickpipe.client import ApiError, Client
from tickpipe_shared.config import Settings
from tickpipe_shared.db.api_keys import create_key
from tickpipe_shared.db.migrate import migrate

pytestmark = pytest.mark.integration

T0 = datetime(2019, 2, 4, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def db(infra: Settings) -> Iterator[tuple[str, str, list[tuple]]]:
    """Two stored hours of EURUSD, one failed hour after them; (dsn, key, ticks)."""
    cm = scratch_database(infra, "tp_api_client")
    loop = asyncio.new_event_loop()
    dsn = loop.run_until_complete(cm.__aenter__())

    async def setup() -> tuple[str, list[tuple]]:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
            await seed_instrument(conn, "EURUSD", 5)
            rows: list[tuple] = []
            for h in range(2):
                ticks = synthetic_ticks(T0 + timedelta(hours=h), 300, 5, 113_000, seed=h)
                await seed_hour(conn, "EURUSD", T0 + timedelta(hours=h), ticks)
                rows += ticks
            t2 = T0 + timedelta(hours=2)
            await ledger_row(
                conn,
                "EURUSD",
                "ticks",
                t2,
                t2 + timedelta(hours=1),
                "failed",
                0,
                failure="HTTP 500 after 5 attempts",
            )
            _, key = await create_key(conn, "client-test", ["read", "request"])
            return key, rows
        finally:
            await conn.close()

    try:
        key, rows = loop.run_until_complete(setup())
        yield dsn, key, rows
    finally:
        loop.run_until_complete(cm.__aexit__(None, None, None))
        loop.close()


@pytest.fixture(scope="module")
def api(
    db: tuple, infra: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiProcess]:
    with api_process(
        db[0], tmp_path_factory.mktemp("api"), {"TICKPIPE_API_RATE_LIMIT": "1000"}
    ) as p:
        yield p


@pytest.fixture
def client(api: ApiProcess, db: tuple) -> Iterator[Client]:
    with Client(api.url, db[1]) as c:
        yield c


def test_ticks_as_a_dataframe(client: Client, db: tuple) -> None:
    df = client.ticks("EURUSD", T0, T0 + timedelta(hours=2))
    assert isinstance(df, pd.DataFrame) and len(df) == len(db[2])
    assert str(df["ts"].dtype) == "datetime64[ms, UTC]"
    assert df["bid"].dtype == "float64"
    # float64 prices are points / 10^5, correctly rounded: equal without rounding.
    assert sorted(df["bid"]) == sorted(r[1] / 10**5 for r in db[2])


def test_ticks_as_arrow_with_exact_decimals(client: Client, db: tuple) -> None:
    table = client.ticks(
        "EURUSD", "2019-02-04T10:00Z", "2019-02-04T11:00Z", as_arrow=True, price_format="decimal"
    )
    assert isinstance(table, pa.Table) and table.schema.field("bid").type == pa.decimal128(18, 5)
    first_hour = [r for r in db[2] if r[0] < T0 + timedelta(hours=1)]
    assert sorted(table.column("bid").to_pylist()) == sorted(
        Decimal(r[1]).scaleb(-5) for r in first_hour
    )
    assert table.schema.metadata[b"source"] == b"ticks"


def test_candles(client: Client) -> None:
    df = client.candles("EURUSD", T0, T0 + timedelta(hours=2), "30m", side="ask")
    assert list(df.columns) == [
        "ts",
        "open",
        "high",
        "low",
        "close",
        "tick_count",
        "bid_volume",
        "ask_volume",
    ]
    assert df["tick_count"].sum() == 600
    assert all(t.minute in (0, 30) for t in df["ts"])


def test_coverage_shows_the_failed_hour_with_its_reason(client: Client) -> None:
    df = client.coverage("EURUSD", "2019-02-04", "2019-02-05")
    day = df.iloc[0]
    assert day["stored"] == 2 and day["failed"] == 1
    assert day["failures"] == [
        {"unit": "2019-02-04T12:00:00Z", "stage": "fetcher", "reason": "HTTP 500 after 5 attempts"}
    ]
    assert day["missing"] == day["expected"] - 3


def test_errors_are_api_errors(client: Client) -> None:
    with pytest.raises(ApiError) as e:
        client.ticks("GBPUSX", T0, T0 + timedelta(hours=1))
    assert e.value.status == 404 and e.value.parameter == "instrument"


def test_request_publishes_and_status_knows_it(client: Client) -> None:
    rid = client.request("EURUSD", "2019-02-05", "2019-02-05T01:00", source="dukascopy-bi5")
    assert client.status(rid)["status"] in ("pending", "running", "completed", "rejected")
