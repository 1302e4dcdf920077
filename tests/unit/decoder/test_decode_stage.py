"""The decoder stage: candle and tick payloads become batches, bad ones failure records, and the
candle counters move."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY
from tickpipe_decoder.stage import Decoder
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import CandleBatch, TickBatch, decode_batch
from tickpipe_shared.wire.raw import RawPayloadMeta

DAY0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
MINUTE = 60_000


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any


def record(body: bytes, kind: str, offset: int, fetched: int) -> Record:
    meta = RawPayloadMeta(
        unit=Unit("deriv", "R_50", kind, DAY0, DAY0 + 86_400_000),
        format="deriv-ticks-history",
        url="wss://x.test/websockets/v3?app_id=1",
        sha256=hashlib.sha256(body).hexdigest(),
        fetched_at_ms=fetched,
        price_scale=-1,
        request_id="req-s",
        source_code="R_50",
    )
    return Record("raw", 0, offset, b"key", body, meta.to_headers())


def counter(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_process_candles_ticks_and_failures() -> None:
    candles = json.dumps(
        [{"msg_type": "candles", "candles": [
            {"epoch": (DAY0 + i * MINUTE) // 1000, "open": 1, "high": 2, "low": 0.5, "close": 1.5}
            for i in range(5)
        ]}]
    ).encode()  # fmt: skip
    ticks = json.dumps(
        [{"msg_type": "history", "history": {"times": [DAY0 // 1000], "prices": ["1.25"]}}]
    ).encode()
    failures: list[tuple[InRecord, BaseException]] = []

    def failure(r: InRecord, e: BaseException) -> OutRecord:
        failures.append((r, e))
        return OutRecord("failures", r.key, b"failed")

    decoder = Decoder(Settings(), failure, threads=1)
    before = (
        counter("tickpipe_candles_total", {"stage": "decoder"}),
        counter("tickpipe_decoder_candles_dropped_total", {"reason": "open"}),
        counter("tickpipe_ticks_total", {"stage": "decoder"}),
    )
    out = await decoder.process(
        [
            record(candles, "candles:1m:mid", 0, fetched=DAY0 + 3 * MINUTE),  # 2 still open
            record(ticks, "ticks", 1, fetched=DAY0 + 86_400_000),
            record(b'[{"msg_type": "ohlc"}]', "ticks", 2, fetched=DAY0),
        ]
    )
    assert [o.topic for o in out] == [decoder.topic, decoder.topic, "failures"]
    first, second = decode_batch(out[0].value), decode_batch(out[1].value)
    assert isinstance(first, CandleBatch) and first.meta.rows == 3
    assert isinstance(second, TickBatch) and second.meta.rows == 1
    assert out[0].headers == record(candles, "candles:1m:mid", 0, DAY0 + 3 * MINUTE).headers
    [(bad, error)] = failures
    assert bad.offset == 2 and "unknown msg_type 'ohlc'" in str(error)
    after = (
        counter("tickpipe_candles_total", {"stage": "decoder"}),
        counter("tickpipe_decoder_candles_dropped_total", {"reason": "open"}),
        counter("tickpipe_ticks_total", {"stage": "decoder"}),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 2, 1]
