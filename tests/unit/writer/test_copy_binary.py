"""``tickpipe_writer.copy_binary``: PostgreSQL binary COPY rows, decoded back with struct."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from tickpipe_shared.columns import Ticks
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_writer.copy_binary import (
    PG_EPOCH_MS,
    SIGNATURE,
    TICK_COPY_COLUMNS,
    TRAILER,
    encode_tick_rows,
)

T0 = 1_549_238_400_123  # 2019-02-04T00:00:00.123Z


def batch(bid: list[int], ask: list[int], scale: int, instrument: str = "EURUSD") -> TickBatch:
    n = len(bid)
    t = Ticks(
        T0 + np.arange(n, dtype=np.int64) * 1001,
        np.array(bid, dtype=np.int64),
        np.array(ask, dtype=np.int64),
        np.array([1.25, 0.1, 3.0][:n] + [0.5] * max(0, n - 3)),
        np.array([2.5, 0.2, 0.0][:n] + [0.25] * max(0, n - 3)),
    )
    meta = BatchMeta(
        Unit("dukascopy-bi5", instrument, "ticks", T0, T0 + 3_600_000),
        0,
        1,
        n,
        scale,
        "aa" * 32,
        "r",
        T0,
        T0,
    )
    return TickBatch(meta, t)


def parse_rows(data: bytes, n: int) -> list[tuple[object, ...]]:
    rows = []
    pos = 0
    for _ in range(n):
        (nfields,) = struct.unpack_from(">h", data, pos)
        pos += 2
        fields: list[object] = [nfields]
        for kind in ("text", "q", "q", "q", "d", "d", "h"):
            (length,) = struct.unpack_from(">i", data, pos)
            pos += 4
            raw = data[pos : pos + length]
            pos += length
            fields.append(length)
            fields.append(
                raw.decode("ascii") if kind == "text" else struct.unpack(f">{kind}", raw)[0]
            )
        rows.append(tuple(fields))
    assert pos == len(data), "no bytes left over"
    return rows


def test_signature_and_trailer() -> None:
    assert SIGNATURE == b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    assert len(SIGNATURE) == 19
    assert TRAILER == struct.pack(">h", -1)
    assert TICK_COPY_COLUMNS == (
        "instrument",
        "ts",
        "bid_points",
        "ask_points",
        "bid_volume",
        "ask_volume",
        "flags",
    )


def test_rows_decode_back() -> None:
    b = batch([114_545, 114_546, 114_550], [114_547, 114_549, 114_552], scale=5)
    b = b.with_flags(np.array([0, 8, 0x8001], dtype=np.uint16), {}, T0)
    data = encode_tick_rows(b)
    rows = parse_rows(data, 3)
    row_len = 2 + (4 + 6) + 5 * (4 + 8) + (4 + 2)
    assert len(data) == 3 * row_len
    for i, row in enumerate(rows):
        (
            nfields,
            ilen,
            inst,
            tslen,
            ts,
            blen,
            bid,
            alen,
            ask,
            bvlen,
            bv,
            avlen,
            av,
            flen,
            _flags,
        ) = row
        assert nfields == 7 == len(TICK_COPY_COLUMNS)
        assert (ilen, inst) == (6, "EURUSD")
        assert (tslen, blen, alen, bvlen, avlen, flen) == (8, 8, 8, 8, 8, 2)
        assert ts == (T0 + i * 1001 - PG_EPOCH_MS) * 1000
        assert bid == b.ticks.bid[i] and ask == b.ticks.ask[i]  # points, as int8
        assert bv == b.ticks.bid_volume[i] and av == b.ticks.ask_volume[i]
    assert rows[0][4] == 602_553_600_123_000  # 2019-02-04T00:00:00.123 in µs since 2000
    pg_epoch = datetime(2000, 1, 1, tzinfo=UTC)
    assert pg_epoch + timedelta(microseconds=rows[0][4]) == datetime(  # type: ignore[operator]
        2019, 2, 4, 0, 0, 0, 123_000, tzinfo=UTC
    )
    assert rows[0][6] == 114_545 and rows[1][8] == 114_549
    assert [r[-1] for r in rows] == [0, 8, struct.unpack(">h", struct.pack(">H", 0x8001))[0]]


def test_pg_epoch() -> None:
    assert PG_EPOCH_MS == int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("scale", "points"), [(3, 150_123), (1, 1_234_567), (0, 42), (2, 5), (8, 2**53 + 1)]
)
def test_points_are_written_as_they_are_whatever_the_scale(scale: int, points: int) -> None:
    # The scale lives in `instruments`; the row keeps the integer, beyond float8's 2**53 too.
    [row] = parse_rows(encode_tick_rows(batch([points], [points + 1], scale)), 1)
    assert (row[6], row[8]) == (points, points + 1)


def test_negative_scale_is_refused() -> None:
    with pytest.raises(ValueError, match="price_scale -1"):
        encode_tick_rows(batch([1], [2], -1))


def test_unvalidated_batch_has_zero_flags_and_other_instrument() -> None:
    rows = parse_rows(encode_tick_rows(batch([1, 2], [3, 4], 0, instrument="USA500IDXUSD")), 2)
    assert [r[-1] for r in rows] == [0, 0]
    assert [r[2] for r in rows] == ["USA500IDXUSD"] * 2
    assert rows[0][1] == 12


def test_empty_batch() -> None:
    assert encode_tick_rows(batch([], [], 5)) == b""


def test_non_ascii_instrument() -> None:
    with pytest.raises(UnicodeEncodeError):
        encode_tick_rows(batch([1], [2], 0, instrument="EURÜSD"))
