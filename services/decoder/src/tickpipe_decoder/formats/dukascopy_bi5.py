"""Decoder for legacy Dukascopy datafeed ``.bi5`` files (``../shared/docs/dukascopy.md §2``).

A non-empty ``.bi5`` is an "LZMA alone" stream (§2.2) of fixed-size big-endian records: 20-byte
ticks (§2.3) or 24-byte candles stored open, close, low, high (§2.4). A 0-byte payload means
"no data" (§2.2, §2.8). Decoding is split in two so that services can run the CPU-heavy
:func:`decompress_bi5` in a thread pool (``lzma`` releases the GIL) and the cheap vectorized
record parsing wherever they like:

>>> raw = decompress_bi5(payload)                          # bytes, GIL released while inflating
>>> ticks = decode_bi5_tick_records(raw, hour_start_ms)    # numpy only

:func:`decode_bi5_ticks` and :func:`decode_bi5_candles` do both steps. Everything raises only
:class:`~tickpipe_decoder.errors.DecodeError` for bad input.
"""

from __future__ import annotations

import lzma

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks

from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.volumes import float32_to_shortest_float64

#: Tick record, §2.3: ms offset in the hour, ask and bid in points, ask and bid volume (millions).
BI5_TICK_DTYPE = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)
#: Candle record, §2.4: second offset in the period, then open, CLOSE, LOW, HIGH, volume.
BI5_CANDLE_DTYPE = np.dtype(
    [
        ("sec", ">u4"),
        ("open", ">u4"),
        ("close", ">u4"),
        ("low", ">u4"),
        ("high", ">u4"),
        ("volume", ">f4"),
    ]
)
assert BI5_TICK_DTYPE.itemsize == 20 and BI5_CANDLE_DTYPE.itemsize == 24

LZMA_ALONE_HEADER_SIZE = 13
"""Properties byte, 4-byte dictionary size, 8-byte uncompressed size (§2.2)."""
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024
"""Largest decompressed payload accepted (a real hour of ticks is well below 1 MiB)."""
MAX_LZMA_MEMORY = 256 * 1024 * 1024
"""liblzma memory limit: bounds the dictionary a forged header can make it allocate."""
MAX_ROWS = 10_000_000
"""Largest number of records accepted in one payload."""
HOUR_MS = 3_600_000
_UNKNOWN_SIZE = 0xFFFF_FFFF_FFFF_FFFF


def decompress_bi5(payload: bytes, *, max_size: int = MAX_DECOMPRESSED_BYTES) -> bytes:
    """Inflate a ``.bi5`` payload (LZMA alone container, §2.2) to its raw records.

    :param payload: the file/HTTP body as received. ``b""`` (a closed hour, §2.2) gives ``b""``.
    :param max_size: refuse payloads that would inflate beyond this many bytes.
    :returns: the decompressed bytes (record parsing is left to the ``decode_*_records``
        functions). Bytes after the end of the LZMA stream are ignored.
    :raises DecodeError: ``"lzma: ..."`` when the header is short, declares more than
        ``max_size`` bytes, the stream is corrupt or truncated, or it inflates beyond
        ``max_size``. The declared size is checked *before* anything is decompressed.

    Safe to call from a worker thread; ``lzma`` releases the GIL while inflating.
    """
    n = len(payload)
    if n == 0:
        return b""
    if n < LZMA_ALONE_HEADER_SIZE:
        raise DecodeError(
            f"lzma: payload of {n} bytes is shorter than the {LZMA_ALONE_HEADER_SIZE}-byte "
            "LZMA-alone header"
        )
    declared = int.from_bytes(payload[5:13], "little")
    if declared != _UNKNOWN_SIZE and declared > max_size:
        raise DecodeError(
            f"lzma: header declares {declared} uncompressed bytes, more than the limit {max_size}"
        )
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=MAX_LZMA_MEMORY)
    try:
        out = dec.decompress(payload, max_length=max_size + 1)
    except lzma.LZMAError as exc:
        raise DecodeError(f"lzma: corrupt stream: {exc}") from None
    if len(out) > max_size:
        raise DecodeError(f"lzma: stream inflates beyond the limit of {max_size} bytes")
    if not dec.eof:
        declared_txt = "unknown" if declared == _UNKNOWN_SIZE else str(declared)
        raise DecodeError(
            f"lzma: truncated stream: {n} compressed bytes inflated to {len(out)} bytes before "
            f"the input ended (header declares {declared_txt})"
        )
    return out


def _records(raw: bytes, dtype: np.dtype[np.void], what: str) -> NDArray[np.void]:
    size = dtype.itemsize
    if len(raw) % size:
        raise DecodeError(
            f"{what}: decompressed {len(raw)} bytes is not a multiple of the {size}-byte record"
        )
    n = len(raw) // size
    if n > MAX_ROWS:
        raise DecodeError(f"{what}: {n} records is more than the limit of {MAX_ROWS}")
    return np.frombuffer(raw, dtype=dtype)


def _check_finite(vol: NDArray[np.float32], what: str, field: str) -> None:
    bad = ~np.isfinite(vol)
    if bad.any():
        i = int(np.argmax(bad))
        raise DecodeError(f"{what}: field {field!r} of record {i} is {float(vol[i])}, not finite")


def decode_bi5_tick_records(raw: bytes, hour_start_ms: int) -> Ticks:
    """Parse decompressed tick records (§2.3) into :class:`Ticks`.

    :param raw: output of :func:`decompress_bi5`; a multiple of 20 bytes.
    :param hour_start_ms: start of the file's UTC hour, ms since the epoch (from the URL path,
        whose month is zero-based, §2.1).
    :returns: N ticks: ``ts_ms`` int64 ms = ``hour_start_ms + offset``; ``ask``/``bid`` int64
        points (the scale is not in the file: §2.6); ``ask_volume``/``bid_volume`` float64
        millions, each the float64 nearest to the shortest decimal of the stored float32.
    :raises DecodeError: length not a multiple of 20, more than :data:`MAX_ROWS` records, an
        offset outside the hour (0 … 3 599 999), or a non-finite volume.
    """
    what = "bi5 ticks"
    rec = _records(raw, BI5_TICK_DTYPE, what)
    if len(rec) == 0:
        return Ticks.empty()
    ms = rec["ms"]
    over = ms >= HOUR_MS
    if over.any():
        i = int(np.argmax(over))
        raise DecodeError(
            f"{what}: record {i} has offset {int(ms[i])} ms, outside the hour (0..{HOUR_MS - 1})"
        )
    _check_finite(rec["ask_vol"], what, "ask_vol")
    _check_finite(rec["bid_vol"], what, "bid_vol")
    # One call for both columns: they share most distinct values, which are converted once.
    volumes = float32_to_shortest_float64(np.concatenate([rec["ask_vol"], rec["bid_vol"]]))
    n = len(rec)
    return Ticks(
        ts_ms=ms.astype(np.int64) + np.int64(hour_start_ms),
        bid=rec["bid"].astype(np.int64),
        ask=rec["ask"].astype(np.int64),
        bid_volume=volumes[n:],
        ask_volume=volumes[:n],
    )


def decode_bi5_candle_records(
    raw: bytes, period_start_ms: int, *, period_ms: int | None = None
) -> Candles:
    """Parse decompressed candle records (§2.4, on disk: sec, open, close, low, high, volume).

    :param raw: output of :func:`decompress_bi5`; a multiple of 24 bytes.
    :param period_start_ms: start of the file's period (UTC day for minute candles, month for
        hour candles, year for day candles), ms since the epoch.
    :param period_ms: optional length of that period; when given, every offset must fall in it.
    :returns: N candles in OHLC column order: ``ts_ms`` int64 = ``period_start_ms + sec × 1000``;
        prices int64 points; ``volume`` float64 millions (shortest decimal of the float32).
        Flats (volume 0) are kept as stored: the files are dense (§2.4).
    :raises DecodeError: length not a multiple of 24, too many records, an offset outside
        ``period_ms``, or a non-finite volume.
    """
    what = "bi5 candles"
    rec = _records(raw, BI5_CANDLE_DTYPE, what)
    if len(rec) == 0:
        return Candles.empty()
    offset_ms = rec["sec"].astype(np.int64) * 1000
    if period_ms is not None:
        over = offset_ms >= period_ms
        if over.any():
            i = int(np.argmax(over))
            raise DecodeError(
                f"{what}: record {i} has offset {int(rec['sec'][i])} s, outside the "
                f"{period_ms // 1000} s period"
            )
    _check_finite(rec["volume"], what, "volume")
    return Candles(
        ts_ms=offset_ms + np.int64(period_start_ms),
        open=rec["open"].astype(np.int64),
        high=rec["high"].astype(np.int64),
        low=rec["low"].astype(np.int64),
        close=rec["close"].astype(np.int64),
        volume=float32_to_shortest_float64(rec["volume"]),
    )


def decode_bi5_ticks(payload: bytes, hour_start_ms: int) -> Ticks:
    """Decode a ``.bi5`` tick file (``<SYMBOL>/YYYY/MM/DD/HHh_ticks.bi5``, §2.1–§2.3).

    :param payload: the body as served; ``b""`` (closed hour) gives empty :class:`Ticks`.
    :param hour_start_ms: start of the file's UTC hour in ms since the epoch.
    :returns: see :func:`decode_bi5_tick_records` (int64 ms, int64 points, float64 millions).
    :raises DecodeError: see :func:`decompress_bi5` and :func:`decode_bi5_tick_records`.
    """
    return decode_bi5_tick_records(decompress_bi5(payload), hour_start_ms)


def decode_bi5_candles(
    payload: bytes, period_start_ms: int, *, period_ms: int | None = None
) -> Candles:
    """Decode a ``.bi5`` candle file (``{BID,ASK}_candles_{min,hour,day}_1.bi5``, §2.1, §2.4).

    :param payload: the body as served; ``b""`` gives empty :class:`Candles`.
    :param period_start_ms: start of the file's day, month or year in ms since the epoch.
    :param period_ms: optional length of that period, to reject offsets beyond it.
    :returns: see :func:`decode_bi5_candle_records`.
    :raises DecodeError: see :func:`decompress_bi5` and :func:`decode_bi5_candle_records`.
    """
    return decode_bi5_candle_records(decompress_bi5(payload), period_start_ms, period_ms=period_ms)
