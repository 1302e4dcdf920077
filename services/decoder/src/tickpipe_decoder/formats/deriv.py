"""Decoder for Deriv ``ticks_history`` replies, format ``deriv-ticks-history``
(``../shared/docs/deriv.md §3–§5``).

The payload is a JSON array of reply objects, one per page, in any order (the fetcher pages
backwards, §4). A page is ``msg_type`` ``history`` — ticks: ``history.prices`` and
``history.times`` (epoch **seconds**), same length — or ``candles`` — ``candles: [{epoch, open,
high, low, close}]`` with ``epoch`` the start of the candle in epoch seconds (§3.1, §3.2).
Captures from 2015–2018 carry prices and even times as JSON strings (§3.4), so every numeric
field is read leniently: a JSON number, or a string holding a decimal number (``"184.7895"``).
Anything else is a :class:`~tickpipe_decoder.errors.DecodeError` naming the page, the index and
the field.

How Deriv data map onto tickpipe rows:

* **Ticks.** Deriv quotes one price per tick (forex: the middle of bid and ask; synthetic
  indices: the index value). A tick is stored as ``bid = ask = quote`` (spread 0) with NaN
  volumes (``volume_unit`` ``none``): Deriv publishes no volume.
* **Candles** are ``mid`` candles with NaN volume (``none``).
* **Prices** become integer points from their exact decimal text, never through a binary float.
  The scale is ``pip_size`` (the number of decimals Deriv quotes the symbol with, §3.1), raised
  to the most decimals any price text of the payload has, so no digit is ever lost; servers that
  send no ``pip_size`` (2018 captures) leave the decimals alone to decide: ``"184.7895"`` and
  ``184.7895`` both count 4, ``"3481.830"`` counts 3.
* **Pages** are merged: sorted by time, one row per epoch (the first page in payload order wins,
  :func:`~tickpipe_decoder.formats.pages.merge_index`), rows outside the unit dropped.
* A reply with an ``error`` object (§5), e.g. ``InputValidationFailed`` or ``RateLimit``, makes
  the whole payload a :class:`DecodeError` naming the code: the fetcher should not have stored
  it, and a unit without that page's rows would silently miss data.

Candles of a period that had not closed when fetched (Deriv's "partial last candle", §3.4) are
dropped by the caller, for every candle format alike (``tickpipe_decoder.candle_rules``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks

from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.pages import (
    MAX_ABS_POINTS,
    MAX_SCALE,
    check_row_count,
    json_type,
    merge_index,
    parse_pages,
    shown,
)

WHAT = "deriv ticks-history"
MAX_EPOCH_S = 253_402_300_799
"""Latest epoch second accepted (9999-12-31T23:59:59Z)."""
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_NUMBER_TEXT = 64
_MAX_POINT_DIGITS = 16  # 2^53 has 16 digits
_MAX_WHOLE_DIGITS = 18
_CANDLE_FIELDS = ("epoch", "open", "high", "low", "close")
_PRICE_FIELDS = _CANDLE_FIELDS[1:]
_MSG_TYPES = ("history", "candles")


def _decimal(value: Any, where: str) -> Decimal:
    """A JSON number or numeric string as an exact :class:`Decimal`."""
    if isinstance(value, bool):
        raise DecodeError(f"{WHAT}: {where} is a boolean, expected a number or a numeric string")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):  # parsed from JSON text: always finite
        return value
    if isinstance(value, float):  # only the NaN / Infinity literals parse as float here
        raise DecodeError(f"{WHAT}: {where} is {value}, not a finite number")
    if isinstance(value, str):
        if len(value) <= _MAX_NUMBER_TEXT and _NUMBER_TEXT.fullmatch(value):
            return Decimal(value)
        raise DecodeError(f"{WHAT}: {where} is the string {shown(value)}, not a decimal number")
    raise DecodeError(
        f"{WHAT}: {where} is {json_type(value)}, expected a number or a numeric string"
    )


def _decimals(d: Decimal) -> int:
    """Digits after the decimal point as written: ``3481.830`` → 3, ``17`` → 0."""
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)  # finite by construction
    return max(0, -exponent)


def _whole(value: Any, where: str, what: str, low: int, high: int) -> int:
    """A whole number in ``low..high`` given as a JSON number or numeric string."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        d = _decimal(value, where)
        if d.adjusted() > _MAX_WHOLE_DIGITS:  # checked first: int() of 1e999999 is costly
            raise DecodeError(f"{WHAT}: {where} is {shown(value)}, outside {low}..{high} {what}")
        if d != d.to_integral_value():
            raise DecodeError(f"{WHAT}: {where} is {shown(value)}, not a whole number of {what}")
        n = int(d)
    if not low <= n <= high:
        raise DecodeError(f"{WHAT}: {where} is {n}, outside {low}..{high} {what}")
    return n


def _points(values: list[Decimal], scale: int, where: Callable[[int], str]) -> NDArray[np.int64]:
    """``d × 10^scale`` of every value as int64 points; exact because ``scale`` is at least
    each value's decimals. ``where(k)`` names value ``k`` in the error for one out of range."""
    out: list[int] = []
    for k, d in enumerate(values):
        if not d:
            out.append(0)  # a zero may carry any exponent: 0E+999 must not be scaled
            continue
        digits, exponent = d.as_tuple()[1:]
        assert isinstance(exponent, int)
        # Bound the digits before converting: a huge exponent would make a huge int.
        n = int(d.scaleb(scale)) if len(digits) + exponent + scale <= _MAX_POINT_DIGITS else None
        if n is None or not -MAX_ABS_POINTS < n < MAX_ABS_POINTS:
            raise DecodeError(f"{WHAT}: {where(k)} is {d}, out of range for scale {scale}")
        out.append(n)
    return np.array(out, dtype=np.int64)


def _check_reply(page: dict[str, Any], p: int, expected: str) -> None:
    error = page.get("error")
    if error is not None:
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        detail = f": {shown(message, 200)}" if isinstance(message, str) else ""
        raise DecodeError(f"{WHAT}: page {p} is an error reply, code {code!r}{detail}")
    if "msg_type" not in page:
        raise DecodeError(f"{WHAT}: page {p} has no 'msg_type' (expected 'history' or 'candles')")
    msg_type = page["msg_type"]
    if msg_type not in _MSG_TYPES:
        raise DecodeError(
            f"{WHAT}: page {p} has unknown msg_type {shown(msg_type)} "
            "(expected 'history' or 'candles')"
        )
    if msg_type != expected:
        unit = "tick" if expected == "history" else "candle"
        raise DecodeError(
            f"{WHAT}: page {p} is a {msg_type!r} reply, a {unit} unit needs {expected!r} replies"
        )


def _pip_size(page: dict[str, Any], p: int) -> int | None:
    value = page.get("pip_size")
    if value is None:
        return None
    return _whole(value, f"page {p} field 'pip_size'", "decimals", 0, MAX_SCALE)


def _array(obj: dict[str, Any], name: str, where: str) -> list[Any]:
    if name not in obj:
        raise DecodeError(f"{WHAT}: {where} has no {name!r}")
    value = obj[name]
    if not isinstance(value, list):
        raise DecodeError(
            f"{WHAT}: {where} field {name!r} is {json_type(value)}, expected an array"
        )
    return value


def _scale(pip: int | None, decimals: int, widest: str) -> int:
    """``pip_size`` raised to ``decimals``; ``widest`` names the price with the most decimals."""
    if decimals > MAX_SCALE:
        raise DecodeError(
            f"{WHAT}: {widest} has {decimals} decimals, more than the limit {MAX_SCALE}"
        )
    return decimals if pip is None else max(pip, decimals)


def _max_pip(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _epoch_ms(value: Any, where: str) -> int:
    return 1000 * _whole(value, where, "epoch seconds", 0, MAX_EPOCH_S)


def decode_deriv_ticks(
    body: bytes, unit_start_ms: int, unit_end_ms: int
) -> tuple[Ticks, int | None]:
    """Decode the ``history`` pages of a tick unit.

    :param body: JSON array of ``history`` reply objects (pages in any order).
    :param unit_start_ms: unit start, ms (inclusive); ``unit_end_ms``: unit end (exclusive).
    :returns: ``(ticks, scale)``. ``ticks``: N rows sorted by time, one per epoch, inside the
        unit; ``ts_ms`` int64 = epoch seconds × 1000; ``bid`` = ``ask`` int64 points of the
        quote; volumes float64 NaN. ``scale``: see the module docstring; ``None`` when the
        payload holds no price and no ``pip_size``.
    :raises DecodeError: invalid JSON; not an array of objects; an error reply; a missing or
        unknown ``msg_type`` or a ``candles`` reply; a missing ``history`` object or column;
        ``prices`` and ``times`` of different lengths; a value that is not a number or numeric
        string; a non-whole or out-of-range epoch; a price beyond 2^53 points; a scale above
        :data:`~tickpipe_decoder.formats.pages.MAX_SCALE`; more than ``MAX_ROWS`` ticks.
    """
    pages = parse_pages(body, WHAT, exact=True)
    times: list[int] = []
    prices: list[Decimal] = []
    where: list[tuple[int, int]] = []
    pip: int | None = None
    decimals, widest = 0, ""
    for p, page in enumerate(pages):
        _check_reply(page, p, "history")
        pip = _max_pip(pip, _pip_size(page, p))
        history = page.get("history")
        if not isinstance(history, dict):
            raise DecodeError(
                f"{WHAT}: page {p} field 'history' is {json_type(history)}, expected an object"
            )
        col_prices = _array(history, "prices", f"page {p} history")
        col_times = _array(history, "times", f"page {p} history")
        if len(col_prices) != len(col_times):
            raise DecodeError(
                f"{WHAT}: page {p} history.prices has {len(col_prices)} values, "
                f"history.times has {len(col_times)}"
            )
        check_row_count(len(times) + len(col_times), WHAT)
        for i, (t, q) in enumerate(zip(col_times, col_prices, strict=True)):
            # Fast paths for the common types; the checking functions name the bad value.
            if type(t) is int and 0 <= t <= MAX_EPOCH_S:
                times.append(t * 1000)
            else:
                times.append(_epoch_ms(t, f"page {p} history.times[{i}]"))
            d = q if type(q) is Decimal else _decimal(q, f"page {p} history.prices[{i}]")
            if _decimals(d) > decimals:
                decimals, widest = _decimals(d), f"page {p} history.prices[{i}] {d}"
            prices.append(d)
            where.append((p, i))
    if not prices:
        return Ticks.empty(), pip
    scale = _scale(pip, decimals, widest)
    quote = _points(prices, scale, lambda k: "page {} history.prices[{}]".format(*where[k]))
    ts = np.array(times, dtype=np.int64)
    keep = merge_index(ts, unit_start_ms, unit_end_ms)
    nan = np.full(len(keep), np.nan, dtype=np.float64)
    return Ticks(ts[keep], quote[keep], quote[keep], nan, nan.copy()), scale


def decode_deriv_candles(
    body: bytes, unit_start_ms: int, unit_end_ms: int
) -> tuple[Candles, int | None]:
    """Decode the ``candles`` pages of a candle unit.

    :param body: JSON array of ``candles`` reply objects (pages in any order).
    :param unit_start_ms: unit start, ms (inclusive); ``unit_end_ms``: unit end (exclusive).
    :returns: ``(candles, scale)``. ``candles``: N rows sorted by time, one per epoch, inside the
        unit; ``ts_ms`` int64 = ``epoch`` × 1000 (candle start); OHLC int64 points; ``volume``
        float64 NaN. Candles still open at fetch time are *not* removed here (the caller knows
        the fetch time and the timeframe). ``scale``: as :func:`decode_deriv_ticks`.
    :raises DecodeError: as :func:`decode_deriv_ticks`, for ``candles`` replies: a candle that
        is not an object or lacks one of ``epoch``, ``open``, ``high``, ``low``, ``close``.
    """
    pages = parse_pages(body, WHAT, exact=True)
    epochs: list[int] = []
    prices: list[Decimal] = []
    where: list[tuple[int, int]] = []
    pip: int | None = None
    decimals, widest = 0, ""
    for p, page in enumerate(pages):
        _check_reply(page, p, "candles")
        pip = _max_pip(pip, _pip_size(page, p))
        candles = _array(page, "candles", f"page {p}")
        check_row_count(len(epochs) + len(candles), WHAT)
        for i, candle in enumerate(candles):
            if not isinstance(candle, dict):
                raise DecodeError(
                    f"{WHAT}: page {p} candle {i} is {json_type(candle)}, expected an object"
                )
            for name in _CANDLE_FIELDS:
                if name not in candle:
                    raise DecodeError(f"{WHAT}: page {p} candle {i} has no {name!r}")
            t = candle["epoch"]
            if type(t) is int and 0 <= t <= MAX_EPOCH_S:
                epochs.append(t * 1000)
            else:
                epochs.append(_epoch_ms(t, f"page {p} candle {i} field 'epoch'"))
            for name in _PRICE_FIELDS:
                q = candle[name]
                d = q if type(q) is Decimal else _decimal(q, f"page {p} candle {i} field {name!r}")
                if _decimals(d) > decimals:
                    decimals, widest = _decimals(d), f"page {p} candle {i} field {name!r} {d}"
                prices.append(d)
            where.append((p, i))
    if not epochs:
        return Candles.empty(), pip
    scale = _scale(pip, decimals, widest)

    def named(k: int) -> str:
        p, i = where[k // 4]
        return f"page {p} candle {i} field {_PRICE_FIELDS[k % 4]!r}"

    ohlc = _points(prices, scale, named).reshape(-1, 4)
    ts = np.array(epochs, dtype=np.int64)
    keep = merge_index(ts, unit_start_ms, unit_end_ms)
    return (
        Candles(
            ts_ms=ts[keep],
            open=ohlc[keep, 0],
            high=ohlc[keep, 1],
            low=ohlc[keep, 2],
            close=ohlc[keep, 3],
            volume=np.full(len(keep), np.nan, dtype=np.float64),
        ),
        scale,
    )
