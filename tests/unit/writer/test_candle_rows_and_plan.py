"""The writer with candle batches, without a database: binary COPY rows of candles (NaN volume →
NULL, flags, timeframe and side from the kind), NaN tick volumes → NULL, kind-agnostic planning,
the ``suspect-empty`` ledger state, instrument updates and the progress outcome."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from support.batches import unit_meta
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.units import HOUR_MS, Unit
from tickpipe_shared.wire.batch import CandleBatch, TickBatch
from tickpipe_writer.aggregates import written_windows
from tickpipe_writer.copy_binary import (
    CANDLE_COPY_COLUMNS,
    PG_EPOCH_MS,
    encode_candle_rows,
    encode_tick_rows,
)
from tickpipe_writer.plan import LedgerState, plan, unit_id
from tickpipe_writer.stage import outcome_of
from tickpipe_writer.store import InstrumentUpdate, instrument_updates

DAY = 24 * HOUR_MS
D0 = 1_551_657_600_000  # 2019-03-04T00:00:00Z
NAN = float("nan")


def candle_batch(
    opens: list[int],
    volumes: list[float],
    *,
    kind: str = "candles:1m:bid",
    scale: int = 5,
    part: int = 0,
    parts: int = 1,
    sha: str = "c" * 64,
    start: int = D0,
    instrument: str = "EURUSD",
    source: str = "dukascopy-json",
    source_code: str = "EUR-USD",
    asset_class: str = "fx",
    suspect_empty: bool = False,
) -> CandleBatch:
    n = len(opens)
    o = np.array(opens, dtype=np.int64)
    candles = Candles(
        start + np.arange(n, dtype=np.int64) * 60_000, o, o + 7, o - 3, o + 2,
        np.array(volumes, dtype=np.float64),
    )  # fmt: skip
    meta = unit_meta(
        Unit(source, instrument, kind, start, start + DAY),
        n,
        scale,
        part=part,
        part_count=parts,
        sha=sha,
        request_id="r",
        fetched_at_ms=start,
        volume_unit="none" if all(np.isnan(volumes)) and n else "millions",
        source_code=source_code,
        asset_class=asset_class,
        suspect_empty=suspect_empty,
    )
    return CandleBatch(meta, candles)


def tick_batch(n: int, volume: float, *, scale: int = 2, start: int = D0) -> TickBatch:
    t = Ticks(
        start + np.arange(n, dtype=np.int64) * 1000,
        np.full(n, 12_345, dtype=np.int64),
        np.full(n, 12_345, dtype=np.int64),
        np.full(n, volume),
        np.full(n, volume),
    )
    meta = unit_meta(
        Unit("deriv", "R_50", "ticks", start, start + HOUR_MS),
        n,
        scale,
        sha="d" * 64,
        request_id="r",
        fetched_at_ms=start,
        volume_unit="none",
        source_code="R_50",
        asset_class="synthetic",
    )
    return TickBatch(meta, t)


def parse_copy_rows(data: bytes, formats: list[str]) -> list[list[object]]:
    """COPY rows back to values: ``text`` fields decoded, numbers unpacked, NULL → None."""
    rows, pos = [], 0
    while pos < len(data):
        (nfields,) = struct.unpack_from(">h", data, pos)
        assert nfields == len(formats)
        pos += 2
        row: list[object] = []
        for fmt in formats:
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if length == -1:
                row.append(None)
                continue
            raw = data[pos : pos + length]
            pos += length
            row.append(raw.decode("ascii") if fmt == "text" else struct.unpack(f">{fmt}", raw)[0])
        rows.append(row)
    return rows


CANDLE_FORMATS = ["text", "text", "text", "q", "d", "d", "d", "d", "d", "h"]
TICK_FORMATS = ["text", "q", "q", "q", "d", "d", "h"]


def test_candle_rows_decode_back_with_nan_volume_as_null() -> None:
    b = candle_batch([114_545, 114_550, 114_560], [1.25, NAN, 0.5])
    b = b.with_flags(np.array([0, 4, 0x8001], dtype=np.uint16), {"x": 1}, D0)
    rows = parse_copy_rows(encode_candle_rows(b), CANDLE_FORMATS)
    assert len(CANDLE_COPY_COLUMNS) == len(CANDLE_FORMATS)
    assert [r[:3] for r in rows] == [["EURUSD", "1m", "bid"]] * 3
    assert [r[3] for r in rows] == [(D0 + i * 60_000 - PG_EPOCH_MS) * 1000 for i in range(3)]
    assert rows[0][4:8] == [1.14545, 1.14552, 1.14542, 1.14547]  # exact decimals read back
    assert [r[8] for r in rows] == [1.25, None, 0.5]  # order kept around the NULL
    assert rows[2][4] == 1.1456
    assert [r[9] for r in rows] == [0, 4, struct.unpack(">h", struct.pack(">H", 0x8001))[0]]


def test_candle_rows_without_any_volume_and_unvalidated() -> None:
    b = candle_batch([5_000, 5_010], [NAN, NAN], kind="candles:60s:mid", scale=2)
    data = encode_candle_rows(b)
    rows = parse_copy_rows(data, CANDLE_FORMATS)
    assert [(r[1], r[2], r[4], r[8], r[9]) for r in rows] == [
        ("1m", "mid", 50.0, None, 0),
        ("1m", "mid", 50.1, None, 0),
    ]
    text = 2 + (4 + 6) + (4 + 2) + (4 + 3)
    assert len(data) == 2 * (text + 5 * (4 + 8) + 4 + (4 + 2))  # the NULL volume: 4 bytes


def test_candle_rows_of_other_timeframes_and_empty_batch() -> None:
    rows = parse_copy_rows(
        encode_candle_rows(candle_batch([150], [10.0], kind="candles:1mo:trade", scale=0)),
        CANDLE_FORMATS,
    )
    assert rows[0][1:3] == ["1mo", "trade"] and rows[0][4] == 150.0 and rows[0][8] == 10.0
    assert encode_candle_rows(candle_batch([], [])) == b""


def test_candle_rows_refuse_a_negative_scale_and_a_tick_kind() -> None:
    with pytest.raises(ValueError, match="price_scale -1"):
        encode_candle_rows(candle_batch([1], [1.0], scale=-1))
    b = candle_batch([1], [1.0])
    from dataclasses import replace

    with pytest.raises(ValueError, match="not a candle kind"):
        encode_candle_rows(
            CandleBatch(replace(b.meta, unit=replace(b.meta.unit, kind="ticks")), b.candles)
        )


def test_nan_tick_volumes_are_null() -> None:
    rows = parse_copy_rows(encode_tick_rows(tick_batch(2, NAN)), TICK_FORMATS)
    assert [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows] == [
        ("R_50", 12_345, 12_345, None, None, 0)
    ] * 2
    # A batch with volumes keeps its fixed layout.
    with_volume = encode_tick_rows(tick_batch(2, 1.5))
    assert len(with_volume) == 2 * (2 + (4 + 4) + 5 * (4 + 8) + (4 + 2))


def test_one_null_volume_among_ticks() -> None:
    b = tick_batch(3, 2.0)
    ask = b.ticks.ask_volume.copy()
    ask[1] = NAN
    t = Ticks(b.ticks.ts_ms, b.ticks.bid, b.ticks.ask, b.ticks.bid_volume, ask)
    rows = parse_copy_rows(encode_tick_rows(TickBatch(b.meta, t)), TICK_FORMATS)
    assert [(r[4], r[5]) for r in rows] == [(2.0, 2.0), (2.0, None), (2.0, 2.0)]


CUID = ("EURUSD", "candles:1m:bid", D0)


def test_candle_units_are_planned_like_tick_units() -> None:
    p0 = candle_batch([1, 2], [1.0, 1.0], parts=2)
    p1 = candle_batch([3], [1.0], part=1, parts=2)
    work = plan([p0, p1, p1], {CUID: LedgerState(1, 1, 9, "a" * 64)})
    assert unit_id(p0.meta) == CUID
    assert work.deletes == [("EURUSD", "candles:1m:bid", D0, D0 + DAY)]
    assert work.inserts == [p0, p1] and work.duplicates == 1
    state, last = work.ledger[CUID]
    assert (state, state.state, last) == (LedgerState(2, 2, 3, "c" * 64), "stored", p1)


def test_candle_and_tick_units_of_one_start_are_different_units() -> None:
    ticks = tick_batch(1, 1.0)
    ask = candle_batch([1], [1.0], kind="candles:1m:ask")
    bid = candle_batch([1], [1.0])
    known = {
        ("R_50", "ticks", D0): LedgerState(1, 1, 1, "d" * 64),
        ("EURUSD", "candles:1m:ask", D0): LedgerState(1, 1, 1, "c" * 64),
    }
    work = plan([ticks, ask, bid], known)
    assert [w.kind for w in work.deletes] == ["ticks", "candles:1m:ask"]
    assert len(work.ledger) == 3
    # Only the tick unit's window concerns the OHLCV aggregates.
    assert written_windows(work) == [(D0, D0 + HOUR_MS), (D0, D0 + 1)]


def test_suspect_empty_unit() -> None:
    work = plan([candle_batch([], [], suspect_empty=True)], {})
    state = work.ledger[CUID][0]
    assert state == LedgerState(1, 1, 0, "c" * 64, True) and state.state == "suspect-empty"
    assert plan([candle_batch([], [])], {}).ledger[CUID][0].state == "empty"
    # The verdict only matters without rows.
    assert LedgerState(1, 1, 5, "c" * 64, True).state == "stored"
    assert LedgerState(0, 2, 0, "c" * 64, True).state == "partial"


def test_rewritten_suspect_empty_unit_stays_suspect() -> None:
    # An empty unit is one part: its redelivery is a part 0 again, which rewrites the unit.
    b = candle_batch([], [], suspect_empty=True, sha="e" * 64)
    work = plan([b, b], {CUID: LedgerState(1, 1, 0, "e" * 64, True)})
    assert len(work.deletes) == 1 and work.inserts == [b]
    assert work.ledger[CUID][0].state == "suspect-empty"


def test_progress_outcome_of_ledger_states() -> None:
    assert [outcome_of(s) for s in ("stored", "empty", "suspect-empty")] == [
        "stored",
        "empty",
        "suspect-empty",
    ]
    with pytest.raises(ValueError, match="partial"):
        outcome_of("partial")


def test_instrument_updates_keep_the_largest_scale_and_merge_codes() -> None:
    a = candle_batch([1], [1.0], scale=4, source="polygon", source_code="C:EURUSD",
                     asset_class="")  # fmt: skip
    b = candle_batch([1], [1.0], scale=6, source="polygon", source_code="C:EURUSD",
                     asset_class="fx")  # fmt: skip
    c = candle_batch([1], [1.0], scale=5, source="dukascopy-bi5", source_code="EURUSD")
    empty_unknown = candle_batch([], [], scale=-1, instrument="R_10", source="deriv",
                                 source_code="R_10", asset_class="synthetic")  # fmt: skip
    ticks = tick_batch(1, NAN)
    got = instrument_updates([a, b, c, empty_unknown, ticks])
    assert got == [
        InstrumentUpdate("EURUSD", 6, "fx", {"polygon": "C:EURUSD", "dukascopy-bi5": "EURUSD"}),
        InstrumentUpdate("R_10", None, "synthetic", {"deriv": "R_10"}),
        InstrumentUpdate("R_50", 2, "synthetic", {"deriv": "R_50"}),
    ]
    no_code = candle_batch([1], [1.0], source_code="", asset_class="")
    assert instrument_updates([no_code]) == [InstrumentUpdate("EURUSD", 5, None, {})]
