"""Read-side queries: what is in the database, per instrument and per instrument and UTC day.

:func:`coverage` sums the ingest log per instrument. :func:`daily_coverage` compares it, day by
day, with what the trading schedule expects, which is where the gaps show: an hour is
*expected* when the market is open for any part of it (``open_ms_between(h, h + 1 h) > 0``), so
a session that opens at 22:00 expects the 22:00 hour and one that closes at 21:30 expects the
21:00 hour. An instrument without a schedule expects all 24 hours of every day (``scheduled``
is false in its rows). *Missing* are the expected hours without any ledger row; a ledger row of
an hour that is not expected (ticks on a Sunday afternoon) still counts in its state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray

from tickpipe_shared.instruments.schedule import HOUR_MS, TradingSchedule


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
    units_suspect_empty: int = 0
    units_failed: int = 0

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
               count(*) FILTER (WHERE l.state = 'suspect-empty') AS units_suspect_empty,
               count(*) FILTER (WHERE l.state = 'failed')  AS units_failed,
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
            units_suspect_empty=r["units_suspect_empty"],
            units_failed=r["units_failed"],
            ticks=int(r["ticks"]),
            first_tick=r["first_tick"],
            last_tick=r["last_tick"],
            first_unit=r["first_unit"],
            last_unit=r["last_unit"],
        )
        for r in rows
    ]


#: Ledger states, in the order reports show them.
STATES = ("stored", "empty", "suspect-empty", "partial", "failed")

ScheduleFor = Callable[[str], TradingSchedule | None]


@dataclass(frozen=True, slots=True)
class DailyCoverage:
    """One instrument's ``ticks`` units of one UTC day against its trading schedule.

    ``expected``: hours in which the market is open for any part of the hour (all 24 when
    ``scheduled`` is false: no schedule known). ``stored`` … ``failed``: ledger rows of the day
    by state, expected or not. ``missing``: expected hours without a ledger row;
    ``missing_hours`` and ``failed_hours`` list them (UTC hour of day). ``ticks``: rows stored.
    """

    instrument: str
    day: date
    scheduled: bool
    expected: int
    stored: int
    empty: int
    suspect_empty: int
    partial: int
    failed: int
    missing: int
    ticks: int
    missing_hours: list[int] = field(default_factory=list)
    failed_hours: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every expected hour has a final row, and none failed, is partial or suspect."""
        return not (self.missing or self.failed or self.partial or self.suspect_empty)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``day`` as ``YYYY-MM-DD``)."""
        d = asdict(self)
        d["day"] = self.day.isoformat()
        d["complete"] = self.complete
        return d


def day_range(from_: datetime, to: datetime) -> tuple[datetime, datetime]:
    """``[from_, to)`` widened to whole UTC days: ``from_`` floored to its midnight, ``to``
    ceiled to the next one (unless already a midnight). Raises :class:`ValueError` for naive
    datetimes or an empty range."""
    if from_.tzinfo is None or to.tzinfo is None:
        raise ValueError("from_ and to must be timezone-aware (UTC)")
    if to <= from_:
        raise ValueError(f"empty range: {from_.isoformat()} is not before {to.isoformat()}")
    lo = datetime.combine(from_.astimezone(UTC).date(), datetime.min.time(), UTC)
    to_utc = to.astimezone(UTC)
    hi = datetime.combine(to_utc.date(), datetime.min.time(), UTC)
    if hi < to_utc:
        hi += timedelta(days=1)
    return lo, hi


def expected_hours(schedule: TradingSchedule | None, lo_ms: int, hi_ms: int) -> NDArray[np.bool_]:
    """Boolean per hour of ``[lo_ms, hi_ms)`` (hour aligned): True where the market is open for
    any part of the hour; all True without a schedule. Pure."""
    starts = np.arange(lo_ms, hi_ms, HOUR_MS, dtype=np.int64)
    if schedule is None:
        return np.ones(starts.shape, dtype=np.bool_)
    open_: NDArray[np.bool_] = schedule.open_ms_between(starts, starts + HOUR_MS) > 0
    return open_


def summarise_days(
    instrument: str,
    lo_ms: int,
    hi_ms: int,
    schedule: TradingSchedule | None,
    ledger: list[tuple[int, str, int]],
) -> list[DailyCoverage]:
    """Daily coverage of ``[lo_ms, hi_ms)`` (whole UTC days) from the ledger rows ``(unit start
    ms, state, rows)`` of that range. Pure: :func:`daily_coverage` is this over a query."""
    expected = expected_hours(schedule, lo_ms, hi_ms).reshape(-1, 24)
    days = expected.shape[0]
    counts = np.zeros((days, len(STATES)), dtype=np.int64)
    ticks = np.zeros(days, dtype=np.int64)
    present = np.zeros((days, 24), dtype=np.bool_)
    failed = np.zeros((days, 24), dtype=np.bool_)
    for start_ms, state, rows in ledger:
        if not lo_ms <= start_ms < hi_ms:
            continue
        d, hour = divmod((start_ms - lo_ms) // HOUR_MS, 24)
        present[d, hour] = True
        if state in STATES:
            counts[d, STATES.index(state)] += 1
        failed[d, hour] |= state == "failed"
        ticks[d] += rows
    missing = expected & ~present
    first = datetime.fromtimestamp(lo_ms / 1000, UTC).date()
    return [
        DailyCoverage(
            instrument=instrument,
            day=first + timedelta(days=d),
            scheduled=schedule is not None,
            expected=int(expected[d].sum()),
            stored=int(counts[d, 0]),
            empty=int(counts[d, 1]),
            suspect_empty=int(counts[d, 2]),
            partial=int(counts[d, 3]),
            failed=int(counts[d, 4]),
            missing=int(missing[d].sum()),
            ticks=int(ticks[d]),
            missing_hours=[int(h) for h in np.flatnonzero(missing[d])],
            failed_hours=[int(h) for h in np.flatnonzero(failed[d])],
        )
        for d in range(days)
    ]


async def daily_coverage(
    conn: asyncpg.Connection,
    instrument: str,
    from_: datetime,
    to: datetime,
    schedule_for: ScheduleFor,
) -> list[DailyCoverage]:
    """Per UTC day of ``[from_, to)`` (widened to whole days, :func:`day_range`): hours the
    trading schedule ``schedule_for(instrument)`` expects against the ledger's ``ticks`` units,
    oldest day first. Use
    :func:`tickpipe_shared.instruments.schedule.default_schedule_for` for ``schedule_for``
    unless a better schedule is known."""
    lo, hi = day_range(from_, to)
    rows = await conn.fetch(
        """SELECT unit_start, state, rows FROM ingest_log
           WHERE instrument = $1 AND kind = 'ticks' AND unit_start >= $2 AND unit_start < $3
           ORDER BY unit_start""",
        instrument,
        lo,
        hi,
    )
    lo_ms, hi_ms = int(lo.timestamp()) * 1000, int(hi.timestamp()) * 1000
    ledger = [(int(r["unit_start"].timestamp() * 1000), r["state"], int(r["rows"])) for r in rows]
    return summarise_days(instrument, lo_ms, hi_ms, schedule_for(instrument), ledger)
