"""``tickpipe export`` against the local PostgreSQL: ticks, OHLCV candles and source candles to
CSV and Parquet, one file per month with a sidecar, read back and compared with what is stored;
``--verify``.

Ticks are stored with the writer's own ``store.write`` over three months (and outside the
exported range, and for another instrument, which must not leak in).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest
from support.database import scratch_database
from support.golden_db import points_text
from support.ohlcv import hour_batch
from support.storage import storage_mode, write_as_the_writer
from tickpipe_cli import export as ex
from tickpipe_cli.export import writers
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import candles
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, CandleBatch, TickBatch
from tickpipe_writer.store import write
from typer.testing import CliRunner

pytestmark = pytest.mark.integration

FROM = datetime(2021, 1, 15, tzinfo=UTC)
TO = datetime(2021, 3, 20, tzinfo=UTC)


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[arg-type,misc]


def batches() -> list[TickBatch]:
    """EURUSD (scale 5): hours in Jan (one before FROM), across the Jan/Feb boundary, Feb, Mar
    (one after TO, one from the JSON source); USDJPY (scale 3) in Feb."""
    hours = [
        (_ms(2021, 1, 10, 9), "dukascopy-bi5"),  # before FROM: not exported
        (_ms(2021, 1, 20, 9), "dukascopy-bi5"),
        (_ms(2021, 1, 20, 10), "dukascopy-bi5"),
        (_ms(2021, 1, 31, 23), "dukascopy-bi5"),
        (_ms(2021, 2, 1, 0), "dukascopy-bi5"),
        (_ms(2021, 2, 14, 12), "dukascopy-bi5"),
        (_ms(2021, 3, 3, 7), "dukascopy-bi5"),
        (_ms(2021, 3, 19, 23), "dukascopy-json"),
        (_ms(2021, 3, 25, 8), "dukascopy-bi5"),  # after TO: not exported
    ]
    out = []
    for i, (start, source) in enumerate(hours):
        b = hour_batch("EURUSD", start, 400 + 37 * i, seed=100 + i)
        unit = dataclasses.replace(b.meta.unit, source=source)
        out.append(dataclasses.replace(b, meta=dataclasses.replace(b.meta, unit=unit)))
    out.append(hour_batch("USDJPY", _ms(2021, 2, 14, 12), 300, seed=7, scale=3,
                          first_point=110_123))  # fmt: skip
    return out


def expected_tick_rows(bs: list[TickBatch], month: str) -> list[list[str]]:
    """The CSV rows the export must hold for EURUSD in ``month`` ∩ [FROM, TO), from the points."""
    rows = []
    for b in bs:
        if b.meta.unit.instrument != "EURUSD":
            continue
        t, s = b.ticks, b.meta.price_scale
        for i in range(len(t)):
            ms = int(t.ts_ms[i])
            ts = datetime.fromtimestamp(ms / 1000, UTC)
            if not (FROM <= ts < TO) or f"{ts:%Y-%m}" != month:
                continue
            rows.append(
                [
                    ex.iso_ms(ms),
                    str(Decimal(int(t.bid[i])).scaleb(-s)),
                    str(Decimal(int(t.ask[i])).scaleb(-s)),
                    repr(float(t.bid_volume[i])),
                    repr(float(t.ask_volume[i])),
                    "0",
                ]
            )
    return sorted(rows)


@pytest.fixture
async def dsn(infra: Settings) -> AsyncIterator[str]:
    async with scratch_database(infra, prefix="tp_export") as url:
        yield url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(dsn)
    try:
        await migrate(c, storage_mode())
        await write_as_the_writer(c, batches())
        yield c
    finally:
        await c.close()


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def sidecar(data: Path) -> dict[str, Any]:
    return json.loads(data.with_name(data.name + ".json").read_text())  # type: ignore[no-any-return]


MONTHS = ("2021-01", "2021-02", "2021-03")


def leftover_temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


async def test_ticks_csv_equal_the_stored_ticks(conn: asyncpg.Connection, tmp_path: Path) -> None:
    result = await ex.export(conn, "EURUSD", FROM, TO, tmp_path, chunk_rows=97)
    base = tmp_path / "EURUSD" / "ticks" / "2021"
    assert [f.path for f in result.files] == [base / f"{m}.csv" for m in MONTHS]
    assert sorted(p.name for p in base.iterdir()) == sorted(
        [f"{m}.csv" for m in MONTHS] + [f"{m}.csv.json" for m in MONTHS]
    )
    bs = batches()
    for m in MONTHS:
        rows = read_csv(base / f"{m}.csv")
        assert rows[0] == ["ts", "bid", "ask", "bid_volume", "ask_volume", "flags"]
        expected = expected_tick_rows(bs, m)
        assert rows[1:] == expected, m
        # and equal to the database's rows, read independently
        y, mo = map(int, m.split("-"))
        lo = max(FROM, datetime(y, mo, 1, tzinfo=UTC))
        hi = min(TO, datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC))
        db = await conn.fetch(
            "SELECT ts, bid_points, ask_points FROM ticks WHERE instrument='EURUSD' "
            "AND ts >= $1 AND ts < $2 ORDER BY ts",
            lo,
            hi,
        )
        assert [(r[1], r[2]) for r in rows[1:]] == [
            (points_text(d["bid_points"], 5), points_text(d["ask_points"], 5)) for d in db
        ]
        side = sidecar(base / f"{m}.csv")
        assert side["schema_version"] == 1 and side["format"] == "csv"
        assert (side["instrument"], side["kind"], side["timeframe"]) == ("EURUSD", "ticks", None)
        assert side["rows"] == len(expected) == len(db)
        assert (side["first_ts"], side["last_ts"]) == (expected[0][0], expected[-1][0])
        assert side["range"] == {"from": ex.iso_ms(lo), "to": ex.iso_ms(hi)}
        assert side["sha256"] == hashlib.sha256((base / f"{m}.csv").read_bytes()).hexdigest()
        assert side["columns"] == rows[0] and side["price_scale"] == 5
        assert side["source"] == (
            ["dukascopy-bi5", "dukascopy-json"] if m == "2021-03" else ["dukascopy-bi5"]
        )
        assert side["created_at"].endswith("Z") and side["tickpipe_version"]
    assert sidecar(base / "2021-01.csv")["range"]["from"] == "2021-01-15T00:00:00.000Z"
    assert sidecar(base / "2021-03.csv")["range"]["to"] == "2021-03-20T00:00:00.000Z"
    assert all(c.ok for c in ex.verify(tmp_path)), ex.verify(tmp_path)

    # Re-running overwrites, byte for byte the same data (deterministic order).
    before = {m: sidecar(base / f"{m}.csv")["sha256"] for m in MONTHS}
    await ex.export(conn, "EURUSD", FROM, TO, tmp_path)
    assert {m: sidecar(base / f"{m}.csv")["sha256"] for m in MONTHS} == before
    assert not leftover_temps(tmp_path)


async def test_ticks_parquet_equal_the_stored_ticks(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writers, "ROW_GROUP_ROWS", 500)
    await ex.export(conn, "EURUSD", FROM, TO, tmp_path, fmt="parquet", chunk_rows=128)
    base = tmp_path / "EURUSD" / "ticks" / "2021"
    bs = batches()
    for m in MONTHS:
        path = base / f"{m}.parquet"
        pf = pq.ParquetFile(path)
        assert pf.num_row_groups >= 2
        assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
        assert pf.schema_arrow.metadata[b"tickpipe.price_scale"] == b"5"
        assert [str(f.type) for f in pf.schema_arrow] == [
            "timestamp[ms, tz=UTC]", "double", "double", "double", "double", "int16"
        ]  # fmt: skip
        table = pf.read().to_pylist()
        got = [
            [ex.iso_ms(r["ts"]), f"{r['bid']:.5f}", f"{r['ask']:.5f}", repr(r["bid_volume"]),
             repr(r["ask_volume"]), str(r["flags"])]
            for r in table
        ]  # fmt: skip
        assert got == expected_tick_rows(bs, m)
        side = sidecar(path)
        assert side["rows"] == len(table) and side["format"] == "parquet"
        assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert side["first_ts"] == got[0][0] and side["last_ts"] == got[-1][0]
    assert all(c.ok for c in ex.verify(tmp_path))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_candles_1h_equal_the_stored_candles(
    conn: asyncpg.Connection, tmp_path: Path, fmt: str
) -> None:
    await ex.export(conn, "EURUSD", FROM, TO, tmp_path, kind="candles", timeframe="1h", fmt=fmt)
    base = tmp_path / "EURUSD" / "candles-1h" / "2021"
    total = 0
    for m in MONTHS:
        path = base / f"{m}.{fmt}"
        side = sidecar(path)
        lo, hi = (datetime.fromisoformat(side["range"][k].replace("Z", "+00:00"))
                  for k in ("from", "to"))  # fmt: skip
        db = [c.to_dict() for c in await candles(conn, "EURUSD", "1h", lo, hi)]
        if fmt == "csv":
            rows = read_csv(path)
            assert rows[0] == side["columns"] and rows[0][0] == "bucket"
            body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
        else:
            body = pq.read_table(path).to_pylist()
            for r in body:
                r["bucket"] = ex.iso_ms(r["bucket"])
                for k in r:
                    if k.startswith(("bid_", "ask_", "mid_")) and not k.endswith("volume"):
                        r[k] = f"{r[k]:.{6 if k.startswith('mid') else 5}f}"
                    elif k.endswith("volume"):
                        r[k] = repr(r[k])
                r["tick_count"] = str(r["tick_count"])
        assert len(body) == len(db) == side["rows"] > 0
        for got, want in zip(body, db, strict=True):
            assert got["bucket"] == want["bucket"].replace("Z", ".000Z")
            assert got["bid_open"] == f"{want['bid_open']:.5f}"
            assert got["ask_low"] == f"{want['ask_low']:.5f}"
            assert got["mid_close"] == f"{want['mid_close']:.6f}"
            assert Decimal(got["mid_close"]) * 2 == Decimal(f"{want['bid_close']:.5f}") + Decimal(
                f"{want['ask_close']:.5f}"
            )
            assert got["tick_count"] == str(want["tick_count"])
            # Volume sums are float8 sums: the export's query and this one may add in another
            # order (TimescaleDB's real-time aggregates), so equal to 1e-9 relative.
            assert math.isclose(float(got["bid_volume"]), want["bid_volume"], rel_tol=1e-9)
        assert side["timeframe"] == "1h" and side["kind"] == "candles"
        total += side["rows"]
    assert total == 7  # the seven EURUSD hours inside [FROM, TO)
    assert all(c.ok for c in ex.verify(tmp_path))


def source_candle_units() -> list[CandleBatch]:
    """EURUSD 1m candles (Dukascopy day units, every third volume NaN, a flag on the third
    candle): bid on Feb 26, Mar 1 and Apr 26 (after TO); ask on Feb 1 (another series)."""
    out = []
    days = ((2, 26, "bid"), (3, 1, "bid"), (2, 1, "ask"), (4, 26, "bid"))
    for i, (month, day, side) in enumerate(days):
        start = _ms(2021, month, day)
        n = 5 + i
        o = 112_000 + np.arange(n, dtype=np.int64) * 3
        vol = np.where(np.arange(n) % 3 == 1, np.nan, 0.5 + np.arange(n))
        c = Candles(start + np.arange(n, dtype=np.int64) * 60_000, o, o + 8, o - 5, o + 1, vol)
        meta = BatchMeta(
            unit=Unit("dukascopy-json", "EURUSD", f"candles:1m:{side}", start, start + 86_400_000),
            part=0,
            part_count=1,
            rows=n,
            price_scale=5,
            payload_sha256=f"{i:064x}",
            request_id="r",
            fetched_at_ms=start,
            decoded_at_ms=start,
            columns=list(CANDLE_COLUMNS),
            source_code="EUR-USD",
        )
        flags = np.zeros(n, dtype=np.uint16)
        flags[2] = 4
        out.append(CandleBatch(meta, c).with_flags(flags, {"rule": 1}, start))
    return out


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
async def test_source_candles_equal_the_stored_candles(
    conn: asyncpg.Connection, tmp_path: Path, fmt: str
) -> None:
    await write(conn, source_candle_units())
    result = await ex.export(conn, "EURUSD", FROM, TO, tmp_path, kind="candles:60s:bid", fmt=fmt)
    base = tmp_path / "EURUSD" / "candles-1m-bid" / "2021"
    assert [f.path for f in result.files] == [base / f"2021-0{m}.{fmt}" for m in (2, 3)]
    assert result.empty_months == ["2021-01"]
    for path in (f.path for f in result.files):
        side = sidecar(path)
        assert (side["kind"], side["timeframe"], side["side"]) == ("candles:1m:bid", "1m", "bid")
        assert side["columns"] == ["ts", "open", "high", "low", "close", "volume", "flags"]
        assert side["source"] == ["dukascopy-json"] and side["price_scale"] == 5
        lo, hi = (datetime.fromisoformat(side["range"][k].replace("Z", "+00:00"))
                  for k in ("from", "to"))  # fmt: skip
        db = await conn.fetch(
            "SELECT ts, open, high, low, close, volume, flags FROM candles WHERE instrument = "
            "'EURUSD' AND timeframe = '1m' AND side = 'bid' AND ts >= $1 AND ts < $2 ORDER BY ts",
            lo,
            hi,
        )
        want = [
            [ex.iso_ms(r["ts"]), f"{r['open']:.5f}", f"{r['high']:.5f}", f"{r['low']:.5f}",
             f"{r['close']:.5f}", "" if r["volume"] is None else repr(r["volume"]),
             str(r["flags"])]
            for r in db
        ]  # fmt: skip
        if fmt == "csv":
            rows = read_csv(path)
            assert rows[0] == side["columns"]
            got = rows[1:]
        else:
            pf = pq.ParquetFile(path)
            assert pf.schema_arrow.metadata[b"tickpipe.side"] == b"bid"
            assert [str(f.type) for f in pf.schema_arrow] == [
                "timestamp[ms, tz=UTC]", "double", "double", "double", "double", "double",
                "int16",
            ]  # fmt: skip
            got = [
                [ex.iso_ms(r["ts"]), *(f"{r[k]:.5f}" for k in ("open", "high", "low", "close")),
                 "" if r["volume"] is None else repr(r["volume"]), str(r["flags"])]
                for r in pf.read().to_pylist()
            ]  # fmt: skip
        assert got == want and side["rows"] == len(db) > 0
        assert any(r[5] == "" for r in got) and any(r[6] == "4" for r in got)
    assert sidecar(base / f"2021-02.{fmt}")["first_ts"] == "2021-02-26T00:00:00.000Z"
    assert sidecar(base / f"2021-03.{fmt}")["rows"] == 6  # Mar 1 (Apr 26 is after TO)
    checks = ex.verify(tmp_path)
    assert len(checks) == 2 and all(c.ok for c in checks), checks


async def test_source_candle_kind_errors(conn: asyncpg.Connection, tmp_path: Path) -> None:
    with pytest.raises(ex.ExportError, match="side 'spread'"):
        await ex.export(conn, "EURUSD", FROM, TO, tmp_path, kind="candles:1m:spread")
    with pytest.raises(ex.ExportError, match="has its timeframe"):
        await ex.export(conn, "EURUSD", FROM, TO, tmp_path, kind="candles:1m:bid",
                        timeframe="1h")  # fmt: skip
    with pytest.raises(ex.ExportError, match=r"no 1h ask source candles of EURUSD"):
        await ex.export(conn, "EURUSD", FROM, TO, tmp_path, kind="candles:1h:ask")
    with pytest.raises(ex.ExportError, match="unknown kind 'quotes'"):
        await ex.export(conn, "EURUSD", FROM, TO, tmp_path, kind="quotes")


async def test_verify_reports_corrupt_truncated_missing_and_orphan_files(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    await ex.export(conn, "EURUSD", FROM, TO, tmp_path)
    await ex.export(conn, "EURUSD", FROM, TO, tmp_path, fmt="parquet")
    base = tmp_path / "EURUSD" / "ticks" / "2021"
    checks = ex.verify(tmp_path)
    assert len(checks) == 6 and all(c.ok for c in checks)

    flipped = base / "2021-01.csv"  # one byte changed: same size, same row count
    data = bytearray(flipped.read_bytes())
    pos = data.rindex(b"\n", 0, len(data) // 2) - 1  # last digit of a mid-file ask_volume / flag
    data[pos] ^= 0x01
    flipped.write_bytes(bytes(data))
    truncated = base / "2021-02.csv"
    truncated.write_bytes(truncated.read_bytes()[: len(truncated.read_bytes()) // 2])
    cut_parquet = base / "2021-02.parquet"
    cut_parquet.write_bytes(cut_parquet.read_bytes()[:-100])
    (base / "2021-03.parquet").unlink()
    orphan = base / "2020-12.csv"
    orphan.write_text("ts,bid\n")

    by_name = {c.path.name: c for c in ex.verify(tmp_path)}
    assert by_name["2021-03.csv"].ok and by_name["2021-01.parquet"].ok
    assert not by_name["2021-01.csv"].ok
    assert by_name["2021-01.csv"].reasons[0].startswith("sha256 mismatch")
    bad = by_name["2021-02.csv"]
    assert bad.reasons[0].startswith("sha256 mismatch")
    assert any("rows in the file, sidecar says" in r for r in bad.reasons)
    assert any(r.startswith("last_ts in the file") for r in bad.reasons)
    assert by_name["2021-02.parquet"].reasons[0].startswith("sha256 mismatch")
    assert any("cannot read the file back" in r for r in by_name["2021-02.parquet"].reasons)
    assert by_name["2021-03.parquet"].reasons == ("data file is missing",)
    assert (
        by_name["2020-12.csv"].reasons == ("no sidecar",) and by_name["2020-12.csv"].sidecar is None
    )


async def test_clear_errors(conn: asyncpg.Connection, tmp_path: Path) -> None:
    with pytest.raises(ex.ExportError, match="unknown instrument GBPUSD: nothing is stored"):
        await ex.export(conn, "GBPUSD", FROM, TO, tmp_path)
    with pytest.raises(ex.ExportError, match=r"no ticks of EURUSD in \[2020-01-01T00:00:00.000Z"):
        await ex.export(conn, "EURUSD", datetime(2020, 1, 1, tzinfo=UTC),
                        datetime(2020, 3, 1, tzinfo=UTC), tmp_path)  # fmt: skip
    with pytest.raises(ex.ExportError, match="empty range"):
        await ex.export(conn, "EURUSD", TO, FROM, tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ex.ExportError, match=r"cannot write to .*a-file/out"):
        await ex.export(conn, "EURUSD", FROM, TO, blocker / "out")
    assert not (tmp_path / "EURUSD").exists()


async def test_interrupted_export_keeps_the_previous_files_consistent(
    conn: asyncpg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ex.export(conn, "EURUSD", FROM, TO, tmp_path)
    calls = 0
    original = writers._CsvWriter.write

    def failing(self: Any, rows: list[tuple[Any, ...]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        original(self, rows)

    monkeypatch.setattr(writers._CsvWriter, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        await ex.export(conn, "EURUSD", FROM, TO, tmp_path, chunk_rows=200)
    assert not leftover_temps(tmp_path)
    assert all(c.ok for c in ex.verify(tmp_path))


@pytest.fixture
def cli_env(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", dsn)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_cli_export_and_verify(
    conn: asyncpg.Connection, cli_env: None, tmp_path: Path
) -> None:
    from tickpipe_cli.main import app

    runner = CliRunner()
    out = str(tmp_path / "exp")
    args = ["export", "eur/usd", "--from", "2021-01-15", "--to", "2021-03-20", "--out", out]

    # The CLI runs its own event loop: run it in a thread.
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--format", "parquet"])
    assert result.exit_code == 0, result.output
    assert "exported" in result.stdout and "3 parquet file(s)" in result.stdout
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--kind", "candles", "-t", "1d"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "exp" / "EURUSD" / "candles-1d" / "2021" / "2021-02.csv.json").is_file()

    await write(conn, source_candle_units())
    result = await asyncio.to_thread(runner.invoke, app, [*args, "--kind", "candles:1m:bid"])
    assert result.exit_code == 0, result.output
    assert "1m bid source candles of EURUSD into 2 csv file(s)" in result.stdout
    assert (tmp_path / "exp" / "EURUSD" / "candles-1m-bid" / "2021" / "2021-03.csv").is_file()
    bad = await asyncio.to_thread(runner.invoke, app, [*args, "--kind", "candles:1m:x"])
    assert bad.exit_code == 2
    bad = await asyncio.to_thread(runner.invoke, app, [*args, "--kind", "candles:1m:bid", "-t",
                                                       "1h"])  # fmt: skip
    assert bad.exit_code == 2

    result = await asyncio.to_thread(runner.invoke, app, ["export", "--verify", out])
    assert result.exit_code == 0, result.output
    assert "8 OK, 0 failed" in result.stdout

    (tmp_path / "exp" / "EURUSD" / "ticks" / "2021" / "2021-02.parquet").unlink()
    result = await asyncio.to_thread(runner.invoke, app, ["export", "--verify", out])
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "data file is missing" in result.stdout

    result = await asyncio.to_thread(runner.invoke, app, ["export", "NOPE", *args[2:]])
    assert result.exit_code == 1
    assert "unknown instrument NOPE" in result.stderr
