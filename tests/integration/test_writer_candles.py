"""The writer and the read side with source candles, against a real PostgreSQL: the ``candles``
table (exact prices, NULL volumes, flags), unit replace and redelivered parts per candle series,
``instruments`` (largest scale, asset class, source codes), ``suspect-empty`` units and their
progress outcome, failed candle units, coverage per kind, ``tickpipe candles --source-candles``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import pytest
from pydantic import SecretStr
from support.batches import unit_meta
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.db.coverage import coverage, daily_coverage, status_report
from tickpipe_shared.db.ohlcv import source_candle_sides, source_candles
from tickpipe_shared.instruments.schedule import default_schedule_for
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.units import HOUR_MS, Unit, parse_unit_key, plan_units
from tickpipe_shared.wire.batch import CandleBatch, TickBatch, encode_batch
from tickpipe_shared.wire.progress import decode_progress
from tickpipe_writer.failures import FailedUnit, record_failures
from tickpipe_writer.stage import Writer
from tickpipe_writer.store import write
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

MIN = 60_000
DAY = 24 * HOUR_MS
D0 = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp() * 1000)  # Monday
NAN = float("nan")


def day_batch(
    n: int,
    *,
    start: int = D0,
    kind: str = "candles:1m:bid",
    part: int = 0,
    parts: int = 1,
    first: int = 0,
    sha: str = "a" * 64,
    scale: int = 5,
    volume: float = 1.25,
    instrument: str = "EURUSD",
    source: str = "dukascopy-json",
    source_code: str = "EUR-USD",
    asset_class: str = "fx",
    suspect_empty: bool = False,
    unit_end: int | None = None,
) -> CandleBatch:
    """``n`` one-minute candles from minute ``first`` of the unit at ``start``; open
    ``112_300 + minute`` points, high +9, low -4, close +3."""
    minute = first + np.arange(n, dtype=np.int64)
    o = 112_300 + minute
    volumes = np.full(n, volume)
    candles = Candles(start + minute * MIN, o, o + 9, o - 4, o + 3, volumes)
    meta = unit_meta(
        Unit(source, instrument, kind, start, unit_end or start + DAY),
        n,
        scale,
        part=part,
        part_count=parts,
        sha=sha,
        request_id="r-candles",
        fetched_at_ms=start,
        volume_unit="none" if np.isnan(volume) else "millions",
        source_code=source_code,
        asset_class=asset_class,
        suspect_empty=suspect_empty,
        columns=list(CANDLE_COLUMNS),
    )
    return CandleBatch(meta, candles)


async def series(conn: asyncpg.Connection, kind: str = "candles:1m:bid") -> list[Any]:
    _, tf, side = kind.split(":")
    return list(
        await conn.fetch(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint AS ms, open, high, low, close, "
            "volume, flags FROM candles WHERE instrument = 'EURUSD' AND timeframe = $1 "
            "AND side = $2 ORDER BY ts",
            tf,
            side,
        )
    )


async def ledger(
    conn: asyncpg.Connection, kind: str = "candles:1m:bid", start: int = D0
) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT * FROM ingest_log WHERE kind = $1 AND unit_start = $2",
        kind,
        datetime.fromtimestamp(start / 1000, UTC),
    )
    assert row is not None
    return row


async def test_candles_are_stored_exactly(conn: asyncpg.Connection) -> None:
    b = day_batch(3).with_flags(np.array([0, 2, 0], dtype=np.uint16), {"duplicate": 1}, D0)
    no_volume = day_batch(2, kind="candles:1m:ask", volume=NAN, sha="b" * 64)
    await write(conn, [b, no_volume])
    rows = await series(conn)
    assert [r["ms"] for r in rows] == [D0, D0 + MIN, D0 + 2 * MIN]
    assert [f"{r['open']:.5f}" for r in rows] == ["1.12300", "1.12301", "1.12302"]
    assert (rows[0]["high"], rows[0]["low"], rows[0]["close"]) == (1.12309, 1.12296, 1.12303)
    assert [(r["volume"], r["flags"]) for r in rows] == [(1.25, 0), (1.25, 2), (1.25, 0)]
    ask = await series(conn, "candles:1m:ask")
    assert [r["volume"] for r in ask] == [None, None]  # NaN: the source gives none
    log = await ledger(conn)
    assert (log["state"], log["rows"], log["unit_end"], log["source"]) == (
        "stored", 3, datetime(2021, 3, 2, tzinfo=UTC), "dukascopy-json"
    )  # fmt: skip
    assert json.loads(log["quality"]) == {"duplicate": 1}
    assert await conn.fetchval("SELECT count(*) FROM ticks") == 0


async def test_unit_replace_touches_only_its_series_and_window(conn: asyncpg.Connection) -> None:
    await write(
        conn,
        [
            day_batch(5),
            day_batch(5, kind="candles:1m:ask", sha="b" * 64),
            day_batch(5, start=D0 + DAY, sha="c" * 64),  # the next day's unit
            day_batch(2, kind="candles:1h:bid", start=D0, unit_end=D0 + 31 * DAY, sha="d" * 64),
        ],
    )
    await write(conn, [day_batch(5)])  # redelivered: replaces itself
    assert len(await series(conn)) == 10
    await write(conn, [day_batch(2, first=100, sha="e" * 64)])  # re-fetched, other payload
    rows = await series(conn)
    assert [r["ms"] for r in rows] == [D0 + 100 * MIN, D0 + 101 * MIN] + [
        D0 + DAY + k * MIN for k in range(5)
    ]
    assert len(await series(conn, "candles:1m:ask")) == 5
    assert len(await series(conn, "candles:1h:bid")) == 2
    assert (await ledger(conn))["payload_sha256"] == "e" * 64


async def test_parts_and_redelivered_suffix_do_not_duplicate(conn: asyncpg.Connection) -> None:
    p = [day_batch(4, first=4 * i, part=i, parts=3) for i in range(3)]
    await write(conn, [p[0], p[1]])
    assert (await ledger(conn))["state"] == "partial"
    work = await write(conn, [p[2], p[1], p[2]])
    assert work.duplicates == 2 and (await ledger(conn))["state"] == "stored"
    assert len(await series(conn)) == 12
    await write(conn, [*p, *p])  # a replay of every part, twice, in one transaction
    assert len(await series(conn)) == 12


async def test_a_candle_twice_in_one_unit_is_refused(conn: asyncpg.Connection) -> None:
    b = day_batch(2)
    twice = Candles(*(np.concatenate([getattr(b.candles, c)] * 2) for c in
                      ("ts_ms", "open", "high", "low", "close", "volume")))  # fmt: skip
    bad = CandleBatch(replace(b.meta, rows=4), twice)
    with pytest.raises(asyncpg.UniqueViolationError):
        await write(conn, [bad])
    assert await conn.fetchval("SELECT count(*) FROM ingest_log") == 0


async def test_instruments_keep_the_largest_scale_asset_class_and_source_codes(
    conn: asyncpg.Connection,
) -> None:
    async def instrument(name: str) -> asyncpg.Record:
        row = await conn.fetchrow("SELECT * FROM instruments WHERE instrument = $1", name)
        assert row is not None
        return row

    await write(conn, [day_batch(1, scale=5)])
    row = await instrument("EURUSD")
    assert (row["price_scale"], row["asset_class"]) == (5, "fx")
    assert json.loads(row["source_codes"]) == {"dukascopy-json": "EUR-USD"}
    # Polygon derives the scale from the prices: 6 here, 4 for a coarser unit later.
    poly: dict[str, Any] = {"source": "polygon", "source_code": "C:EURUSD", "asset_class": "",
            "kind": "candles:1d:trade", "unit_end": D0 + 365 * DAY}  # fmt: skip
    await write(conn, [day_batch(1, scale=6, sha="p" * 64, **poly)])
    await write(conn, [day_batch(1, scale=4, sha="q" * 64, start=D0 + 400 * DAY, **poly)])
    row = await instrument("EURUSD")
    assert (row["price_scale"], row["asset_class"]) == (6, "fx")  # kept, not flapping
    assert json.loads(row["source_codes"]) == {"dukascopy-json": "EUR-USD", "polygon": "C:EURUSD"}
    # Prices stored at scale 4 and 5 are exact at 6 as well.
    assert [f"{r['open']:.6f}" for r in await series(conn, "candles:1d:trade")] == [
        "0.112300",
        "11.230000",
    ]
    # An empty unit of an unknown instrument and unknown scale (Deriv) adds no row; a later
    # unit with prices does, with its asset class and code.
    deriv: dict[str, Any] = {"instrument": "R50", "source": "deriv", "source_code": "R_50",
             "asset_class": "synthetic", "kind": "candles:1m:mid"}  # fmt: skip
    await write(conn, [day_batch(0, scale=-1, **deriv)])
    assert await conn.fetchval("SELECT count(*) FROM instruments WHERE instrument = 'R50'") == 0
    await write(conn, [day_batch(2, scale=4, start=D0 + DAY, **deriv)])
    row = await instrument("R50")
    assert (row["price_scale"], row["asset_class"]) == (4, "synthetic")
    assert json.loads(row["source_codes"]) == {"deriv": "R_50"}
    # An empty unit of a known instrument keeps what is known.
    await write(conn, [day_batch(0, scale=-1, start=D0 + 2 * DAY, **deriv)])
    assert (await instrument("R50"))["price_scale"] == 4


async def test_deriv_ticks_without_volume_store_null(conn: asyncpg.Connection) -> None:
    n = 3
    t = Ticks(D0 + np.arange(n, dtype=np.int64) * 2000, np.full(n, 251_234, dtype=np.int64),
              np.full(n, 251_234, dtype=np.int64), np.full(n, NAN), np.full(n, NAN))  # fmt: skip
    meta = unit_meta(
        Unit("deriv", "R50", "ticks", D0, D0 + HOUR_MS),
        n,
        4,
        sha="t" * 64,
        request_id="r",
        fetched_at_ms=D0,
        volume_unit="none",
        source_code="R_50",
        asset_class="synthetic",
    )
    await write(conn, [TickBatch(meta, t)])
    rows = await conn.fetch("SELECT bid_points, ask_points, bid_volume, ask_volume FROM ticks")
    assert [tuple(r) for r in rows] == [(251234, 251234, None, None)] * 3


@dataclass
class Rec:
    """A consumed record, as the runtime hands it to the writer."""

    value: bytes | None
    topic: str = "validated-batches"
    partition: int = 0
    offset: int = 0
    key: bytes | None = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


async def test_suspect_empty_unit_ledger_state_and_progress_outcome(
    dsn: str, infra: Settings, conn: asyncpg.Connection
) -> None:
    settings = infra.model_copy(update={"database_url": SecretStr(dsn)})
    failures: list[BaseException] = []

    def failure(record: InRecord, error: BaseException) -> OutRecord:
        failures.append(error)
        return OutRecord("failures", record.key, str(error).encode())

    writer = Writer(settings, failure)
    suspect = day_batch(0, suspect_empty=True, sha="s" * 64)
    empty = day_batch(0, start=D0 + 5 * DAY, sha="z" * 64)  # a Saturday: plausibly empty
    stored = day_batch(3, start=D0 + DAY, sha="y" * 64)
    bad_kind = encode_batch(day_batch(1, kind="candles:7x:bid"))
    out = await writer.process(
        [Rec(encode_batch(suspect)), Rec(encode_batch(empty)), Rec(encode_batch(stored)),
         Rec(bad_kind)]
    )  # fmt: skip
    assert [type(e).__name__ for e in failures] == ["KindError"]
    events = [decode_progress(o.value) for o in out if o.topic != "failures"]
    assert [(e.unit_key, e.outcome, e.rows) for e in events] == [  # type: ignore[union-attr]
        (suspect.meta.unit.key, "suspect-empty", 0),
        (empty.meta.unit.key, "empty", 0),
        (stored.meta.unit.key, "stored", 3),
    ]
    states = await conn.fetch("SELECT unit_start, state FROM ingest_log ORDER BY unit_start")
    assert [r["state"] for r in states] == ["suspect-empty", "stored", "empty"]
    # A failure reported later for the suspect unit does not replace the verdict.
    await record_failures(conn, [FailedUnit(suspect.meta.unit, "fetcher", "HTTP 503", 5, "r")])
    assert (await ledger(conn))["state"] == "suspect-empty"
    # The unit written again with data: stored.
    await write(conn, [day_batch(2, sha="n" * 64)])
    assert (await ledger(conn))["state"] == "stored"
    assert writer._pool is not None
    await writer._pool.close()


async def test_failed_candle_units_get_their_span(conn: asyncpg.Connection) -> None:
    keys = [
        "dukascopy-json|EURUSD|candles:1m:bid|2021-03-02T00:00:00Z",
        "dukascopy-bi5|EURUSD|candles:1h:ask|2021-02-01T00:00:00Z",
    ]
    units = [parse_unit_key(k) for k in keys]
    assert all(units)
    await record_failures(
        conn, [FailedUnit(u, "decoder", "bad file", 1, "r") for u in units if u is not None]
    )
    rows = await conn.fetch(
        "SELECT kind, unit_start, unit_end, state FROM ingest_log ORDER BY kind"
    )
    assert [(r["kind"], r["unit_start"], r["unit_end"], r["state"]) for r in rows] == [
        ("candles:1h:ask", datetime(2021, 2, 1, tzinfo=UTC), datetime(2021, 3, 1, tzinfo=UTC),
         "failed"),
        ("candles:1m:bid", datetime(2021, 3, 2, tzinfo=UTC), datetime(2021, 3, 3, tzinfo=UTC),
         "failed"),
    ]  # fmt: skip


async def test_coverage_per_kind_and_period(conn: asyncpg.Connection) -> None:
    # 1m bid candles: Monday, Tuesday stored, Wednesday suspect-empty, Thursday failed, Friday
    # missing, Saturday empty (not expected: FX is closed), Sunday missing but only partly open.
    await write(
        conn,
        [
            day_batch(3),
            day_batch(2, start=D0 + DAY, sha="b" * 64),
            day_batch(0, start=D0 + 2 * DAY, suspect_empty=True, sha="c" * 64),
            day_batch(0, start=D0 + 5 * DAY, sha="d" * 64),
        ],
    )
    thursday = Unit("dukascopy-json", "EURUSD", "candles:1m:bid", D0 + 3 * DAY, D0 + 4 * DAY)
    await record_failures(conn, [FailedUnit(thursday, "fetcher", "HTTP 503", 5, "r")])
    # 1h ask candles: March stored (a month unit).
    await write(conn, [day_batch(4, kind="candles:1h:ask", unit_end=D0 + 31 * DAY, sha="e" * 64)])

    covered = {c.kind: c for c in await coverage(conn, "EURUSD")}
    assert list(covered) == ["candles:1h:ask", "candles:1m:bid"]
    bid = covered["candles:1m:bid"]
    assert (bid.units_stored, bid.units_empty, bid.units_suspect_empty, bid.units_failed) == (
        2, 1, 1, 1
    )  # fmt: skip
    assert (bid.rows, bid.ticks, bid.first_tick) == (5, 0, None)
    assert bid.first_row == datetime(2021, 3, 1, tzinfo=UTC)
    assert bid.last_row == datetime(2021, 3, 2, 0, 1, tzinfo=UTC)
    assert bid.to_dict()["kind"] == "candles:1m:bid"
    assert [c.kind for c in await coverage(conn, kind="candles:1h:ask")] == ["candles:1h:ask"]

    week = await daily_coverage(
        conn, "EURUSD", datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 3, 8, tzinfo=UTC),
        default_schedule_for, kind="candles:1m:bid",
    )  # fmt: skip
    assert [d.day.day for d in week] == list(range(1, 8))
    assert [d.expected for d in week] == [1, 1, 1, 1, 1, 0, 1]
    assert [d.period for d in week] == ["day"] * 7
    assert [(d.stored, d.suspect_empty, d.failed, d.empty, d.missing) for d in week] == [
        (1, 0, 0, 0, 0), (1, 0, 0, 0, 0), (0, 1, 0, 0, 0), (0, 0, 1, 0, 0), (0, 0, 0, 0, 1),
        (0, 0, 0, 1, 0), (0, 0, 0, 0, 1),
    ]  # fmt: skip
    assert week[4].missing_units == ["2021-03-05T00:00:00Z"] and week[4].missing_hours == []
    assert week[3].failed_units == ["2021-03-04T00:00:00Z"]
    assert [d.complete for d in week] == [True, True, False, False, False, True, False]
    assert (week[0].rows, week[0].ticks) == (3, 0)

    # Month units: one row per month; February has no ledger row and is expected.
    months = await daily_coverage(
        conn, "EURUSD", datetime(2021, 2, 10, tzinfo=UTC), datetime(2021, 3, 5, tzinfo=UTC),
        default_schedule_for, kind="candles:1h:ask",
    )  # fmt: skip
    assert [(m.period, m.day.isoformat(), m.expected, m.stored, m.missing) for m in months] == [
        ("month", "2021-02-01", 1, 0, 1),
        ("month", "2021-03-01", 1, 1, 0),
    ]
    assert months[0].missing_units == ["2021-02-01T00:00:00Z"]

    report = await status_report(conn, default_schedule_for, "EURUSD", by_period=True)
    assert {(r["kind"], r["period"]) for r in report} == {
        ("candles:1h:ask", "month"),
        ("candles:1m:bid", "day"),
    }
    # From the first unit's start to the last unit's end: Monday to Saturday.
    assert [r["day"] for r in report if r["kind"] == "candles:1m:bid"] == [
        f"2021-03-0{d}" for d in range(1, 7)
    ]
    summary = await status_report(conn, default_schedule_for)
    assert [(r["instrument"], r["kind"]) for r in summary] == [
        ("EURUSD", "candles:1h:ask"), ("EURUSD", "candles:1m:bid")
    ]  # fmt: skip
    # Nothing stored for an instrument and kind: every expected unit missing, given a range.
    nothing = await status_report(
        conn, default_schedule_for, "GBPUSD", "candles:1d:bid", by_period=True,
        from_=datetime(2020, 6, 1, tzinfo=UTC), to=datetime(2021, 2, 1, tzinfo=UTC),
    )  # fmt: skip
    assert [(r["day"], r["period"], r["missing"]) for r in nothing] == [
        ("2020-01-01", "year", 1),
        ("2021-01-01", "year", 1),
    ]


def test_unit_ranges_of_the_coverage_match_the_planner() -> None:
    from tickpipe_shared.db.coverage import unit_range

    lo, hi = datetime(2021, 3, 1, 5, tzinfo=UTC), datetime(2021, 3, 2, 1, tzinfo=UTC)
    assert len(unit_range("ticks", lo, hi)) == 48  # widened to whole days
    days = unit_range("candles:1m:bid", lo, hi)
    assert days == [(u.start_ms, u.end_ms) for u in plan_units("s", "X", "candles:1m:bid",
                                                                D0, D0 + 2 * DAY)]  # fmt: skip
    assert len(unit_range("candles:1d:mid", lo, hi)) == 1


async def test_reading_source_candles(conn: asyncpg.Connection) -> None:
    await write(conn, [day_batch(5), day_batch(3, kind="candles:1m:ask", sha="b" * 64)])
    got = await source_candles(
        conn, "EURUSD", "60s", "bid", datetime(2021, 3, 1, 0, 1, tzinfo=UTC),
        datetime(2021, 3, 1, 0, 4, tzinfo=UTC),
    )  # fmt: skip
    assert [(c.ts.minute, c.timeframe, c.side, f"{c.open:.5f}") for c in got] == [
        (1, "1m", "bid", "1.12301"),
        (2, "1m", "bid", "1.12302"),
        (3, "1m", "bid", "1.12303"),
    ]
    assert got[0].to_dict()["ts"] == "2021-03-01T00:01:00Z"
    assert await source_candle_sides(conn, "EURUSD") == [("1m", "ask"), ("1m", "bid")]
    with pytest.raises(ValueError, match="side 'spread'"):
        await source_candles(conn, "EURUSD", "1m", "spread", datetime(2021, 3, 1, tzinfo=UTC),
                             datetime(2021, 3, 2, tzinfo=UTC))  # fmt: skip


@pytest.fixture
def cli_env(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", dsn)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_cli_candles_source_candles(conn: asyncpg.Connection, cli_env: None) -> None:
    from tickpipe_cli.main import app

    deriv: dict[str, Any] = {"instrument": "R50", "source": "deriv", "source_code": "R_50",
             "asset_class": "synthetic", "kind": "candles:1m:mid", "volume": NAN}  # fmt: skip
    await write(conn, [day_batch(3), day_batch(3, kind="candles:1m:ask", sha="b" * 64),
                       day_batch(2, scale=3, **deriv)])  # fmt: skip
    runner = CliRunner()
    span = ["--from", "2021-03-01", "--to", "2021-03-02", "-t", "1m", "--source-candles"]

    result = await asyncio.to_thread(runner.invoke, app, ["candles", "R_50", *span, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["ts"], r["side"], r["open"], r["volume"]) for r in rows] == [
        ("2021-03-01T00:00:00Z", "mid", 112.3, None),
        ("2021-03-01T00:01:00Z", "mid", 112.301, None),
    ]
    result = await asyncio.to_thread(
        runner.invoke, app, ["candles", "eur/usd", *span, "--side", "ask", "--csv"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "instrument,timeframe,side,ts,open,high,low,close,volume,flags"
    assert lines[1].startswith("EURUSD,1m,ask,2021-03-01T00:00:00Z,1.12300,1.12309,1.12296,")
    assert len(lines) == 4
    # Two sides stored and none chosen: say which exist.
    result = await asyncio.to_thread(runner.invoke, app, ["candles", "EURUSD", *span])
    assert result.exit_code == 2
    assert "sides: ask, bid" in result.output
    result = await asyncio.to_thread(runner.invoke, app, ["candles", "EURUSD", *span, "--side",
                                                          "bid"])  # fmt: skip
    assert result.exit_code == 0 and "EURUSD 1m bid source candles" in result.stdout
    # --side belongs to --source-candles.
    result = await asyncio.to_thread(
        runner.invoke, app, ["candles", "EURUSD", *span[:-1], "--side", "bid"]
    )
    assert result.exit_code == 2
