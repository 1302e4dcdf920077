"""Kinds of data: ticks, or candles of a timeframe and a price side.

A unit's *kind* is a string that travels in every record about it and in the ingest log:

* ``ticks`` — tick data;
* ``candles:<timeframe>:<side>`` — OHLCV candles, e.g. ``candles:1m:bid``, ``candles:5m:trade``.

Timeframes are ``<n><unit>`` with unit ``s`` (seconds), ``m`` (minutes), ``h`` (hours), ``d``
(days), ``w`` (weeks), ``mo`` (months), ``q`` (quarters) or ``y`` (years), written in their
largest whole unit (``60s`` is ``1m``, ``24h`` is ``1d``) so one timeframe has one name.

Sides say which price the candles are built from: ``bid`` and ``ask`` (Dukascopy quotes),
``mid`` (Deriv's single quoted price: for forex the middle of bid and ask, for synthetic indices
the index value) and ``trade`` (Polygon's trade aggregates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SIDES = ("bid", "ask", "mid", "trade")
TICKS = "ticks"
CANDLES = "candles"

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS

_FIXED_MS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS, "w": WEEK_MS}
_CALENDAR = ("mo", "q", "y")
_TIMEFRAME = re.compile(r"^([1-9][0-9]{0,5})(s|m|h|d|w|mo|q|y)$")


class KindError(ValueError):
    """A kind or timeframe that is not well formed; the message says what is wrong."""


@dataclass(frozen=True, slots=True, order=True)
class Timeframe:
    """A candle length: ``count`` × ``unit`` (``unit`` one of s, m, h, d, w, mo, q, y)."""

    count: int
    unit: str

    @classmethod
    def parse(cls, text: str) -> Timeframe:
        """``"1m"``, ``"60s"`` (→ 1m), ``"4h"``, ``"1mo"`` … Raises :class:`KindError`."""
        m = _TIMEFRAME.match(text.strip().lower()) if isinstance(text, str) else None
        if m is None:
            raise KindError(
                f"timeframe {text!r} is not <count><unit> with unit s, m, h, d, w, mo, q or y "
                "(e.g. 1m, 5m, 1h, 1d)"
            )
        count, unit = int(m.group(1)), m.group(2)
        if unit in _FIXED_MS:
            ms = count * _FIXED_MS[unit]
            # Largest whole unit, weeks excepted (a 7d candle and a 1w candle start differently).
            for name in ("d", "h", "m", "s"):
                if ms % _FIXED_MS[name] == 0 and unit != "w":
                    return cls(ms // _FIXED_MS[name], name)
        return cls(count, unit)

    @classmethod
    def from_seconds(cls, seconds: int) -> Timeframe:
        """A fixed timeframe of ``seconds`` (Deriv's ``granularity``)."""
        return cls.parse(f"{int(seconds)}s")

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def duration_ms(self) -> int | None:
        """Length in ms of a fixed timeframe (s … w); ``None`` for calendar ones (mo, q, y)."""
        if self.unit in _CALENDAR:
            return None
        return self.count * _FIXED_MS[self.unit]

    @property
    def seconds(self) -> int | None:
        """Length in whole seconds of a fixed timeframe, else ``None``."""
        ms = self.duration_ms
        return None if ms is None else ms // SECOND_MS


@dataclass(frozen=True, slots=True)
class Kind:
    """A parsed kind: ``ticks``, or ``candles`` with ``timeframe`` and ``side``."""

    name: str
    timeframe: Timeframe | None = None
    side: str | None = None

    @classmethod
    def ticks(cls) -> Kind:
        """The tick kind."""
        return cls(TICKS)

    @classmethod
    def candles(cls, timeframe: Timeframe | str, side: str) -> Kind:
        """A candle kind. Raises :class:`KindError` for a bad timeframe or side."""
        tf = timeframe if isinstance(timeframe, Timeframe) else Timeframe.parse(timeframe)
        if side not in SIDES:
            raise KindError(f"side {side!r} is not one of {', '.join(SIDES)}")
        return cls(CANDLES, tf, side)

    @classmethod
    def parse(cls, text: str) -> Kind:
        """``"ticks"`` or ``"candles:<timeframe>:<side>"``. Raises :class:`KindError`."""
        if text == TICKS:
            return cls.ticks()
        parts = text.split(":") if isinstance(text, str) else []
        if len(parts) != 3 or parts[0] != CANDLES:
            raise KindError(f"kind {text!r} is neither 'ticks' nor 'candles:<timeframe>:<side>'")
        return cls.candles(parts[1], parts[2])

    @property
    def is_candles(self) -> bool:
        """True for candle kinds."""
        return self.name == CANDLES

    def __str__(self) -> str:
        if self.name == TICKS:
            return TICKS
        return f"{CANDLES}:{self.timeframe}:{self.side}"
