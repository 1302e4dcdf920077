"""The ``synthetic`` source: deterministic ticks for volume runs, no network.

Each unit's ticks come from :func:`tickpipe_shared.synthetic.ticks.generate_ticks` — a pure
function of ``(instrument, unit start, seed)`` and the rate, volatility and spread configured by
``TICKPIPE_SYNTHETIC_*`` — and are published in the legacy Dukascopy ``.bi5`` layout
(``dukascopy-bi5-ticks``: LZMA-alone stream of 20-byte big-endian records), so that the decoder,
validator and writer do exactly the work they do for real data. The LZMA preset is the fastest
(``TICKPIPE_SYNTHETIC_LZMA_PRESET``, default 0): the fetcher's CPU is the limit on a small
machine, not bytes. Closed hours of the trading schedule are 0-byte payloads (empty units), as
the datafeed serves them. Generation runs in a worker thread (``lzma`` releases the GIL).
"""

from __future__ import annotations

import asyncio
import lzma

import numpy as np
from tickpipe_shared.columns import Ticks
from tickpipe_shared.synthetic.ticks import SyntheticParams, generate_ticks
from tickpipe_shared.wire.fetch_units import FetchUnit

from tickpipe_fetcher.sources.base import Answer, Requests
from tickpipe_fetcher.sources.common import check_unit_span

#: Tick record of the ``.bi5`` layout (``../shared/docs/dukascopy.md`` §2.3).
BI5_TICK_RECORD = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)
FORMAT = "dukascopy-bi5-ticks"
NAME = "synthetic"


def encode_bi5_ticks(ticks: Ticks, hour_start_ms: int, preset: int = 0) -> bytes:
    """``ticks`` of the hour starting at ``hour_start_ms`` as a ``.bi5`` file: an LZMA-alone
    stream (properties lc=3 lp=0 pb=2, first byte 0x5D) of 20-byte records. Zero ticks give
    ``b""`` (the datafeed's empty hour). Raises :class:`ValueError` when a tick lies outside the
    hour or a price does not fit an unsigned 32-bit point count."""
    if len(ticks) == 0:
        return b""
    offsets = ticks.ts_ms - hour_start_ms
    if offsets.min() < 0 or offsets.max() >= 3_600_000:
        raise ValueError("ticks outside the hour cannot be encoded as a .bi5 hour file")
    if min(ticks.bid.min(), ticks.ask.min()) < 0 or max(ticks.bid.max(), ticks.ask.max()) >= 2**32:
        raise ValueError("prices outside 0..2^32-1 points cannot be encoded as .bi5")
    records = np.empty(len(ticks), dtype=BI5_TICK_RECORD)
    records["ms"] = offsets
    records["ask"] = ticks.ask
    records["bid"] = ticks.bid
    records["ask_vol"] = ticks.ask_volume
    records["bid_vol"] = ticks.bid_volume
    return lzma.compress(records.tobytes(), format=lzma.FORMAT_ALONE, preset=preset)


class SyntheticSource:
    """Generates each unit (hours of ticks only) instead of downloading it."""

    name = NAME
    host = NAME  # no host: its own key for slots, limiters and breakers (none are used)

    def __init__(self, params: SyntheticParams, lzma_preset: int = 0) -> None:
        self.params = params
        self.lzma_preset = lzma_preset

    def payload(self, unit: FetchUnit) -> bytes:
        """The ``.bi5`` body of ``unit`` (CPU-bound; see :func:`encode_bi5_ticks`)."""
        u = unit.unit
        ticks = generate_ticks(
            u.instrument,
            u.start_ms,
            u.end_ms,
            market_open=unit.market_open,
            params=self.params,
            scale=unit.price_scale if unit.price_scale >= 0 else None,
        )
        return encode_bi5_ticks(ticks, u.start_ms, self.lzma_preset)

    async def fetch(self, unit: FetchUnit, now_ms: int, requests: Requests) -> Answer:
        """The unit's generated payload; ``requests`` is not used (nothing is sent anywhere).
        Raises :class:`~tickpipe_fetcher.http.PermanentFetchError` for a unit that is not one
        hour of ticks."""
        check_unit_span(unit)
        body = await asyncio.to_thread(self.payload, unit)
        return Answer(
            body=body,
            empty=not body,
            url=f"synthetic://{unit.unit.instrument}/{unit.unit.start_ms}",
            status=200,
            content_type="application/octet-stream",
            format=FORMAT,
            requests=1,
        )

    async def close(self) -> None:
        """Nothing to release."""
