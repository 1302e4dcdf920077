"""``tickpipe_decoder.decode.decode_payload`` with self-made ``.bi5`` payloads.

(Lives here because ``tests/unit/decoder`` belongs to the format decoders' tests.)
"""

from __future__ import annotations

import hashlib
import lzma
import time

import numpy as np
import pytest
from tickpipe_decoder.decode import DECODER_VERSION, decode_payload
from tickpipe_decoder.errors import DecodeError
from tickpipe_shared.columns import TICK_COLUMNS
from tickpipe_shared.wire.batch import decode_batch, encode_batch
from tickpipe_shared.wire.raw import RawPayloadMeta
from tickpipe_validator.validate import configure, validate

T0 = 1_549_256_400_000  # 2019-02-04T05:00:00Z
HOUR = 3_600_000
REC = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)


def bi5_payload(n: int) -> tuple[bytes, np.ndarray]:
    rec = np.zeros(n, dtype=REC)
    rec["ms"] = np.arange(n) * (HOUR // max(n, 1))
    rec["bid"] = 114_000 + np.arange(n) % 50
    rec["ask"] = rec["bid"] + 3
    rec["bid_vol"] = 1.5
    rec["ask_vol"] = np.float32(0.75)
    return lzma.compress(rec.tobytes(), format=lzma.FORMAT_ALONE), rec


def meta_for(payload: bytes, fmt: str = "dukascopy-bi5-ticks") -> RawPayloadMeta:
    return RawPayloadMeta(
        source="dukascopy-bi5",
        format=fmt,
        instrument="EURUSD",
        kind="ticks",
        unit_start_ms=T0,
        unit_end_ms=T0 + HOUR,
        url="https://x.test/EURUSD/2019/01/04/05h_ticks.bi5",
        sha256=hashlib.sha256(payload).hexdigest(),
        fetched_at_ms=T0 + 99,
        price_scale=5,
        request_id="req-5",
    )


def test_single_part() -> None:
    payload, rec = bi5_payload(10)
    before = int(time.time() * 1000)
    unit = decode_payload(meta_for(payload), payload, 900_000)
    assert unit.ticks == 10
    [value] = unit.batches
    b = decode_batch(value)
    assert b.ticks.ts_ms.tolist() == (T0 + rec["ms"].astype(np.int64)).tolist()
    assert b.ticks.bid.tolist() == rec["bid"].tolist()
    assert b.ticks.ask.tolist() == rec["ask"].tolist()
    assert b.ticks.bid_volume.tolist() == [1.5] * 10
    assert b.ticks.ask_volume.tolist() == [0.75] * 10
    m = b.meta
    assert (m.part, m.part_count, m.rows, m.price_scale) == (0, 1, 10, 5)
    assert m.payload_sha256 == hashlib.sha256(payload).hexdigest()
    assert (m.request_id, m.fetched_at_ms, m.decoder_version) == ("req-5", T0 + 99, DECODER_VERSION)
    assert m.decoded_at_ms >= before
    assert b.flags is None


def test_split_into_parts_with_identity() -> None:
    payload, _rec = bi5_payload(25)
    max_bytes = 4096 + 42 * 10  # 10 validated rows (40 bytes + 2 of flags) per part
    unit = decode_payload(meta_for(payload), payload, max_bytes)
    assert unit.ticks == 25
    parts = [decode_batch(v) for v in unit.batches]
    assert [p.meta.part for p in parts] == [0, 1, 2]
    assert {p.meta.part_count for p in parts} == {3}
    assert [p.meta.rows for p in parts] == [10, 10, 5]
    for p in parts:
        assert p.meta.unit == parts[0].meta.unit
        assert (p.meta.unit_start_ms, p.meta.unit_end_ms) == (T0, T0 + HOUR)
        assert (p.meta.instrument, p.meta.source, p.meta.kind) == (
            "EURUSD",
            "dukascopy-bi5",
            "ticks",
        )
        assert p.meta.payload_sha256 == parts[0].meta.payload_sha256
        assert p.meta.decoded_at_ms == parts[0].meta.decoded_at_ms
    assert all(len(v) <= max_bytes for v in unit.batches)
    whole = decode_payload(meta_for(payload), payload, 900_000)
    [single] = [decode_batch(v) for v in whole.batches]
    for name, _ in TICK_COLUMNS:
        joined = np.concatenate([getattr(p.ticks, name) for p in parts])
        np.testing.assert_array_equal(joined, getattr(single.ticks, name))


def test_empty_payload_is_one_empty_part() -> None:
    unit = decode_payload(meta_for(b""), b"", 900_000)
    assert unit.ticks == 0
    [value] = unit.batches
    b = decode_batch(value)
    assert (b.meta.rows, b.meta.part, b.meta.part_count) == (0, 0, 1)


def test_unknown_format() -> None:
    with pytest.raises(DecodeError, match=r"unknown payload format 'csv-ticks' \(known: "):
        decode_payload(meta_for(b"x", fmt="csv-ticks"), b"x", 900_000)


def test_truncated_payload() -> None:
    payload, _ = bi5_payload(100)
    cut = payload[: len(payload) // 2]
    with pytest.raises(DecodeError, match="lzma: "):
        decode_payload(meta_for(cut), cut, 900_000)


def test_validated_parts_fit_max_batch_bytes() -> None:
    payload, _ = bi5_payload(12_000)
    max_bytes = 200_000
    unit = decode_payload(meta_for(payload), payload, max_bytes)
    assert len(unit.batches) > 1
    rules = configure({})
    sizes = [len(encode_batch(validate(decode_batch(v), rules, T0))) for v in unit.batches]
    assert max(sizes) <= max_bytes, sizes
