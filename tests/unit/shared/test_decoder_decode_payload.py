"""``tickpipe_decoder.decode.decode_payload`` with self-made payloads of every format: tick and
candle batches, parts, metadata, the candle rules (flats, open candles) and format errors.

(Lives here because ``tests/unit/decoder`` belongs to the format decoders' tests.)
"""

from __future__ import annotations

import hashlib
import json
import lzma
import time
from dataclasses import replace

import numpy as np
import pytest
from tickpipe_decoder.decode import DECODER_VERSION, decode_payload
from tickpipe_decoder.errors import DecodeError
from tickpipe_shared.candles import CANDLE_COLUMNS
from tickpipe_shared.columns import TICK_COLUMNS
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import (
    VALIDATED_CANDLE_ROW_BYTES,
    CandleBatch,
    TickBatch,
    decode_batch,
    encode_batch,
)
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
        unit=Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR),
        format=fmt,
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
    assert unit.rows == 10
    [value] = unit.batches
    b = decode_batch(value)
    assert isinstance(b, TickBatch)
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
    assert unit.rows == 25
    parts = [decode_batch(v) for v in unit.batches]
    assert [p.meta.part for p in parts] == [0, 1, 2]
    assert {p.meta.part_count for p in parts} == {3}
    assert [p.meta.rows for p in parts] == [10, 10, 5]
    for p in parts:
        assert p.meta.unit == parts[0].meta.unit
        assert (p.meta.unit.start_ms, p.meta.unit.end_ms) == (T0, T0 + HOUR)
        assert (p.meta.unit.instrument, p.meta.unit.source, p.meta.unit.kind) == (
            "EURUSD",
            "dukascopy-bi5",
            "ticks",
        )
        assert p.meta.payload_sha256 == parts[0].meta.payload_sha256
        assert p.meta.decoded_at_ms == parts[0].meta.decoded_at_ms
    assert all(len(v) <= max_bytes for v in unit.batches)
    whole = decode_payload(meta_for(payload), payload, 900_000)
    [single] = [decode_batch(v) for v in whole.batches]
    assert isinstance(single, TickBatch)
    for name, _ in TICK_COLUMNS:
        joined = np.concatenate([getattr(p.ticks, name) for p in parts if isinstance(p, TickBatch)])
        np.testing.assert_array_equal(joined, getattr(single.ticks, name))


def test_empty_payload_is_one_empty_part() -> None:
    unit = decode_payload(meta_for(b""), b"", 900_000)
    assert unit.rows == 0
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


# --- candles and the other formats ----------------------------------------------------------

DAY0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
DAY = 86_400_000
MINUTE = 60_000
CANDLE_REC = np.dtype(
    [
        ("sec", ">u4"),
        ("open", ">u4"),
        ("close", ">u4"),
        ("low", ">u4"),
        ("high", ">u4"),
        ("volume", ">f4"),
    ]
)


def bi5_minutes(n: int = 1440, flat_every: int | None = 3) -> tuple[bytes, np.ndarray]:
    """A dense minute-candle day: every ``flat_every``-th minute a zero-volume flat (none when
    ``None``)."""
    rec = np.zeros(n, dtype=CANDLE_REC)
    rec["sec"] = np.arange(n) * 60
    rec["open"] = 114_000 + np.arange(n) % 40
    rec["close"] = rec["open"] + 2
    rec["low"] = rec["open"] - 1
    rec["high"] = rec["close"] + 1
    rec["volume"] = 1.25
    flat = np.arange(n) % flat_every == 0 if flat_every else np.zeros(n, dtype=np.bool_)
    for name in ("open", "close", "low", "high"):
        rec[name][flat] = 114_500
    rec["volume"][flat] = 0
    return lzma.compress(rec.tobytes(), format=lzma.FORMAT_ALONE), rec


def candle_meta(
    payload: bytes,
    fmt: str,
    kind: str,
    start: int = DAY0,
    end: int = DAY0 + DAY,
    *,
    fetched: int | None = None,
    scale: int = 5,
    source_code: str = "EURUSD",
) -> RawPayloadMeta:
    source = {"deriv-ticks-history": "deriv", "polygon-aggs": "polygon"}.get(
        fmt, fmt.rsplit("-", 1)[0]
    )
    return RawPayloadMeta(
        unit=Unit(source, "EURUSD", kind, start, end),
        format=fmt,
        url="https://x.test/unit",
        sha256=hashlib.sha256(payload).hexdigest(),
        fetched_at_ms=end + 1000 if fetched is None else fetched,
        price_scale=scale,
        request_id="req-c",
        source_code=source_code,
        asset_class="fx",
        suspect_empty=0,
    )


def candle_parts(unit_batches: list[bytes]) -> list[CandleBatch]:
    parts = [decode_batch(v) for v in unit_batches]
    assert all(isinstance(p, CandleBatch) for p in parts)
    return [p for p in parts if isinstance(p, CandleBatch)]


def test_bi5_candles_round_trip_without_flats() -> None:
    payload, rec = bi5_minutes()
    meta = replace(candle_meta(payload, "dukascopy-bi5-candles", "candles:1m:bid"), suspect_empty=1)
    unit = decode_payload(meta, payload, 900_000)
    keep = rec["volume"] != 0
    assert (unit.rows, unit.candles, unit.dropped) == (int(keep.sum()), True, {"flat": 480})
    [b] = candle_parts(unit.batches)
    assert b.candles.ts_ms.tolist() == (DAY0 + rec["sec"][keep].astype(np.int64) * 1000).tolist()
    assert b.candles.open.tolist() == rec["open"][keep].tolist()
    assert b.candles.high.tolist() == rec["high"][keep].tolist()
    assert b.candles.low.tolist() == rec["low"][keep].tolist()
    assert b.candles.close.tolist() == rec["close"][keep].tolist()
    assert b.candles.volume.tolist() == [1.25] * int(keep.sum())
    m = b.meta
    assert (m.unit.kind, m.price_scale, m.volume_unit, m.rows) == (
        "candles:1m:bid",
        5,
        "millions",
        960,
    )
    assert m.columns == list(CANDLE_COLUMNS)
    assert (m.source_code, m.asset_class, m.suspect_empty) == ("EURUSD", "fx", True)
    assert (m.decoder_version, m.payload_sha256) == (DECODER_VERSION, meta.sha256)
    assert b.flags is None


def test_candle_parts_are_sized_for_validated_candles() -> None:
    payload, _ = bi5_minutes(flat_every=None)  # no flats: 1440 candles
    max_bytes = 4096 + VALIDATED_CANDLE_ROW_BYTES * 500
    unit = decode_payload(
        candle_meta(payload, "dukascopy-bi5-candles", "candles:1m:ask"), payload, max_bytes
    )
    parts = candle_parts(unit.batches)
    assert [p.meta.rows for p in parts] == [500, 500, 440]
    assert [p.meta.part for p in parts] == [0, 1, 2] and {p.meta.part_count for p in parts} == {3}
    assert np.all(np.diff(np.concatenate([p.candles.ts_ms for p in parts])) == MINUTE)
    rules = configure({})
    sizes = [len(encode_batch(validate(p, rules, DAY0))) for p in parts]
    assert max(sizes) <= max_bytes, sizes


def test_open_candles_are_dropped_for_every_format() -> None:
    fetched = DAY0 + 10 * MINUTE + 1  # minutes 0..8 closed, minute 9 closed at +10 min, 10 open
    payload, _ = bi5_minutes(n=20, flat_every=None)
    unit = decode_payload(
        candle_meta(payload, "dukascopy-bi5-candles", "candles:1m:bid", fetched=fetched),
        payload,
        900_000,
    )
    assert (unit.rows, unit.dropped) == (10, {"open": 10})
    deriv = json.dumps(
        [
            {
                "msg_type": "candles",
                "candles": [
                    {"epoch": (DAY0 + i * MINUTE) // 1000, "open": "1.5", "high": "1.6",
                     "low": "1.4", "close": "1.55"}
                    for i in range(12)
                ],
            }
        ]
    ).encode()  # fmt: skip
    unit = decode_payload(
        candle_meta(deriv, "deriv-ticks-history", "candles:1m:mid", fetched=fetched),
        deriv,
        900_000,
    )
    assert (unit.rows, unit.dropped) == (10, {"open": 2})
    polygon = json.dumps(
        [{"status": "OK", "results": [{"t": DAY0 + i * DAY, "o": 1, "h": 2, "l": 0.5, "c": 1.5}
                                      for i in range(3)]}]
    ).encode()  # fmt: skip
    year = (DAY0, DAY0 + 365 * DAY)
    unit = decode_payload(
        candle_meta(polygon, "polygon-aggs", "candles:1d:trade", *year, fetched=DAY0 + DAY + 5),
        polygon,
        900_000,
    )
    assert (unit.rows, unit.dropped) == (1, {"open": 2})


def test_deriv_ticks_through_decode_payload() -> None:
    body = json.dumps(
        [{"msg_type": "history", "pip_size": 2,
          "history": {"times": [T0 // 1000 + 2, T0 // 1000], "prices": ["184.79", 184.5]}}]
    ).encode()  # fmt: skip
    base = meta_for(body, "deriv-ticks-history")
    meta = replace(
        base, unit=replace(base.unit, source="deriv"), source_code="R_50", price_scale=-1
    )
    unit = decode_payload(meta, body, 900_000)
    [b] = [decode_batch(v) for v in unit.batches]
    assert isinstance(b, TickBatch) and not unit.candles and unit.rows == 2
    assert b.ticks.ts_ms.tolist() == [T0, T0 + 2000]
    assert b.ticks.bid.tolist() == b.ticks.ask.tolist() == [18450, 18479]
    assert np.isnan(b.ticks.bid_volume).all() and np.isnan(b.ticks.ask_volume).all()
    assert (b.meta.price_scale, b.meta.volume_unit, b.meta.source_code) == (2, "none", "R_50")


def test_polygon_volume_unit_through_decode_payload() -> None:
    body = json.dumps([{"results": [{"t": DAY0, "o": 1.07, "h": 1.08, "l": 1.06, "c": 1.075,
                                      "v": 12, "n": 12}]}]).encode()  # fmt: skip
    year = (DAY0, DAY0 + 365 * DAY)
    for ticker, unit_name in (("C:EURUSD", "ticks"), ("AAPL", "units")):
        meta = candle_meta(body, "polygon-aggs", "candles:1d:trade", *year, source_code=ticker)
        [b] = candle_parts(decode_payload(meta, body, 900_000).batches)
        assert (b.meta.volume_unit, b.meta.price_scale) == (unit_name, 3)
        assert b.candles.close.tolist() == [1075] and b.candles.volume.tolist() == [12.0]


def test_json_candles_through_decode_payload() -> None:
    body = json.dumps(
        {"timestamp": DAY0, "multiplier": 0.001, "open": 1.5, "high": 1.6, "low": 1.4,
         "close": 1.55, "shift": MINUTE, "times": [0, 2], "opens": [0, 1], "highs": [0, 1],
         "lows": [0, 1], "closes": [0, 1], "volumes": [3.5, 0.25]}
    ).encode()  # fmt: skip
    meta = candle_meta(body, "dukascopy-json-candles", "candles:1m:ask", scale=-1)
    [b] = candle_parts(decode_payload(meta, body, 900_000).batches)
    assert b.candles.ts_ms.tolist() == [DAY0, DAY0 + 2 * MINUTE]
    assert b.candles.open.tolist() == [1500, 1501]
    assert (b.meta.price_scale, b.meta.volume_unit) == (3, "millions")
    off_grid = body.replace(f'"timestamp": {DAY0}'.encode(), f'"timestamp": {DAY0 + 1}'.encode())
    with pytest.raises(
        DecodeError,
        match=r"^json candles: candle 0 starts at 1549238400001 ms \(2019-02-04T00:00:00Z\), not "
        r"on the 1m grid of the unit 2019-02-04T00:00:00Z \.\. 2019-02-05T00:00:00Z$",
    ):
        decode_payload(
            candle_meta(off_grid, "dukascopy-json-candles", "candles:1m:ask"), off_grid, 900_000
        )
    with pytest.raises(DecodeError, match=r"not on the 1h grid"):
        decode_payload(candle_meta(body, "dukascopy-json-candles", "candles:1h:ask"), body, 900_000)


@pytest.mark.parametrize(
    ("fmt", "kind", "volume_unit", "scale"),
    [
        ("dukascopy-bi5-ticks", "ticks", "millions", 5),
        ("dukascopy-json-ticks", "ticks", "millions", 0),
        ("dukascopy-bi5-candles", "candles:1m:bid", "millions", 5),
        ("dukascopy-json-candles", "candles:1h:ask", "millions", 0),
        ("deriv-ticks-history", "ticks", "none", 0),
        ("deriv-ticks-history", "candles:1m:mid", "none", 0),
        ("polygon-aggs", "candles:5m:trade", "units", 0),
    ],
)
def test_zero_byte_payload_is_an_empty_unit(
    fmt: str, kind: str, volume_unit: str, scale: int
) -> None:
    meta = replace(candle_meta(b"", fmt, kind), price_scale=5 if "bi5" in fmt else -1)
    unit = decode_payload(meta, b"", 900_000)
    [b] = [decode_batch(v) for v in unit.batches]
    assert (unit.rows, b.meta.rows, b.meta.part_count) == (0, 0, 1)
    assert isinstance(b, CandleBatch) == kind.startswith("candles:")
    assert (b.meta.volume_unit, b.meta.price_scale) == (volume_unit, scale)


@pytest.mark.parametrize(
    ("fmt", "kind", "message"),
    [
        (
            "dukascopy-bi5-ticks",
            "candles:1m:bid",
            "format 'dukascopy-bi5-ticks' holds ticks, but the unit's kind is 'candles:1m:bid'",
        ),
        (
            "polygon-aggs",
            "ticks",
            "format 'polygon-aggs' holds candles, but the unit's kind is 'ticks'",
        ),
        (
            "polygon-aggs",
            "candles:1m:bid",
            "format 'polygon-aggs' holds trade candles, not the bid candles of kind "
            "'candles:1m:bid'",
        ),
        (
            "deriv-ticks-history",
            "candles:1m:ask",
            "format 'deriv-ticks-history' holds mid candles, not the ask candles",
        ),
        (
            "dukascopy-json-candles",
            "candles:1m:mid",
            "format 'dukascopy-json-candles' holds bid and ask candles, not the mid candles",
        ),
        ("dukascopy-bi5-candles", "candles:1x:bid", "raw payload header 'tp-kind': timeframe"),
        ("dukascopy-bi5-candles", "bars", "raw payload header 'tp-kind': kind 'bars' is neither"),
    ],
)
def test_kind_and_format_must_agree(fmt: str, kind: str, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_payload(candle_meta(b"x", fmt, kind), b"x", 900_000)
    assert str(info.value).startswith(message), str(info.value)


def test_bi5_needs_a_known_scale() -> None:
    payload, _ = bi5_minutes(n=2)
    meta = candle_meta(payload, "dukascopy-bi5-candles", "candles:1m:bid", scale=-1)
    with pytest.raises(
        DecodeError,
        match=r"^bi5 candles: the price scale is unknown \(tp-price_scale -1\) and \.bi5 files",
    ):
        decode_payload(meta, payload, 900_000)
    ticks, _ = bi5_payload(3)
    with pytest.raises(DecodeError, match=r"^bi5 ticks: the price scale is unknown"):
        decode_payload(replace(meta_for(ticks), price_scale=-1), ticks, 900_000)


def test_source_errors_inside_pages_are_decode_errors() -> None:
    body = b'[{"msg_type":"ticks_history","error":{"code":"MarketIsClosed","message":"closed"}}]'
    with pytest.raises(DecodeError, match=r"code 'MarketIsClosed'"):
        decode_payload(candle_meta(body, "deriv-ticks-history", "ticks"), body, 900_000)


def test_polygon_delayed_pages_reach_the_quality_report() -> None:
    bar = {"t": DAY0, "o": 1.07, "h": 1.08, "l": 1.06, "c": 1.075, "v": 12, "n": 12}
    pages = [{"status": "DELAYED", "results": [bar]}, {"status": "DELAYED"}, {"status": "OK"}]
    body = json.dumps(pages).encode()
    year = (DAY0, DAY0 + 365 * DAY)
    meta = candle_meta(body, "polygon-aggs", "candles:1d:trade", *year, source_code="AAPL")
    [b] = candle_parts(decode_payload(meta, body, 900_000).batches)
    assert b.meta.quality == {"source_delayed": 2}
    # The validator keeps the decoder's note beside the rules' counts: the ledger's report.
    validated = validate(b, configure({}), int(time.time() * 1000))
    assert validated.meta.quality["source_delayed"] == 2
    fresh = json.dumps([{"status": "OK", "results": [bar]}]).encode()
    [ok] = candle_parts(decode_payload(candle_meta(fresh, "polygon-aggs", "candles:1d:trade",
                                                   *year, source_code="AAPL"), fresh,
                                       900_000).batches)  # fmt: skip
    assert ok.meta.quality == {}
