"""Units of work: the pieces a request is split into, and their keys.

A unit is one source file's worth of data (Dukascopy: one UTC hour of ticks). Its key
``source|instrument|kind|start`` is the Kafka key of every record about it in every topic, so
all its records stay in one partition, in order; the database identifies it by
``(instrument, kind, start)`` so that re-fetching it from another source replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

HOUR_MS = 3_600_000


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
