"""Decoder for Dukascopy JSON API responses (``../shared/docs/dukascopy.md §3``).

Ticks and candles arrive as one JSON object of delta-encoded columns (§3.2): a bucket
``timestamp``, a ``multiplier`` (the size of one point, ``10^-scale``), base prices, and arrays
of time and price deltas accumulated onto them. Reconstruction here is integer-only
(``np.cumsum`` over int64 points and ms), so prices are exact. Every check dukascopy-node makes
(§3.3) raises :class:`~tickpipe_decoder.errors.DecodeError`, and so does anything else that is
not a well-formed response; no other exception escapes for bad input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks

from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.json_body import MAX_BODY_BYTES, load_json
from tickpipe_decoder.formats.number_arrays import split_columns
from tickpipe_decoder.formats.volumes import units_to_millions

"""Largest response body accepted."""
MAX_ROWS = 10_000_000
"""Largest number of ticks or candles accepted in one response."""
MAX_DELTA = 2**32
"""Largest absolute delta (ms, steps or points) accepted; keeps every cumsum far from overflow."""
MAX_ABS_BASE = 2**53
"""Largest absolute timestamp (ms) or base price (points) accepted: exact as float64."""
MIN_SCALE, MAX_SCALE = -9, 15
"""Accepted price scales (``multiplier`` from ``1e9`` down to ``1e-15``)."""

_TICK_COLUMNS = ("times", "asks", "bids", "askVolumes", "bidVolumes")
_CANDLE_COLUMNS = ("times", "opens", "highs", "lows", "closes", "volumes")
_CANDLE_BASES = ("open", "high", "low", "close")
_TICK_INTEGER = (True, True, True, False, False)
_CANDLE_INTEGER = (True, True, True, True, True, False)
_NUMBER_TYPES = frozenset({int, float})


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _parse(body: bytes, what: str) -> dict[str, Any]:
    if len(body) == 0:
        raise DecodeError(f"{what}: empty body (0 bytes) is not a JSON response")
    obj = load_json(body, what)
    if not isinstance(obj, dict):
        raise DecodeError(
            f"{what}: top-level JSON value is a {_type_name(obj)}, expected an object"
        )
    return obj


def _parse_columns(
    body: bytes, names: tuple[str, ...], integer: tuple[bool, ...], what: str
) -> tuple[dict[str, Any], list[NDArray[Any]] | None]:
    """The response object and, when the fast path took the body, its columns already parsed.

    The fast path (:func:`~tickpipe_decoder.formats.number_arrays.split_columns`) only takes
    bodies it fully understands whose columns pass every check of :func:`_column`; anything
    else, errors included, goes the ``json.loads`` way, so messages and their order stay the
    same. ``None`` columns: call :func:`_columns` on the object.
    """
    if 0 < len(body) <= MAX_BODY_BYTES:
        fast = split_columns(body, names, integer)
        if fast is not None and _columns_pass(names, integer, fast[1]):
            return fast
    return _parse(body, what), None


def _columns_pass(
    names: tuple[str, ...], integer: tuple[bool, ...], cols: list[NDArray[Any]]
) -> bool:
    """Whether fast-parsed columns pass the checks :func:`_column` and :func:`_columns` make."""
    n = len(cols[0])
    if n > MAX_ROWS or any(len(col) != n for col in cols):
        return False
    for name, is_int, col in zip(names, integer, cols, strict=True):
        if is_int and n and int(np.abs(col).max()) > MAX_DELTA:
            return False
        if name == "times" and n and int(col.min()) < 0:
            return False
    return True


def _number(obj: dict[str, Any], name: str, what: str, *, nullable: bool = False) -> float | None:
    """A numeric field as float (ints below 2^53 stay exact), or None when null is allowed."""
    if name not in obj:
        raise DecodeError(f"{what}: missing field {name!r}")
    v = obj[name]
    if v is None and nullable:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DecodeError(f"{what}: field {name!r} is {_type_name(v)}, expected a number")
    try:
        f = float(v)
    except OverflowError:
        raise DecodeError(f"{what}: field {name!r} is an integer out of range") from None
    if not math.isfinite(f):
        raise DecodeError(f"{what}: field {name!r} is {f}, not finite")
    return f


def _integer(obj: dict[str, Any], name: str, what: str) -> int:
    v = _number(obj, name, what)
    assert v is not None
    if v != int(v):
        raise DecodeError(f"{what}: field {name!r} is {v}, expected an integer")
    if abs(v) >= MAX_ABS_BASE:
        raise DecodeError(f"{what}: field {name!r} is {v}, out of range (|x| < 2^53)")
    return int(v)


def scale_from_multiplier(multiplier: float, what: str = "json") -> int:
    """Price scale (number of decimals) from a response's ``multiplier`` (§2.6, §3.2).

    ``1e-5 → 5``, ``0.1 → 1``, ``1 → 0``, ``10 → -1`` (one point is ten price units; a negative
    scale means ``price = points × 10^|scale|``).

    :raises DecodeError: non-positive, not a power of ten (relative tolerance 1e-9), or a scale
        outside :data:`MIN_SCALE` … :data:`MAX_SCALE`.
    """
    if not multiplier > 0:
        raise DecodeError(f"{what}: field 'multiplier' is {multiplier}, expected a positive number")
    scale = -round(math.log10(multiplier))
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise DecodeError(
            f"{what}: field 'multiplier' is {multiplier}, scale {scale} is outside "
            f"{MIN_SCALE}..{MAX_SCALE}"
        )
    if abs(multiplier * 10.0**scale - 1.0) > 1e-9:
        raise DecodeError(f"{what}: field 'multiplier' is {multiplier}, not a power of ten")
    return scale


def _points(value: float, name: str, scale: int, what: str) -> int:
    """Base price in price units → integer points: ``round(x / multiplier)`` (§3.2)."""
    pts = value * 10.0**scale if scale >= 0 else value / 10.0 ** (-scale)
    if not abs(pts) < MAX_ABS_BASE:
        raise DecodeError(f"{what}: field {name!r} is {value}, out of range for scale {scale}")
    return round(pts)


def _first_bad(values: list[Any]) -> tuple[int, Any]:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int | float):
            return i, v
        if isinstance(v, int) and abs(v) >= 2**63:
            return i, v
    return -1, None  # pragma: no cover - only called when numpy found a bad element


def _column(
    obj: dict[str, Any], name: str, what: str, *, integer: bool, non_negative: bool = False
) -> NDArray[Any]:
    """A JSON number array as int64 (``integer``) or float64, every element validated."""
    if name not in obj:
        raise DecodeError(f"{what}: missing column {name!r}")
    values = obj[name]
    if not isinstance(values, list):
        raise DecodeError(f"{what}: column {name!r} is {_type_name(values)}, expected an array")
    if len(values) > MAX_ROWS:
        raise DecodeError(f"{what}: column {name!r} has {len(values)} values, limit is {MAX_ROWS}")
    dtype = np.int64 if integer else np.float64
    if not values:
        return np.empty(0, dtype=dtype)
    # The set of element types is built at C speed; it catches bools, which numpy would
    # silently turn into 0/1 in a list that also holds numbers.
    if set(map(type, values)) <= _NUMBER_TYPES:
        arr = np.asarray(values)
    else:
        arr = np.asarray([None])  # report the first non-number below
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        i, v = _first_bad(values)
        if isinstance(v, list):
            shown = "an array"
        elif isinstance(v, int) and not isinstance(v, bool):
            shown = "an integer beyond int64"
        else:
            shown = _type_name(v)
        raise DecodeError(f"{what}: column {name!r} has {shown} at index {i}, expected a number")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise DecodeError(f"{what}: column {name!r} value {arr[i]} at index {i} is not finite")
        if integer:
            frac = arr != np.trunc(arr)
            if frac.any():
                i = int(np.argmax(frac))
                raise DecodeError(
                    f"{what}: column {name!r} value {arr[i]} at index {i} is not an integer"
                )
    if integer:
        big = np.abs(arr) > MAX_DELTA
        if big.any():
            i = int(np.argmax(big))
            raise DecodeError(
                f"{what}: column {name!r} value {arr[i]} at index {i} exceeds the delta limit 2^32"
            )
    if non_negative:
        neg = arr < 0
        if neg.any():
            i = int(np.argmax(neg))
            raise DecodeError(f"{what}: column {name!r} value {arr[i]} at index {i} is negative")
    return arr.astype(dtype, copy=False)


def _columns(
    obj: dict[str, Any], names: tuple[str, ...], integer: tuple[bool, ...], what: str
) -> list[NDArray[Any]]:
    cols = [
        _column(obj, name, what, integer=is_int, non_negative=(name == "times"))
        for name, is_int in zip(names, integer, strict=True)
    ]
    n = len(cols[0])
    for name, col in zip(names[1:], cols[1:], strict=True):
        if len(col) != n:
            raise DecodeError(
                f"{what}: column {name!r} has {len(col)} values, {names[0]!r} has {n}"
            )
    return cols


def decode_json_ticks(body: bytes) -> tuple[Ticks, int]:
    """Decode a JSON API ticks response (``ticks/<CODE>/<Y>/<M>/<D>/<H>`` or ``?from=``, §3.2).

    :param body: the response body (UTF-8 JSON object).
    :returns: ``(ticks, scale)``. ``ticks`` has N rows: ``ts_ms`` int64 ms = ``timestamp`` plus
        the running sum of ``times``; ``ask``/``bid`` int64 points = base price in points plus
        the running sum of ``asks``/``bids``; ``ask_volume``/``bid_volume`` float64 **millions**
        (the response's units / 10^6, decimal-exact: :func:`units_to_millions`). ``scale`` is
        derived from ``multiplier`` (:func:`scale_from_multiplier`). An empty bucket
        (``times: []``, null base prices, §3.3) gives empty ticks and the scale.
    :raises DecodeError: invalid/truncated JSON or not an object; a missing or mistyped field;
        ``multiplier`` not a positive power of ten; columns of different lengths; a null,
        non-numeric or non-finite element; a non-integer or negative time delta; a non-integer
        price delta; null base prices with non-empty ``times``; more than :data:`MAX_ROWS` rows.
    """
    what = "json ticks"
    obj, parsed = _parse_columns(body, _TICK_COLUMNS, _TICK_INTEGER, what)
    timestamp = _integer(obj, "timestamp", what)
    multiplier = _number(obj, "multiplier", what)
    assert multiplier is not None
    scale = scale_from_multiplier(multiplier, what)
    times, asks, bids, ask_vol, bid_vol = parsed or _columns(
        obj, _TICK_COLUMNS, _TICK_INTEGER, what
    )
    ask = _number(obj, "ask", what, nullable=True)
    bid = _number(obj, "bid", what, nullable=True)
    if len(times) == 0:
        return Ticks.empty(), scale
    for name, base in (("ask", ask), ("bid", bid)):
        if base is None:
            raise DecodeError(
                f"{what}: base price {name!r} is null but 'times' has {len(times)} values"
            )
    assert ask is not None and bid is not None
    ticks = Ticks(
        ts_ms=np.cumsum(times) + np.int64(timestamp),
        bid=np.cumsum(bids) + np.int64(_points(bid, "bid", scale, what)),
        ask=np.cumsum(asks) + np.int64(_points(ask, "ask", scale, what)),
        bid_volume=units_to_millions(bid_vol),
        ask_volume=units_to_millions(ask_vol),
    )
    return ticks, scale


def decode_json_candles(body: bytes) -> tuple[Candles, int]:
    """Decode a JSON API candles response (``candles/<minute|hour|day>/...``, §3.2).

    Candles are sparse: only traded periods are returned and none are filled in here (§3.2:
    whether to store flats is the pipeline's decision).

    :param body: the response body (UTF-8 JSON object).
    :returns: ``(candles, scale)``. ``candles`` has N rows: ``ts_ms`` int64 ms = ``timestamp``
        plus ``shift`` × the running sum of ``times``; ``open``/``high``/``low``/``close``
        int64 points, each its base price plus the running sum of its own delta column;
        ``volume`` float64 millions, as sent. An empty bucket gives empty candles and the scale.
    :raises DecodeError: as :func:`decode_json_ticks`, plus a missing, non-integer or
        non-positive ``shift`` and candle offsets beyond int64.
    """
    what = "json candles"
    obj, parsed = _parse_columns(body, _CANDLE_COLUMNS, _CANDLE_INTEGER, what)
    timestamp = _integer(obj, "timestamp", what)
    multiplier = _number(obj, "multiplier", what)
    assert multiplier is not None
    scale = scale_from_multiplier(multiplier, what)
    shift = _integer(obj, "shift", what)
    if shift <= 0:
        raise DecodeError(f"{what}: field 'shift' is {shift}, expected a positive number of ms")
    times, opens, highs, lows, closes, volumes = parsed or _columns(
        obj, _CANDLE_COLUMNS, _CANDLE_INTEGER, what
    )
    bases = [_number(obj, name, what, nullable=True) for name in _CANDLE_BASES]
    if len(times) == 0:
        return Candles.empty(), scale
    for name, base in zip(_CANDLE_BASES, bases, strict=True):
        if base is None:
            raise DecodeError(
                f"{what}: base price {name!r} is null but 'times' has {len(times)} values"
            )
    steps = np.cumsum(times)
    if int(steps[-1]) * shift >= MAX_ABS_BASE:
        raise DecodeError(
            f"{what}: candle offsets reach {int(steps[-1])} × {shift} ms, beyond the range of ms"
        )
    prices: list[NDArray[np.int64]] = []
    for deltas, base, name in zip((opens, highs, lows, closes), bases, _CANDLE_BASES, strict=True):
        assert base is not None
        prices.append(np.cumsum(deltas) + np.int64(_points(base, name, scale, what)))
    candles = Candles(
        ts_ms=steps * np.int64(shift) + np.int64(timestamp),
        open=prices[0],
        high=prices[1],
        low=prices[2],
        close=prices[3],
        volume=volumes.astype(np.float64, copy=False),
    )
    return candles, scale
