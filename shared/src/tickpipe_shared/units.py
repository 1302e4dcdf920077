"""Units of work: the pieces a request is split into, and their keys.

A unit is one source file's worth of data: one UTC hour of ticks; for candles one UTC hour,
day, month or year depending on the timeframe (:func:`unit_span`), which for Dukascopy is
exactly one file (minute candles per day, hour candles per month, day candles per year). Its key
``source|instrument|kind|start`` is the Kafka key of every record about it in every topic, so
all its records stay in one partition, in order; the database identifies it by
``(instrument, kind, start)`` so that re-fetching it from another source replaces it.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tickpipe_shared.kinds import DAY_MS, HOUR_MS, MINUTE_MS, Kind

__all__ = [
    "HOUR_MS",
    "Unit",
    "dt_to_ms",
    "hour_units",
    "ms_to_dt",
    "ms_to_iso",
    "parse_unit_key",
    "plan_units",
    "unit_span",
]

SPANS = ("hour", "day", "month", "year")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_ISO = "%Y-%m-%dT%H:%M:%SZ"
_KEY_START = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_KEY_NAME = re.compile(r"^[^\s|]+$")


def ms_to_iso(ms: int) -> str:
    """``1549238400000`` → ``"2019-02-04T00:00:00Z"`` (UTC, second precision)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(_ISO)


def ms_to_dt(ms: int) -> datetime:
    """Milliseconds since the epoch → an aware UTC datetime (exact: integer arithmetic), the
    form the database's ``timestamptz`` columns take."""
    return _EPOCH + ms * _MS


def dt_to_ms(dt: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime (naive ones are taken as UTC), floored
    to the millisecond (exact: integer arithmetic)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


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
        """The Kafka key of every record about this unit (:func:`parse_unit_key` reads it)."""
        return f"{self.source}|{self.instrument}|{self.kind}|{ms_to_iso(self.start_ms)}"

    def to_fields(self, start: str = "start_ms", end: str = "end_ms") -> dict[str, str | int]:
        """The unit as the flat fields of a wire record: ``source``, ``instrument``, ``kind``,
        then its start and end (ms) under the names ``start`` and ``end``."""
        return {
            "source": self.source,
            "instrument": self.instrument,
            "kind": self.kind,
            start: self.start_ms,
            end: self.end_ms,
        }

    @classmethod
    def take_fields(
        cls, data: MutableMapping[str, Any], start: str = "start_ms", end: str = "end_ms"
    ) -> Unit:
        """The unit whose :meth:`to_fields` are in ``data``, removing them from ``data``.

        Raises :class:`KeyError` naming the first field that is missing (values are taken
        as they are: the caller has checked or converted their types)."""
        names = ("source", "instrument", "kind", start, end)
        missing = [n for n in names if n not in data]
        if missing:
            raise KeyError(missing[0])
        return cls(*(data.pop(n) for n in names))


def parse_unit_key(key: str | None) -> Unit | None:
    """The :class:`Unit` of a unit key ``source|instrument|kind|YYYY-MM-DDTHH:MM:SSZ`` (the form
    :attr:`Unit.key` writes), or ``None`` when ``key`` is not one: wrong number of fields, an
    empty or blank field, a kind that is not ``ticks`` or ``candles:<timeframe>:<side>`` in its
    canonical spelling (the database knows units by that string), a start that is not that
    exact UTC form or not the start of a unit of the kind.

    The unit's end follows from its kind and start (:func:`plan_units`): an hour for ticks; an
    hour, day, month or year for candles by timeframe (:func:`unit_span`). Pure."""
    if not key:
        return None
    fields = key.split("|")
    if len(fields) != 4:
        return None
    source, instrument, kind, start = fields
    if not all(_KEY_NAME.match(f) for f in (source, instrument, kind)):
        return None
    if not _KEY_START.match(start):
        return None
    try:
        if str(Kind.parse(kind)) != kind:
            return None
        dt = datetime.strptime(start, _ISO).replace(tzinfo=UTC)
    except ValueError:  # a malformed kind (KindError), or e.g. month 13
        return None
    start_ms = dt_to_ms(dt)
    if ms_to_iso(start_ms) != start:
        return None
    unit = plan_units(source, instrument, kind, start_ms, start_ms + 1)[0]
    return unit if unit.start_ms == start_ms else None


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
