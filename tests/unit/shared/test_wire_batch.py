"""``tickpipe_shared.wire.batch``: the columnar binary batch format."""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tickpipe_shared.columns import TICK_COLUMNS, Ticks
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import (
    FLAGS_COLUMN,
    MAGIC,
    TICK_ROW_BYTES,
    BatchFormatError,
    BatchMeta,
    TickBatch,
    decode_batch,
    encode_batch,
    split_rows,
)

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
HOUR = 3_600_000


def make_ticks(n: int, start: int = T0) -> Ticks:
    return Ticks(
        ts_ms=start + np.arange(n, dtype=np.int64) * 7,
        bid=110_000 + np.arange(n, dtype=np.int64),
        ask=110_003 + np.arange(n, dtype=np.int64),
        bid_volume=np.linspace(0.1, 2.5, n),
        ask_volume=np.linspace(3.0, 0.25, n),
    )


def make_meta(rows: int, **kw: object) -> BatchMeta:
    base: dict[str, object] = dict(
        unit=Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR),
        part=0,
        part_count=1,
        rows=rows,
        price_scale=5,
        payload_sha256="ab" * 32,
        request_id="req-1",
        fetched_at_ms=T0 + 10,
        decoded_at_ms=T0 + 20,
    )
    base.update(kw)
    return BatchMeta(**base)  # type: ignore[arg-type]


def assert_ticks_equal(a: Ticks, b: Ticks) -> None:
    assert len(a) == len(b)
    for name, _ in TICK_COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def header_of(value: bytes) -> dict[str, object]:
    magic, hlen = struct.unpack_from("<4sI", value)
    assert magic == MAGIC
    return json.loads(value[8 : 8 + hlen])


def with_header(header: dict[str, object] | bytes, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    pad = (-(8 + len(raw))) % 8
    return struct.pack("<4sI", MAGIC, len(raw)) + raw + b"\0" * pad + body


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_without_flags() -> None:
    ticks = make_ticks(5)
    batch = TickBatch(make_meta(5), ticks)
    value = encode_batch(batch)
    assert value[:4] == b"TPB1"
    back = decode_batch(value)
    assert back.meta == batch.meta
    assert back.flags is None
    assert_ticks_equal(back.ticks, ticks)
    assert back.meta.unit == Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR)


def test_round_trip_with_flags_column_and_quality() -> None:
    ticks = make_ticks(3)
    flags = np.array([0, 0b1000, 0b10010], dtype=np.uint16)
    validated = TickBatch(make_meta(3), ticks).with_flags(flags, {"crossed_quote": 1}, T0 + 99)
    assert validated.meta.columns == [*TICK_COLUMNS, FLAGS_COLUMN]
    back = decode_batch(encode_batch(validated))
    assert back.flags is not None
    assert back.flags.dtype == np.dtype("<u2")
    np.testing.assert_array_equal(back.flags, flags)
    assert back.meta.quality == {"crossed_quote": 1}
    assert back.meta.validated_at_ms == T0 + 99
    assert back.meta.columns == [("ts_ms", "<i8"), *TICK_COLUMNS[1:], ("flags", "<u2")]
    assert_ticks_equal(back.ticks, ticks)


def test_empty_batch_round_trips() -> None:
    batch = TickBatch(make_meta(0), Ticks.empty())
    value = encode_batch(batch)
    back = decode_batch(value)
    assert len(back.ticks) == 0
    assert back.meta.rows == 0
    for name, dtype in TICK_COLUMNS:
        assert getattr(back.ticks, name).dtype == np.dtype(dtype)
    # Only preamble + padded header: no column bytes at all.
    assert len(value) % 8 == 0
    _, hlen = struct.unpack_from("<4sI", value)
    assert len(value) == 8 + hlen + (-(8 + hlen)) % 8


def test_layout_is_aligned_and_columns_follow_header() -> None:
    ticks = make_ticks(3)  # 3 × 8 = 24 bytes per i8/f8 column
    value = encode_batch(
        TickBatch(make_meta(3), ticks).with_flags(np.array([1, 2, 3], dtype=np.uint16), {}, T0)
    )
    _, hlen = struct.unpack_from("<4sI", value)
    first = 8 + hlen + (-(8 + hlen)) % 8
    assert first % 8 == 0
    assert np.frombuffer(value, "<i8", 3, first).tolist() == ticks.ts_ms.tolist()
    # 5 columns of 24 bytes, then the flags column (6 bytes, padded to 8).
    flags_at = first + 5 * 24
    assert np.frombuffer(value, "<u2", 3, flags_at).tolist() == [1, 2, 3]
    assert len(value) == flags_at + 8


def test_decode_is_zero_copy() -> None:
    ticks = make_ticks(4)
    buf = bytearray(encode_batch(TickBatch(make_meta(4), ticks)))
    back = decode_batch(buf)  # type: ignore[arg-type]
    before = int(back.ticks.bid[0])
    # Overwrite the first bid in the buffer: the decoded column must see the change.
    _, hlen = struct.unpack_from("<4sI", buf)
    bid_at = 8 + hlen + (-(8 + hlen)) % 8 + 4 * 8
    struct.pack_into("<q", buf, bid_at, 42)
    assert before == 110_000
    assert int(back.ticks.bid[0]) == 42
    # With immutable bytes the columns are read-only views on the record.
    ro = decode_batch(bytes(buf))
    assert not ro.ticks.ts_ms.flags.writeable
    assert not ro.ticks.ts_ms.flags.owndata


def test_encode_rejects_rows_mismatch() -> None:
    with pytest.raises(ValueError, match="batch meta says 4 rows, columns have 3"):
        encode_batch(TickBatch(make_meta(4), make_ticks(3)))


def test_encode_rejects_declared_flags_without_array() -> None:
    meta = make_meta(2, columns=[*TICK_COLUMNS, FLAGS_COLUMN])
    with pytest.raises(ValueError, match="declares column 'flags' but has none"):
        encode_batch(TickBatch(meta, make_ticks(2)))


def test_encode_converts_other_dtypes_to_declared_little_endian() -> None:
    flags = np.array([7, 8], dtype=np.int64)  # not uint16: encode converts
    batch = TickBatch(make_meta(2), make_ticks(2)).with_flags(flags, {}, T0)  # type: ignore[arg-type]
    back = decode_batch(encode_batch(batch))
    assert back.flags is not None and back.flags.tolist() == [7, 8]


# --- every BatchFormatError -------------------------------------------------------------------


def test_error_short_record() -> None:
    with pytest.raises(BatchFormatError, match="batch of 3 bytes is shorter than its 8-byte"):
        decode_batch(b"TPB")


def test_error_wrong_magic() -> None:
    with pytest.raises(
        BatchFormatError, match=r"not a tick batch: magic b'XXXX', expected b'TPB1'"
    ):
        decode_batch(b"XXXX" + struct.pack("<I", 0) + b"{}")


def test_error_header_runs_past_record() -> None:
    value = struct.pack("<4sI", MAGIC, 1000) + b"{}"
    with pytest.raises(BatchFormatError, match="header of 1000 bytes runs past the 10-byte record"):
        decode_batch(value)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(json.dumps({"source": "x"}).encode(), id="no-columns"),
    ],
)
def test_error_invalid_header(header: bytes) -> None:
    with pytest.raises(BatchFormatError, match="batch header is invalid"):
        decode_batch(with_header(header))


def test_error_header_with_unknown_field() -> None:
    good = header_of(encode_batch(TickBatch(make_meta(0), Ticks.empty())))
    good["surprise"] = 1
    with pytest.raises(BatchFormatError, match=r"batch header is invalid.*surprise"):
        decode_batch(with_header(good))


def test_error_header_missing_required_field() -> None:
    good = header_of(encode_batch(TickBatch(make_meta(0), Ticks.empty())))
    del good["instrument"]
    with pytest.raises(BatchFormatError, match=r"batch header is invalid.*instrument"):
        decode_batch(with_header(good))


def test_error_truncated_column() -> None:
    value = encode_batch(TickBatch(make_meta(4), make_ticks(4)))
    with pytest.raises(BatchFormatError, match=r"column 'ask_volume' needs 32 bytes at offset \d+"):
        decode_batch(value[:-1])
    with pytest.raises(BatchFormatError, match=r"column 'ts_ms' needs 32 bytes"):
        header = header_of(value)
        decode_batch(with_header(header, b"\0" * 31))


def test_error_missing_tick_columns() -> None:
    header = header_of(encode_batch(TickBatch(make_meta(0), Ticks.empty())))
    header["columns"] = [["ts_ms", "<i8"], ["bid", "<i8"]]
    with pytest.raises(BatchFormatError, match=r"batch lacks tick columns \['ask', 'bid_volume'"):
        decode_batch(with_header(header))


def _header_with_columns(columns: list[list[str]], rows: int = 0) -> dict[str, object]:
    header = header_of(encode_batch(TickBatch(make_meta(0), Ticks.empty())))
    header["columns"] = columns
    header["rows"] = rows
    return header


def test_error_unknown_column_dtype_is_batch_format_error() -> None:
    header = _header_with_columns([["ts_ms", "nonsense"]])
    with pytest.raises(BatchFormatError):
        decode_batch(with_header(header))


def test_error_wrong_dtype_of_tick_column_is_batch_format_error() -> None:
    cols = [[n, d] for n, d in TICK_COLUMNS]
    cols[0][1] = "<i4"
    header = _header_with_columns(cols, rows=2)
    with pytest.raises(BatchFormatError):
        decode_batch(with_header(header, b"\0" * 256))


def test_error_negative_rows_is_batch_format_error() -> None:
    header = _header_with_columns([[n, d] for n, d in TICK_COLUMNS], rows=-1)
    with pytest.raises(BatchFormatError):
        decode_batch(with_header(header, b"\0" * 44))


# --- split_rows -------------------------------------------------------------------------------


def test_tick_row_bytes() -> None:
    assert TICK_ROW_BYTES == 40


def test_split_rows_examples() -> None:
    # 10 rows of 40 bytes fit beside the 4096 bytes of header room.
    assert split_rows(25, 40, 4096 + 400) == [slice(0, 10), slice(10, 20), slice(20, 25)]
    assert split_rows(10, 40, 4096 + 400) == [slice(0, 10)]
    assert split_rows(0, 40, 4096 + 400) == [slice(0, 0)]
    # Smaller than the header room: still one row per part, never zero.
    assert split_rows(3, 40, 100) == [slice(0, 1), slice(1, 2), slice(2, 3)]


@given(
    rows=st.integers(0, 5000),
    row_bytes=st.integers(1, 64),
    max_bytes=st.integers(0, 100_000),
)
def test_split_rows_covers_every_row_once(rows: int, row_bytes: int, max_bytes: int) -> None:
    parts = split_rows(rows, row_bytes, max_bytes)
    per_part = max(1, (max_bytes - 4096) // row_bytes)
    assert parts[0].start == 0 and parts[-1].stop == rows
    for a, b in itertools.pairwise(parts):
        assert a.stop == b.start
    assert all(0 < p.stop - p.start <= per_part for p in parts) or rows == 0
    assert len(parts) == max(1, -(-rows // per_part))


def test_with_flags_sets_rows_and_keeps_identity() -> None:
    batch = TickBatch(make_meta(2, part=1, part_count=3), make_ticks(2))
    v = batch.with_flags(np.zeros(2, np.uint16), {"x": 1}, 5)
    assert v.meta.unit == batch.meta.unit
    assert (v.meta.part, v.meta.part_count, v.meta.rows) == (1, 3, 2)
    assert batch.meta.columns == list(TICK_COLUMNS)  # original untouched
    assert replace(v.meta, columns=list(TICK_COLUMNS), quality={}, validated_at_ms=None) == (
        batch.meta
    )
