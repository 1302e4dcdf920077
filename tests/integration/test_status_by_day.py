"""Coverage per instrument and UTC day against the trading schedule: a synthetic EURUSD week in
the local PostgreSQL (weekend not expected, a missing Wednesday hour, a failed Thursday hour),
and ``tickpipe status --by-day`` over it; candle units summarised per period. (Candle kinds in
the database: ``test_writer_candles.py``.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import numpy as np
import pytest
from support.database import scratch_database
from support.storage import storage_mode
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.db.coverage import (
    coverage,
    daily_coverage,
    day_range,
    expected_hours,
    summarise_days,
    summarise_units,
    unit_range,
)
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.instruments.schedule import HOUR_MS, TradingSchedule, default_schedule_for
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_writer.failures import FailedUnit, record_failures
from tickpipe_writer.store import write
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

SUNDAY = datetime(2021, 2, 28, tzinfo=UTC)  # the week: Sun 2021-02-28 … Sun 2021-03-07 (UTC)
WEEK_END = SUNDAY + timedelta(days=8)
MISSING = datetime(2021, 3, 3, 10, tzinfo=UTC)  # Wednesday
FAILED = datetime(2021, 3, 4, 14, tzinfo=UTC)  # Thursday
EMPTY = datetime(2021, 3, 1, 3, tzinfo=UTC)  # Monday, stored as empty


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def hour_batch(instrument: str, hour: datetime, n: int) -> TickBatch:
    start = ms(hour)
    ts = start + np.arange(n, dtype=np.int64) * 1000
    bid = 120_000 + np.arange(n, dtype=np.int64)
    meta = BatchMeta(
        unit=Unit("dukascopy-bi5", instrument, "ticks", start, start + HOUR_MS),
        part=0,
        part_count=1,
        rows=n,
        price_scale=5,
        payload_sha256="c" * 64,
        request_id="r",
        fetched_at_ms=start,
        decoded_at_ms=start,
    )
    return TickBatch(meta, Ticks(ts, bid, bid + 2, np.full(n, 1.0), np.full(n, 1.0)))


def open_hours() -> list[datetime]:
    """The FX week's open hours: Sunday 22:00 → Friday 22:00, and Sunday 22:00 → midnight."""
    hours = [SUNDAY + timedelta(hours=h) for h in range(8 * 24)]
    return [h for h in hours if default_schedule_for("EURUSD").is_open(ms(h))]  # type: ignore[union-attr]


@pytest.fixture
async def dsn(infra: Settings) -> AsyncIterator[str]:
    async with scratch_database(infra) as url:
        c = await asyncpg.connect(url)
        try:
            await migrate(c, storage_mode())
            hours = [h for h in open_hours() if h not in (MISSING, FAILED)]
            await write(c, [hour_batch("EURUSD", h, 0 if h == EMPTY else 3) for h in hours])
            failed = Unit("dukascopy-bi5", "EURUSD", "ticks", ms(FAILED), ms(FAILED) + HOUR_MS)
            await record_failures(c, [FailedUnit(failed, "fetcher", "HTTP 503", 5, "r")])
            # No schedule known for XAUUSD: every hour of its day is expected.
            await write(c, [hour_batch("XAUUSD", datetime(2024, 1, 15, 14, tzinfo=UTC), 7)])
        finally:
            await c.close()
        yield url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(dsn)
    try:
        yield c
    finally:
        await c.close()


def test_open_hours_of_the_synthetic_week() -> None:
    hours = open_hours()
    assert len(hours) == 2 + 4 * 24 + 22 + 2
    assert hours[0] == SUNDAY.replace(hour=22) and hours[-1] == WEEK_END - timedelta(hours=1)


async def test_daily_coverage_of_the_week(conn: asyncpg.Connection) -> None:
    days = await daily_coverage(conn, "EURUSD", SUNDAY, WEEK_END, default_schedule_for)
    by_day = {d.day: d for d in days}
    assert list(by_day) == [date(2021, 2, 28) + timedelta(days=k) for k in range(8)]
    assert [d.expected for d in days] == [2, 24, 24, 24, 24, 22, 0, 2]
    assert all(d.scheduled for d in days)
    sat = by_day[date(2021, 3, 6)]
    assert (sat.expected, sat.stored, sat.missing, sat.complete) == (0, 0, 0, True)
    wed = by_day[date(2021, 3, 3)]
    assert (wed.stored, wed.missing, wed.missing_hours, wed.failed) == (23, 1, [10], 0)
    assert wed.ticks == 23 * 3 and not wed.complete
    thu = by_day[date(2021, 3, 4)]
    assert (thu.stored, thu.failed, thu.failed_hours, thu.missing) == (23, 1, [14], 0)
    mon = by_day[date(2021, 3, 1)]
    assert (mon.stored, mon.empty, mon.missing, mon.ticks, mon.complete) == (23, 1, 0, 69, True)
    fri = by_day[date(2021, 3, 5)]
    assert (fri.expected, fri.stored, fri.missing) == (22, 22, 0)
    assert sum(d.missing for d in days) == 1 and sum(d.failed for d in days) == 1


async def test_range_is_widened_to_whole_days(conn: asyncpg.Connection) -> None:
    days = await daily_coverage(
        conn, "EURUSD", MISSING, MISSING + timedelta(minutes=1), default_schedule_for
    )
    assert [(d.day, d.missing_hours) for d in days] == [(date(2021, 3, 3), [10])]


async def test_no_schedule_expects_every_hour(conn: asyncpg.Connection) -> None:
    (day,) = await daily_coverage(
        conn,
        "XAUUSD",
        datetime(2024, 1, 15, tzinfo=UTC),
        datetime(2024, 1, 16, tzinfo=UTC),
        default_schedule_for,
    )
    assert (day.scheduled, day.expected, day.stored, day.missing, day.ticks) == (
        False,
        24,
        1,
        23,
        7,
    )
    assert day.missing_hours == [*range(14), *range(15, 24)]


async def test_per_instrument_coverage_counts_failed(conn: asyncpg.Connection) -> None:
    eur = {c.instrument: c for c in await coverage(conn)}["EURUSD"]
    assert (eur.units_stored, eur.units_empty, eur.units_failed, eur.units_suspect_empty) == (
        119,
        1,
        1,
        0,
    )


def test_an_hour_open_for_part_of_it_is_expected() -> None:
    # Open Monday 09:30 → 17:10 UTC: hours 09 … 17 are expected, 08 and 18 are not.
    sched = TradingSchedule.weekly([(9 * HOUR_MS + 1_800_000, 17 * HOUR_MS + 600_000)])
    monday = ms(datetime(2021, 3, 1, tzinfo=UTC))
    got = expected_hours(sched, monday, monday + 24 * HOUR_MS)
    assert np.flatnonzero(got).tolist() == list(range(9, 18))
    (day,) = summarise_days(
        "X",
        monday,
        monday + 24 * HOUR_MS,
        sched,
        [(monday + 9 * HOUR_MS, "stored", 4), (monday + 3 * HOUR_MS, "suspect-empty", 0)],
    )
    assert (day.expected, day.stored, day.suspect_empty, day.missing, day.ticks) == (9, 1, 1, 8, 4)
    assert not day.complete


def test_candle_units_are_summarised_per_period() -> None:
    sched = default_schedule_for("EURUSD")
    # Second candles: hour units, reported per day like ticks (hours of day listed).
    units = unit_range("candles:1s:trade", datetime(2021, 3, 6, tzinfo=UTC),
                       datetime(2021, 3, 7, 23, tzinfo=UTC))  # fmt: skip
    sat, sun = summarise_units("EURUSD", "candles:1s:trade", units, sched, [])
    assert (sat.period, sat.expected, sun.expected) == ("day", 0, 2)
    assert sun.missing_hours == [22, 23] and sun.missing_units[0] == "2021-03-07T22:00:00Z"
    # Day candles: year units; a ledger row on a unit start counts, one elsewhere is ignored.
    units = unit_range("candles:1d:bid", datetime(2020, 5, 1, tzinfo=UTC),
                       datetime(2021, 1, 2, tzinfo=UTC))  # fmt: skip
    y2020, y2021 = summarise_units(
        "EURUSD", "candles:1d:bid", units, None,
        [(ms(datetime(2020, 1, 1, tzinfo=UTC)), "stored", 260),
         (ms(datetime(2021, 6, 1, tzinfo=UTC)), "stored", 9)],
    )  # fmt: skip
    assert (y2020.period, y2020.day, y2020.stored, y2020.rows, y2020.ticks) == (
        "year", date(2020, 1, 1), 1, 260, 0
    )  # fmt: skip
    assert (y2021.scheduled, y2021.expected, y2021.missing, y2021.stored) == (False, 1, 1, 0)
    d = y2021.to_dict()
    assert (d["kind"], d["day"], d["missing_units"], d["complete"]) == (
        "candles:1d:bid", "2021-01-01", ["2021-01-01T00:00:00Z"], False
    )  # fmt: skip


def test_day_range() -> None:
    a = datetime(2021, 3, 1, 22, 5, tzinfo=UTC)
    assert day_range(a, a + timedelta(hours=3)) == (
        datetime(2021, 3, 1, tzinfo=UTC),
        datetime(2021, 3, 3, tzinfo=UTC),
    )
    assert day_range(SUNDAY, WEEK_END) == (SUNDAY, WEEK_END)
    with pytest.raises(ValueError, match="empty range"):
        day_range(a, a)
    with pytest.raises(ValueError, match="timezone-aware"):
        day_range(a.replace(tzinfo=None), a)


@pytest.fixture
def cli_env(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", dsn)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_cli_status_by_day(cli_env: None) -> None:
    from tickpipe_cli.main import app

    runner = CliRunner()
    # The CLI runs its own event loop: run it in a thread.
    result = await asyncio.to_thread(runner.invoke, app, ["status", "--by-day", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    eur = {r["day"]: r for r in rows if r["instrument"] == "EURUSD"}
    assert list(eur) == [(date(2021, 2, 28) + timedelta(days=k)).isoformat() for k in range(8)]
    assert eur["2021-03-03"]["missing_hours"] == [10] and eur["2021-03-03"]["missing"] == 1
    assert eur["2021-03-04"]["failed_hours"] == [14] and eur["2021-03-04"]["failed"] == 1
    assert eur["2021-03-06"]["expected"] == 0 and eur["2021-03-06"]["complete"] is True
    (xau,) = [r for r in rows if r["instrument"] == "XAUUSD"]
    assert xau["scheduled"] is False and xau["expected"] == 24 and xau["missing"] == 23

    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["status", "eur/usd", "--by-day", "--from", "2021-03-03", "--to", "2021-03-05"],
    )
    assert result.exit_code == 0, result.output
    assert "EURUSD ticks by UTC day" in result.stdout
    assert "EURUSD ticks: 48 units expected, 1 missing, 1 failed" in result.stdout
    assert "missing 10" in result.stdout and "failed 14" in result.stdout
    assert "2021-03-02" not in result.stdout and "2021-03-05" not in result.stdout
    assert "XAUUSD" not in result.stdout

    result = await asyncio.to_thread(runner.invoke, app, ["status", "xauusd", "--by-day"])
    assert result.exit_code == 0, result.output
    assert "no trading schedule known for XAUUSD" in result.stdout

    result = await asyncio.to_thread(runner.invoke, app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    summary = {r["instrument"]: r for r in json.loads(result.stdout)}
    assert summary["EURUSD"]["units_failed"] == 1
    assert summary["EURUSD"]["units_suspect_empty"] == 0
    assert summary["EURUSD"]["units_stored"] == 119 and summary["EURUSD"]["units_empty"] == 1
    assert summary["EURUSD"]["ticks"] == 119 * 3 and summary["EURUSD"]["first_tick"]

    result = await asyncio.to_thread(runner.invoke, app, ["status", "--from", "2021-03-03"])
    assert result.exit_code == 2
