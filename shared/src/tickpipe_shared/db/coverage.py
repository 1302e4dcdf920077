"""Read-side queries: what is in the database, per instrument."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class Coverage:
    """Coverage of one instrument: units by state, ticks stored, first and last tick (UTC)."""

    instrument: str
    units_stored: int
    units_empty: int
    units_partial: int
    ticks: int
    first_tick: datetime | None
    last_tick: datetime | None
    first_unit: datetime | None
    last_unit: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (ISO-8601 times)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat().replace("+00:00", "Z")
        return d


async def coverage(conn: asyncpg.Connection, instrument: str | None = None) -> list[Coverage]:
    """Per-instrument coverage from the ingest log, with first/last tick from ``ticks``."""
    rows = await conn.fetch(
        """
        SELECT l.instrument,
               count(*) FILTER (WHERE l.state = 'stored')  AS units_stored,
               count(*) FILTER (WHERE l.state = 'empty')   AS units_empty,
               count(*) FILTER (WHERE l.state = 'partial') AS units_partial,
               coalesce(sum(l.rows), 0)                    AS ticks,
               min(l.unit_start) AS first_unit, max(l.unit_end) AS last_unit,
               (SELECT min(ts) FROM ticks t WHERE t.instrument = l.instrument) AS first_tick,
               (SELECT max(ts) FROM ticks t WHERE t.instrument = l.instrument) AS last_tick
        FROM ingest_log l
        WHERE l.kind = 'ticks' AND ($1::text IS NULL OR l.instrument = $1)
        GROUP BY l.instrument
        ORDER BY l.instrument
        """,
        instrument,
    )
    return [
        Coverage(
            instrument=r["instrument"],
            units_stored=r["units_stored"],
            units_empty=r["units_empty"],
            units_partial=r["units_partial"],
            ticks=int(r["ticks"]),
            first_tick=r["first_tick"],
            last_tick=r["last_tick"],
            first_unit=r["first_unit"],
            last_unit=r["last_unit"],
        )
        for r in rows
    ]
