"""Decoder for Polygon (Massive) aggregate bars, format ``polygon-aggs``
(``../shared/docs/polygon.md §3–§5``).

The payload is a JSON array of the untouched page bodies of ``/v2/aggs/ticker/…/range/…``, in
the order fetched (the fetcher follows ``next_url``, §4). Each page is an object whose
``results`` array holds the bars; ``results`` absent or ``null`` means no bars (§3, §5). A bar
has ``t`` (int, **ms**, start of the bar window), ``o h l c`` (numbers; whole prices may come
without a decimal point, e.g. ``17506``) and optionally ``v`` (volume; index bars have none),
``vw``, ``n`` and ``otc``, which are ignored.

* **Prices** become integer points. Polygon sends binary floats, so the scale is the most
  decimals any price of the payload has in its shortest round-trip form (``repr``): 1.0735 → 4,
  17506 → 0. It is at most :data:`~tickpipe_decoder.formats.pages.MAX_SCALE` (12); a payload
  needing more is an error. Index values are computed floats with up to 11 decimals
  (``12085.67432708806`` in the I:NDX capture), which is why the limit is not 10. Every point
  value reads back as the exact float that was sent (``points / 10^scale == price``).
* **Volume unit**: ``ticks`` for forex (``C:`` tickers: the volume is the tick count, equal to
  ``n`` in the captures), ``none`` for indices (``I:``) and whenever bars exist but none has a
  ``v`` (volumes NaN), otherwise ``units`` (shares, coins, contracts).
* **Pages** are merged: sorted by time (``sort=desc`` pages come newest first), one bar per
  ``t`` (the first in payload order), bars outside the unit dropped.
* A page whose ``status`` is not ``OK`` or ``DELAYED`` (e.g. ``NOT_AUTHORIZED``, ``ERROR``) makes
  the payload a :class:`~tickpipe_decoder.errors.DecodeError` naming the status and message.

Bars of a period that had not closed when fetched are dropped by the caller, for every candle
format alike (``tickpipe_decoder.candle_rules``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.candles import Candles

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

WHAT = "polygon aggs"
OK_STATUSES = frozenset({"OK", "DELAYED"})
"""Page statuses that carry data (``DELAYED``: a plan with delayed data)."""
_PRICE_FIELDS = ("o", "h", "l", "c")
_POW10 = [10.0**s for s in range(MAX_SCALE + 1)]


@dataclass(frozen=True, slots=True)
class PolygonAggs:
    """A decoded ``polygon-aggs`` payload.

    ``candles``: bars as :class:`Candles` (int64 ms, int64 points, float64 volume or NaN).
    ``scale``: decimals of a point, ``None`` when the payload has no bar. ``volume_unit``:
    ``ticks``, ``units`` or ``none`` (see the module docstring).
    """

    candles: Candles
    scale: int | None
    volume_unit: str
    #: Pages whose ``status`` is ``DELAYED`` (a plan with delayed data): the quality report
    #: records them as ``source_delayed``.
    delayed_pages: int = 0


def volume_unit_for(ticker: str, bars: int, bars_with_volume: int) -> str:
    """The ``volume_unit`` of a payload of ``ticker`` with ``bars`` bars, of which
    ``bars_with_volume`` carry ``v``: ``ticks`` (forex), ``none`` (indices, or no bar has a
    volume) or ``units``."""
    if ticker.startswith("C:"):
        return "ticks"
    if ticker.startswith("I:") or (bars and not bars_with_volume):
        return "none"
    return "units"


def _number(bar: dict[str, Any], name: str, p: int, i: int) -> float:
    if name not in bar:
        raise DecodeError(f"{WHAT}: page {p} bar {i} has no {name!r}")
    value = bar[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DecodeError(
            f"{WHAT}: page {p} bar {i} field {name!r} is {json_type(value)}, expected a number"
        )
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise DecodeError(
            f"{WHAT}: page {p} bar {i} field {name!r} is {shown(value)}, not a finite number"
        )
    return x


def _time_ms(bar: dict[str, Any], p: int, i: int) -> int:
    if type(bar.get("t")) is int and -MAX_ABS_POINTS < bar["t"] < MAX_ABS_POINTS:
        return int(bar["t"])
    x = _number(bar, "t", p, i)
    if x != math.floor(x) or not -MAX_ABS_POINTS < x < MAX_ABS_POINTS:
        raise DecodeError(
            f"{WHAT}: page {p} bar {i} field 't' is {shown(bar['t'])}, "
            "not a whole number of ms in range"
        )
    return int(x)


def _points_at(
    x: NDArray[np.float64], pow10: float
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """For each price, the integer ``m`` with ``m / 10^s == x`` if there is one, and whether
    there is. ``round(x·10^s)`` is tried first, then its neighbours: near 2^53 the float product
    can round to the wrong side (4152.949915167767 · 10^12 → …766 instead of …767)."""
    m = np.round(x * pow10)
    ok = m / pow10 == x
    for step in (-1.0, 1.0):
        retry = ~ok
        if not retry.any():
            break
        cand = m[retry] + step
        good = cand / pow10 == x[retry]
        idx = np.flatnonzero(retry)[good]
        m[idx] = cand[good]
        ok[idx] = True
    return m, ok


def _scale(prices: NDArray[np.float64], name: Callable[[int], str]) -> int:
    """Most decimals of the shortest round-trip form of any price (vectorized).

    For each price the smallest ``s`` with an integer ``m`` such that ``m / 10^s == x`` is the
    number of decimals of ``repr(x)``: a shorter decimal reading back as ``x`` would be a
    shorter repr.
    """
    pending = np.arange(prices.size)
    for s, pow10 in enumerate(_POW10):
        _, ok = _points_at(prices[pending], pow10)
        pending = pending[~ok]
        if pending.size == 0:
            return s
    k = int(pending[0])
    raise DecodeError(
        f"{WHAT}: {name(k)} is {float(prices[k])!r}, which needs more than {MAX_SCALE} decimals"
    )


def decode_polygon_aggs(
    body: bytes, unit_start_ms: int, unit_end_ms: int, ticker: str = ""
) -> PolygonAggs:
    """Decode the pages of a ``polygon-aggs`` unit.

    :param body: JSON array of aggregate page bodies (any sort order, pages may overlap).
    :param unit_start_ms: unit start, ms (inclusive); ``unit_end_ms``: unit end (exclusive).
    :param ticker: the Polygon ticker (``C:EURUSD``, ``I:NDX``, ``AAPL``); when empty, the first
        page's ``ticker`` is used. Only its prefix matters (volume unit).
    :returns: :class:`PolygonAggs`: N bars sorted by ``t``, one per ``t``, inside the unit;
        ``ts_ms`` int64 ms; ``open``/``high``/``low``/``close`` int64 points; ``volume`` float64
        (``v``, NaN when absent or null).
    :raises DecodeError: invalid JSON; not an array of objects; a page with an error status;
        ``results`` that is not an array; a bar that is not an object, lacks ``t`` or a price,
        or holds a non-number, non-finite or out-of-range value; a non-whole ``t``; prices
        needing more than ``MAX_SCALE`` decimals or 2^53 points; more than ``MAX_ROWS`` bars.
    """
    pages = parse_pages(body, WHAT, exact=False)
    times: list[int] = []
    prices: list[float] = []
    volumes: list[float] = []
    where: list[tuple[int, int]] = []
    with_volume = 0
    delayed = 0
    for p, page in enumerate(pages):
        status = page.get("status")
        delayed += status == "DELAYED"
        if status is not None and not (isinstance(status, str) and status in OK_STATUSES):
            text = page.get("error") or page.get("message")
            detail = f": {shown(text, 200)}" if isinstance(text, str) else ""
            raise DecodeError(f"{WHAT}: page {p} has status {shown(status)}{detail}")
        if not ticker and isinstance(page.get("ticker"), str):
            ticker = page["ticker"]
        results = page.get("results")
        if results is None:
            continue
        if not isinstance(results, list):
            raise DecodeError(
                f"{WHAT}: page {p} field 'results' is {json_type(results)}, expected an array"
            )
        check_row_count(len(times) + len(results), WHAT)
        for i, bar in enumerate(results):
            if not isinstance(bar, dict):
                raise DecodeError(
                    f"{WHAT}: page {p} bar {i} is {json_type(bar)}, expected an object"
                )
            times.append(_time_ms(bar, p, i))
            prices.extend(_number(bar, name, p, i) for name in _PRICE_FIELDS)
            if bar.get("v") is None:
                volumes.append(math.nan)
            else:
                volumes.append(_number(bar, "v", p, i))
                with_volume += 1
            where.append((p, i))
    unit = volume_unit_for(ticker, len(times), with_volume)
    if not times:
        return PolygonAggs(Candles.empty(), None, unit, delayed)

    def named(k: int) -> str:
        p, i = where[k // 4]
        return f"page {p} bar {i} field {_PRICE_FIELDS[k % 4]!r}"

    flat = np.array(prices, dtype=np.float64)
    big = ~(np.abs(flat) < MAX_ABS_POINTS)
    if big.any():
        k = int(np.argmax(big))
        raise DecodeError(f"{WHAT}: {named(k)} is {float(flat[k])!r}, beyond 2^53")
    scale = _scale(flat, named)
    points, exact = _points_at(flat, _POW10[scale])
    bad = ~exact | ~(np.abs(points) < MAX_ABS_POINTS)
    if bad.any():  # a large price next to one with many decimals
        k = int(np.argmax(bad))
        raise DecodeError(
            f"{WHAT}: {named(k)} is {float(flat[k])!r}, beyond 2^53 points at scale {scale}"
        )
    ohlc = points.astype(np.int64).reshape(-1, 4)
    ts = np.array(times, dtype=np.int64)
    volume = np.array(volumes, dtype=np.float64)
    keep = merge_index(ts, unit_start_ms, unit_end_ms)
    candles = Candles(
        ts_ms=ts[keep],
        open=ohlc[keep, 0],
        high=ohlc[keep, 1],
        low=ohlc[keep, 2],
        close=ohlc[keep, 3],
        volume=volume[keep],
    )
    return PolygonAggs(candles, scale, unit, delayed)
