"""Units of work: the pieces a request is split into, and their keys.

A unit is one source file's worth of data: one UTC hour of ticks; for candles one UTC hour,
day, month or year depending on the timeframe (:func:`unit_span`), which for Dukascopy is
exactly one file (minute candles per day, hour candles per month, day candles per year). Its key
``source|instrument|kind|start`` is the Kafka key of every record about it in every topic, so
all its records stay in one partition, in order; the database identifies it by
``(instrument, kind, start)`` so that re-fetching it from another source replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from tickpipe_shared.kinds import DAY_MS, HOUR_MS, MINUTE_MS, Kind

__all__ = ["HOUR_MS", "Unit", "dt_to_ms", "hour_units", "ms_to_iso", "plan_units", "unit_span"]

SPANS = ("hour", "day", "month", "year")


def ms_to_iso(ms: int) -> str:
    """``1549238400000`` → ``"2019-02-04T00:00:00Z"`` (UTC, second precision)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dt_to_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (naive ones are taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of work: ``[start_ms, end_ms)`` of ``kind`` data of ``instrument`` from ``source``.

    Times are ms since the Unix epoch, UTC.
    """

    source: str
    instrument: str
    kind: str
    start_ms: int
    end_ms: int

    @property
    def key(self) -> str:
        """The Kafka key of every record about this unit."""
        return f"{self.source}|{self.instrument}|{self.kind}|{ms_to_iso(self.start_ms)}"


def hour_units(source: str, instrument: str, from_ms: int, to_ms: int) -> list[Unit]:
    """Tick units: every UTC hour that overlaps ``[from_ms, to_ms)``.

    ``from_ms`` is floored to its hour, so ``2019-02-04T00:30`` → ``2019-02-04T03:00`` gives the
    three hours 00, 01 and 02. Raises :class:`ValueError` when ``from_ms >= to_ms``.
    """
    if from_ms >= to_ms:
        raise ValueError(
            f"empty range: from {ms_to_iso(from_ms)} is not before to {ms_to_iso(to_ms)}"
        )
    first = from_ms - from_ms % HOUR_MS
    return [Unit(source, instrument, "ticks", h, h + HOUR_MS) for h in range(first, to_ms, HOUR_MS)]


def unit_span(kind: Kind | str) -> str:
    """The calendar span of one unit of ``kind``: ``hour``, ``day``, ``month`` or ``year``.

    Ticks: hour. Candles by timeframe: under a minute → hour, under an hour → day (1440 minute
    candles), under a day → month (≤ 744 hour candles), a day or longer → year (≤ 366 day
    candles). These are Dukascopy's file spans and keep every unit within one page of Deriv
    (5000 items) and Polygon (50 000 bars) for the common timeframes.
    """
    k = Kind.parse(kind) if isinstance(kind, str) else kind
    if not k.is_candles:
        return "hour"
    assert k.timeframe is not None
    ms = k.timeframe.duration_ms
    if ms is None or ms >= DAY_MS:
        return "year"
    if ms < MINUTE_MS:
        return "hour"
    return "day" if ms < HOUR_MS else "month"


def _floor(ms: int, span: str) -> datetime:
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if span == "hour":
        return t.replace(minute=0, second=0, microsecond=0)
    if span == "day":
        return t.replace(hour=0, minute=0, second=0, microsecond=0)
    if span == "month":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return t.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def _next(t: datetime, span: str) -> datetime:
    if span in ("hour", "day"):
        return datetime.fromtimestamp(
            t.timestamp() + (HOUR_MS if span == "hour" else DAY_MS) / 1000, tz=UTC
        )
    if span == "month":
        if t.month == 12:
            return t.replace(year=t.year + 1, month=1)
        return t.replace(month=t.month + 1)
    return t.replace(year=t.year + 1)


def plan_units(source: str, instrument: str, kind: str, from_ms: int, to_ms: int) -> list[Unit]:
    """Units of ``kind`` covering ``[from_ms, to_ms)``: every span (:func:`unit_span`) that
    overlaps it, the first floored to its span start (``2019-03-14T10:00`` of ``candles:1m:bid``
    gives the whole UTC day 2019-03-14).

    Raises :class:`ValueError` when ``from_ms >= to_ms`` and
    :class:`~tickpipe_shared.kinds.KindError` for a malformed kind.
    """
    if from_ms >= to_ms:
        raise ValueError(
            f"empty range: from {ms_to_iso(from_ms)} is not before to {ms_to_iso(to_ms)}"
        )
    span = unit_span(kind)
    if span == "hour":
        return [
            Unit(source, instrument, kind, u.start_ms, u.end_ms)
            for u in hour_units(source, instrument, from_ms, to_ms)
        ]
    out: list[Unit] = []
    t = _floor(from_ms, span)
    while dt_to_ms(t) < to_ms:
        nxt = _next(t, span)
        out.append(Unit(source, instrument, kind, dt_to_ms(t), dt_to_ms(nxt)))
        t = nxt
    return out
