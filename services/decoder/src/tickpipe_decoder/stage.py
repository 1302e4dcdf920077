"""The decoder stage: ``raw-payloads`` → ``decoded-batches``.

Decoding runs in a thread pool: LZMA decompression is the cost and releases the GIL, so both
cores work while the event loop keeps consuming. A payload that does not decode becomes a
failure record; the others in the batch go through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.topics import DECODED_BATCHES
from tickpipe_shared.metrics import BYTES, CANDLES, TICKS, UNITS
from tickpipe_shared.wire.raw import RawPayloadMeta

from tickpipe_decoder.decode import DecodedUnit, decode_payload
from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.metrics import CANDLES_DROPPED

FailureFactory = Callable[[InRecord, BaseException], OutRecord]


class Decoder:
    """Processor turning each raw payload into one or more encoded tick or candle batches."""

    def __init__(self, settings: Settings, failure: FailureFactory, threads: int = 2) -> None:
        self.topic = settings.topic(DECODED_BATCHES)
        self.max_batch_bytes = settings.max_batch_bytes
        self.failure = failure
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")

    def _decode(self, record: InRecord) -> DecodedUnit | Exception:
        try:
            meta = RawPayloadMeta.from_headers(record.headers)
            return decode_payload(meta, record.value or b"", self.max_batch_bytes)
        except (DecodeError, ValueError) as e:
            return e

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """Batches for every decodable payload, failure records for the others, in order."""
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._pool, self._decode, r) for r in records)
        )
        out: list[OutRecord] = []
        for record, result in zip(records, results, strict=True):
            if isinstance(result, Exception):
                UNITS.labels("decoder", "failed").inc()
                out.append(self.failure(record, result))
                continue
            BYTES.labels("decoder", "in").inc(len(record.value or b""))
            for value in result.batches:
                BYTES.labels("decoder", "out").inc(len(value))
                out.append(OutRecord(self.topic, record.key, value, list(record.headers or [])))
            UNITS.labels("decoder", "decoded" if result.rows else "empty").inc()
            if result.candles:
                CANDLES.labels("decoder").inc(result.rows)
            else:
                TICKS.labels("decoder").inc(result.rows)
            for reason, n in result.dropped.items():
                CANDLES_DROPPED.labels(reason).inc(n)
        return out
