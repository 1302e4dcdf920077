"""From one raw payload to encoded tick or candle batches: pure, no I/O, safe to run in a thread.

The payload's ``tp-format`` header picks the decoder (:data:`FORMATS`) and its ``tp-kind`` what
it holds: ``ticks`` become :class:`~tickpipe_shared.wire.batch.TickBatch` parts,
``candles:<timeframe>:<side>`` become :class:`~tickpipe_shared.wire.batch.CandleBatch` parts.
Large units are split into parts that fit the broker's message size
(``TICKPIPE_MAX_BATCH_BYTES``); each part carries the unit's identity, its part number and the
part count.

Candles then pass the rules of :mod:`tickpipe_decoder.candle_rules`, the same for every source:
candles whose period had not closed when the payload was fetched are dropped, and so are the
flats (zero-volume candles with O = H = L = C) of dense ``.bi5`` candle files, so that both
Dukascopy sources store the same rows. A 0-byte payload of any format is an empty unit (the
fetcher's "nothing there" answer, ``docs/topics/raw-payloads.md``).

Volume units (``BatchMeta.volume_unit``) per format: Dukascopy ``millions`` (of the base asset);
Deriv ``none`` (no volume: NaN); Polygon ``ticks`` (forex), ``units`` or ``none``
(:func:`~tickpipe_decoder.formats.polygon.volume_unit_for`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import TICK_COLUMNS, Ticks
from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.units import ms_to_iso
from tickpipe_shared.wire.batch import (
    VALIDATED_CANDLE_ROW_BYTES,
    VALIDATED_ROW_BYTES,
    BatchMeta,
    CandleBatch,
    TickBatch,
    encode_batch,
    split_rows,
)
from tickpipe_shared.wire.raw import RawPayloadMeta

from tickpipe_decoder.candle_rules import closed_mask, flat_mask
from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.deriv import decode_deriv_candles, decode_deriv_ticks
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_candles, decode_bi5_ticks
from tickpipe_decoder.formats.dukascopy_json import decode_json_candles, decode_json_ticks
from tickpipe_decoder.formats.polygon import decode_polygon_aggs, volume_unit_for

#: Bumped when decoding changes what is stored; recorded per unit in the ingest log.
#: 2: candle kinds, Deriv and Polygon formats, 0-byte payloads of every format are empty units.
DECODER_VERSION = "2"

VOLUME_MILLIONS, VOLUME_UNITS, VOLUME_TICKS, VOLUME_NONE = "millions", "units", "ticks", "none"
"""The ``volume_unit`` values (:class:`~tickpipe_shared.wire.batch.BatchMeta`)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A payload's rows before the candle rules: ``scale`` ``None`` when the payload does not
    say (no price in it); ``volume_unit`` as in :class:`BatchMeta`."""

    rows: Ticks | Candles
    scale: int | None
    volume_unit: str
    #: What the source said about the data, for the unit's quality report (e.g.
    #: ``{"source_delayed": 2}``: Polygon pages marked ``DELAYED``); carried on part 0.
    quality: dict[str, int] = field(default_factory=dict)


Decode = Callable[[RawPayloadMeta, bytes, Kind], Decoded]


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    """What one ``tp-format`` holds. ``ticks``/``candles``: its decoder for that kind (``None``:
    the format does not hold it). ``sides``: the candle sides it serves. ``volume_unit``: the
    unit of an empty payload's batch. ``dense``: candle files list every period (flats too)."""

    ticks: Decode | None
    candles: Decode | None
    volume_unit: Callable[[RawPayloadMeta], str]
    sides: tuple[str, ...] = ()
    dense: bool = False


def _bi5_scale(meta: RawPayloadMeta, what: str) -> int:
    # .bi5 files carry no scale (dukascopy.md §2.6): it must come from the fetcher.
    if meta.price_scale < 0:
        raise DecodeError(
            f"{what}: the price scale is unknown (tp-price_scale {meta.price_scale}) and .bi5 "
            "files carry none"
        )
    return meta.price_scale


def _check_grid(candles: Candles, meta: RawPayloadMeta, kind: Kind, what: str) -> None:
    """Dukascopy candles start on the unit's grid of the timeframe, inside the unit."""
    assert kind.timeframe is not None
    step = kind.timeframe.duration_ms
    if step is None or len(candles) == 0:
        return
    offset = candles.ts_ms - np.int64(meta.unit.start_ms)
    bad = (offset < 0) | (candles.ts_ms >= meta.unit.end_ms) | (offset % step != 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DecodeError(
            f"{what}: candle {i} starts at {int(candles.ts_ms[i])} ms "
            f"({ms_to_iso(int(candles.ts_ms[i]))}), not on the "
            f"{kind.timeframe} grid of the unit {ms_to_iso(meta.unit.start_ms)} .. "
            f"{ms_to_iso(meta.unit.end_ms)}"
        )


def _bi5_ticks(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    ticks = decode_bi5_ticks(payload, meta.unit.start_ms)
    return Decoded(ticks, _bi5_scale(meta, "bi5 ticks"), VOLUME_MILLIONS)


def _bi5_candles(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    length = meta.unit.end_ms - meta.unit.start_ms
    candles = decode_bi5_candles(payload, meta.unit.start_ms, period_ms=length)
    _check_grid(candles, meta, kind, "bi5 candles")
    return Decoded(candles, _bi5_scale(meta, "bi5 candles"), VOLUME_MILLIONS)


def _json_ticks(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    ticks, scale = decode_json_ticks(payload)
    return Decoded(ticks, scale, VOLUME_MILLIONS)


def _json_candles(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    candles, scale = decode_json_candles(payload)
    _check_grid(candles, meta, kind, "json candles")
    return Decoded(candles, scale, VOLUME_MILLIONS)


def _deriv_ticks(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    ticks, scale = decode_deriv_ticks(payload, meta.unit.start_ms, meta.unit.end_ms)
    return Decoded(ticks, scale, VOLUME_NONE)


def _deriv_candles(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    candles, scale = decode_deriv_candles(payload, meta.unit.start_ms, meta.unit.end_ms)
    return Decoded(candles, scale, VOLUME_NONE)


def _polygon(meta: RawPayloadMeta, payload: bytes, kind: Kind) -> Decoded:
    aggs = decode_polygon_aggs(
        payload, meta.unit.start_ms, meta.unit.end_ms, ticker=meta.source_code
    )
    quality = {"source_delayed": aggs.delayed_pages} if aggs.delayed_pages else {}
    return Decoded(aggs.candles, aggs.scale, aggs.volume_unit, quality)


def _millions(meta: RawPayloadMeta) -> str:
    return VOLUME_MILLIONS


def _no_volume(meta: RawPayloadMeta) -> str:
    return VOLUME_NONE


def _polygon_unit(meta: RawPayloadMeta) -> str:
    return volume_unit_for(meta.source_code, 0, 0)


FORMATS: dict[str, PayloadFormat] = {
    "dukascopy-bi5-ticks": PayloadFormat(_bi5_ticks, None, _millions),
    "dukascopy-json-ticks": PayloadFormat(_json_ticks, None, _millions),
    "dukascopy-bi5-candles": PayloadFormat(
        None, _bi5_candles, _millions, ("bid", "ask"), dense=True
    ),
    "dukascopy-json-candles": PayloadFormat(None, _json_candles, _millions, ("bid", "ask")),
    "deriv-ticks-history": PayloadFormat(_deriv_ticks, _deriv_candles, _no_volume, ("mid",)),
    "polygon-aggs": PayloadFormat(None, _polygon, _polygon_unit, ("trade",)),
}
"""Every payload format (``tp-format``) the decoder knows."""


@dataclass(frozen=True, slots=True)
class DecodedUnit:
    """A decoded payload: its encoded batches (at least one), its number of rows (ticks or
    candles, ``candles`` saying which) and the decoded candles not stored, by reason
    (``flat``, ``open``: see :mod:`tickpipe_decoder.candle_rules`)."""

    batches: list[bytes]
    rows: int
    candles: bool = False
    dropped: dict[str, int] = field(default_factory=dict)


def _kind(meta: RawPayloadMeta) -> Kind:
    try:
        return Kind.parse(meta.unit.kind)
    except KindError as e:
        raise DecodeError(f"raw payload header 'tp-kind': {e}") from None


def _decode(meta: RawPayloadMeta, payload: bytes) -> tuple[Kind, PayloadFormat, Decoded]:
    fmt = FORMATS.get(meta.format)
    if fmt is None:
        raise DecodeError(f"unknown payload format {meta.format!r} (known: {', '.join(FORMATS)})")
    kind = _kind(meta)
    decoder = fmt.candles if kind.is_candles else fmt.ticks
    if decoder is None:
        holds = "ticks" if fmt.ticks is not None else "candles"
        raise DecodeError(
            f"format {meta.format!r} holds {holds}, but the unit's kind is {meta.unit.kind!r}"
        )
    if kind.is_candles and kind.side not in fmt.sides:
        raise DecodeError(
            f"format {meta.format!r} holds {' and '.join(fmt.sides)} candles, "
            f"not the {kind.side} candles of kind {meta.unit.kind!r}"
        )
    if not payload:
        empty: Ticks | Candles = Candles.empty() if kind.is_candles else Ticks.empty()
        return kind, fmt, Decoded(empty, None, fmt.volume_unit(meta))
    return kind, fmt, decoder(meta, payload, kind)


def decode_payload(meta: RawPayloadMeta, payload: bytes, max_batch_bytes: int) -> DecodedUnit:
    """Encoded batches (``wire.batch`` format) of one raw payload, at least one.

    Tick kinds give :class:`TickBatch` parts, candle kinds :class:`CandleBatch` parts, sized
    for the validated batch (with its flags column: ``VALIDATED_ROW_BYTES`` or
    ``VALIDATED_CANDLE_ROW_BYTES`` per row) so that every stage's records stay under
    ``max_batch_bytes``. Prices stay in integer points with the payload's scale (JSON
    ``multiplier``, Deriv ``pip_size``/decimals, Polygon decimals, or for ``.bi5`` the scale the
    fetcher recorded); when the payload does not say (no price in it) the fetcher's
    ``price_scale``, or 0 when that is unknown too. ``source_code``, ``asset_class`` and
    ``suspect_empty`` are copied from ``meta``.

    Raises :class:`DecodeError` for an unknown format, a kind the format does not hold, a
    malformed ``tp-kind``, an unknown ``.bi5`` scale, or a payload that does not decode.
    """
    kind, fmt, decoded = _decode(meta, payload)
    rows = decoded.rows
    dropped: dict[str, int] = {}
    if isinstance(rows, Candles):
        assert kind.timeframe is not None
        if fmt.dense:
            flat = flat_mask(rows)
            if flat.any():
                dropped["flat"] = int(flat.sum())
                rows = rows.take(~flat)
        closed = closed_mask(rows.ts_ms, kind.timeframe, meta.fetched_at_ms)
        if not closed.all():
            dropped["open"] = int(len(closed) - closed.sum())
            rows = rows.take(closed)
    if decoded.scale is not None:
        scale = decoded.scale
    else:
        scale = meta.price_scale if meta.price_scale >= 0 else 0
    candles = isinstance(rows, Candles)
    row_bytes = VALIDATED_CANDLE_ROW_BYTES if candles else VALIDATED_ROW_BYTES
    columns = list(CANDLE_COLUMNS if candles else TICK_COLUMNS)
    now = int(time.time() * 1000)
    slices = split_rows(len(rows), row_bytes, max_batch_bytes)
    batches: list[bytes] = []
    for i, s in enumerate(slices):
        batch_meta = BatchMeta(
            unit=meta.unit,
            part=i,
            part_count=len(slices),
            rows=s.stop - s.start,
            price_scale=scale,
            payload_sha256=meta.sha256,
            request_id=meta.request_id,
            fetched_at_ms=meta.fetched_at_ms,
            decoded_at_ms=now,
            volume_unit=decoded.volume_unit,
            quality=dict(decoded.quality) if i == 0 else {},
            decoder_version=DECODER_VERSION,
            columns=list(columns),
            source_code=meta.source_code,
            asset_class=meta.asset_class,
            suspect_empty=bool(meta.suspect_empty),
        )
        if isinstance(rows, Candles):
            batches.append(encode_batch(CandleBatch(batch_meta, rows.take(s))))
        else:
            batches.append(encode_batch(TickBatch(batch_meta, rows.take(s))))
    return DecodedUnit(batches, len(rows), candles, dropped)
