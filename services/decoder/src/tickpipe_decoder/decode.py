"""From one raw payload to encoded tick batches: pure, no I/O, safe to run in a thread.

The payload's ``tp-format`` header picks the decoder. Large units are split into parts that fit
the broker's message size (``TICKPIPE_MAX_BATCH_BYTES``); each part carries the unit's identity,
its part number and the part count.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import (
    VALIDATED_ROW_BYTES,
    BatchMeta,
    TickBatch,
    encode_batch,
    split_rows,
)
from tickpipe_shared.wire.raw import RawPayloadMeta

from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_ticks
from tickpipe_decoder.formats.dukascopy_json import decode_json_ticks

#: Bumped when decoding changes what is stored; recorded per unit in the ingest log.
DECODER_VERSION = "1"


def _bi5(meta: RawPayloadMeta, payload: bytes) -> tuple[Ticks, int]:
    return decode_bi5_ticks(payload, meta.unit_start_ms), meta.price_scale


def _json(meta: RawPayloadMeta, payload: bytes) -> tuple[Ticks, int]:
    return decode_json_ticks(payload)


DECODERS: dict[str, Callable[[RawPayloadMeta, bytes], tuple[Ticks, int]]] = {
    "dukascopy-bi5-ticks": _bi5,
    "dukascopy-json-ticks": _json,
}


@dataclass(frozen=True, slots=True)
class DecodedUnit:
    """A decoded payload: its encoded batches (at least one) and its number of ticks."""

    batches: list[bytes]
    ticks: int


def decode_payload(meta: RawPayloadMeta, payload: bytes, max_batch_bytes: int) -> DecodedUnit:
    """Encoded tick batches (``wire.batch`` format) of one raw payload, at least one.

    Parts are sized for the validated batch (with its flags column), so that every stage's
    records stay under ``max_batch_bytes``. Prices stay in integer points with the payload's
    scale (from the JSON ``multiplier``, or for ``.bi5`` the scale the fetcher recorded from the
    instrument registry).

    Raises :class:`DecodeError` for an unknown format or a payload that does not decode.
    """
    decoder = DECODERS.get(meta.format)
    if decoder is None:
        raise DecodeError(f"unknown payload format {meta.format!r} (known: {', '.join(DECODERS)})")
    ticks, scale = decoder(meta, payload)
    now = int(time.time() * 1000)
    slices = split_rows(len(ticks), VALIDATED_ROW_BYTES, max_batch_bytes)
    batches = [
        encode_batch(
            TickBatch(
                BatchMeta(
                    source=meta.source,
                    instrument=meta.instrument,
                    kind=meta.kind,
                    unit_start_ms=meta.unit_start_ms,
                    unit_end_ms=meta.unit_end_ms,
                    part=i,
                    part_count=len(slices),
                    rows=s.stop - s.start,
                    price_scale=scale,
                    payload_sha256=meta.sha256,
                    request_id=meta.request_id,
                    fetched_at_ms=meta.fetched_at_ms,
                    decoded_at_ms=now,
                    decoder_version=DECODER_VERSION,
                ),
                ticks.take(s),
            )
        )
        for i, s in enumerate(slices)
    ]
    return DecodedUnit(batches, len(ticks))
