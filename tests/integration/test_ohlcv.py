"""OHLCV candles on the local server: TimescaleDB (``ohlcv_*`` are continuous aggregates) or,
on the plain-PostgreSQL run, views over ``ticks`` with the same names and columns.

Ticks are stored with the writer's own ``store.write``; :func:`candles` must equal a plain-Python
reference on either storage. Materialization and the writer's refresh on TimescaleDB:
test_timescaledb_aggregates.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from support.database import scratch_database
from support.ohlcv import (
    T0,
    assert_candles_equal,
    hour_batch,
    initial_batches,
    reference_candles,
    stored_ticks,
)
from support.storage import on_timescaledb, storage_mode, write_as_the_writer
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import (
    CANDLE_COLUMNS,
    STORED_CANDLE_COLUMNS,
    TIMEFRAMES,
    UnknownTimeframeError,
    candles,
)
from tickpipe_shared.units import HOUR_MS
from tickpipe_writer.aggregates import OhlcvRefresher, continuous_aggregates
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

FROM = datetime(2021, 3, 1, tzinfo=UTC)
TO = datetime(2021, 3, 3, tzinfo=UTC)


@pytest.fixture
async def dsn(infra: Settings) -> AsyncIterator[str]:
    async with scratch_database(infra, prefix="tp_ohlcv") as url:
        yield url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(dsn)
    try:
        report = await migrate(c, storage_mode())
        assert report.timescaledb == on_timescaledb()
        yield c
    finally:
        await c.close()


async def test_views_exist_with_the_same_columns_and_nothing_to_refresh(
    conn: asyncpg.Connection,
) -> None:
    assert await conn.fetchval("SELECT variant FROM schema_migrations WHERE version = 2") == (
        "timescaledb" if on_timescaledb() else "postgresql"
    )
    for tf in TIMEFRAMES:
        cols = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1 "
            "ORDER BY ordinal_position",
            f"ohlcv_{tf}",
        )
        assert tuple(r["column_name"] for r in cols) == STORED_CANDLE_COLUMNS
        kind = await conn.fetchval(
            "SELECT relkind::text FROM pg_class WHERE relname = $1", f"ohlcv_{tf}"
        )
        assert kind == "v"  # a continuous aggregate is a view over its hypertable too
    if on_timescaledb():
        assert await continuous_aggregates(conn) == sorted(f"ohlcv_{tf}" for tf in TIMEFRAMES)
        assert await OhlcvRefresher.detect(conn) is not None
    else:
        assert await continuous_aggregates(conn) == []
        assert await OhlcvRefresher.detect(conn) is None


@pytest.mark.parametrize("timeframe", list(TIMEFRAMES))
async def test_candles_equal_the_python_reference(conn: asyncpg.Connection, timeframe: str) -> None:
    batches = initial_batches()
    await write_as_the_writer(conn, batches)
    ticks = stored_ticks(batches)
    for instrument in ("EURUSD", "USDJPY"):
        got = await candles(conn, instrument, timeframe, FROM, TO)
        expected = reference_candles(ticks, instrument, timeframe)
        assert len(expected) >= 2
        assert_candles_equal([c.to_dict() | {"bucket": c.bucket} for c in got], expected)
    # The range is [from, to) on the bucket start.
    got = await candles(conn, "EURUSD", "1h", datetime.fromtimestamp(T0 / 1000, UTC),
                        datetime.fromtimestamp((T0 + HOUR_MS) / 1000, UTC))  # fmt: skip
    assert [c.bucket for c in got] == [datetime.fromtimestamp(T0 / 1000, UTC)]
    assert got[0].tick_count == 90


async def test_replaced_unit_and_backfill_show_at_once(conn: asyncpg.Connection) -> None:
    batches = initial_batches()
    await write_as_the_writer(conn, batches)
    redo = hour_batch("EURUSD", T0 + HOUR_MS, 17, seed=99, sha="b" * 64)  # unit re-fetched
    backfill = hour_batch("EURUSD", T0 - 24 * HOUR_MS, 33, seed=7)  # a day earlier
    await write_as_the_writer(conn, [redo, backfill])
    ticks = stored_ticks([*batches, redo, backfill])
    for tf in TIMEFRAMES:
        got = await candles(conn, "EURUSD", tf, FROM - timedelta(days=1), TO)
        assert_candles_equal([c.to_dict() | {"bucket": c.bucket} for c in got],
                             reference_candles(ticks, "EURUSD", tf))  # fmt: skip


async def test_flagged_ticks_count(conn: asyncpg.Connection) -> None:
    await write_as_the_writer(conn, [hour_batch("EURUSD", T0, 10, seed=1)])
    await conn.execute("UPDATE ticks SET flags = 1 WHERE ts = (SELECT min(ts) FROM ticks)")
    (c,) = await candles(conn, "EURUSD", "1d", FROM, TO)
    assert c.tick_count == 10


async def test_bad_arguments_are_clear(conn: asyncpg.Connection) -> None:
    with pytest.raises(UnknownTimeframeError, match=r"'15x'.*<count><unit>"):
        await candles(conn, "EURUSD", "15x", FROM, TO)
    with pytest.raises(UnknownTimeframeError, match=r"'1mo'.*calendar timeframes"):
        await candles(conn, "EURUSD", "1mo", FROM, TO)
    with pytest.raises(ValueError, match="empty range"):
        await candles(conn, "EURUSD", "1h", TO, FROM)
    with pytest.raises(ValueError, match="timezone-aware"):
        await candles(conn, "EURUSD", "1h", FROM.replace(tzinfo=None), TO)
    assert await candles(conn, "NOPE", "1h", FROM, TO) == []


@pytest.fixture
def cli_env(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", dsn)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_cli_candles_json_csv_and_table(conn: asyncpg.Connection, cli_env: None) -> None:
    from tickpipe_cli.main import app

    batches = initial_batches()
    await write_as_the_writer(conn, batches)
    expected = reference_candles(stored_ticks(batches), "EURUSD", "1h")
    runner = CliRunner()
    args = ["candles", "eur/usd", "--timeframe", "1h", "--from", "2021-03-01", "--to", "2021-03-03"]

    # The CLI runs its own event loop: run it in a thread.
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["bucket"] for r in rows] == [
        e["bucket"].isoformat().replace("+00:00", "Z") for e in expected
    ]
    assert [r["bid_open"] for r in rows] == [e["bid_open"] for e in expected]
    assert [r["tick_count"] for r in rows] == [90, 90, 90]

    result = await asyncio.to_thread(runner.invoke, app, [*args, "--csv"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == ",".join(CANDLE_COLUMNS)
    assert len(lines) == 4 and lines[1].startswith("EURUSD,2021-03-01T22:00:00Z,")
    assert f"{expected[0]['bid_open']:.5f}" in lines[1]

    result = await asyncio.to_thread(runner.invoke, app, args)
    assert result.exit_code == 0, result.output
    assert "EURUSD 1h" in result.stdout and "2021-03-01 22:00" in result.stdout

    # Any fixed timeframe: 15m rolled up from ohlcv_5m.
    result = await asyncio.to_thread(runner.invoke, app, [*args[:3], "15m", *args[4:], "--json"])
    assert result.exit_code == 0, result.output
    want = reference_candles(stored_ticks(batches), "EURUSD", "15m")
    assert [r["tick_count"] for r in json.loads(result.stdout)] == [c["tick_count"] for c in want]

    result = await asyncio.to_thread(runner.invoke, app, [*args[:3], "2q", *args[4:]])
    assert result.exit_code == 2
    assert "calendar timeframes (mo, q, y) have no fixed width" in re.sub(
        r"[\s│]+", " ", result.output
    )
