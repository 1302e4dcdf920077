"""Coverage reports: what is in the database, per instrument and kind, and per period.

The ledger queries behind them are in :mod:`tickpipe_shared.db.ledger`.

:func:`coverage` sums the ingest log per instrument and kind (``ticks`` and every candle kind
``candles:<timeframe>:<side>``). :func:`daily_coverage` compares the ledger of one kind, period
by period, with what the trading schedule expects, which is where the gaps show. A unit is
*expected* when the market is open for any part of it (``open_ms_between(start, end) > 0``):
for ticks, a session that opens at 22:00 expects the 22:00 hour and one that closes at 21:30
the 21:00 hour; for candles, whose units are hours, days, months or years
(:func:`tickpipe_shared.units.unit_span`), the unit spans with open time. An instrument without
a schedule expects every unit (``scheduled`` is false in its rows). *Missing* are the expected
units without any ledger row; a ledger row of a unit that is not expected (ticks on a Sunday
afternoon) still counts in its state.

Periods: units of an hour are reported per UTC day (24 units a day) and so are units of a day
(one a day); units of a month per month, units of a year per year. The JSON of both reports is
described in docs/storage.md ("Coverage").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from numpy.typing import NDArray

from tickpipe_shared.db.ledger import STATES, summary_rows, unit_states
from tickpipe_shared.instruments.schedule import HOUR_MS, TradingSchedule
from tickpipe_shared.kinds import DAY_MS, TICKS, Kind
from tickpipe_shared.units import dt_to_ms, ms_to_iso, plan_units, unit_span

__all__ = [
    "STATES",
    "Coverage",
    "DailyCoverage",
    "PeriodCoverage",
    "ScheduleFor",
    "coverage",
    "daily_coverage",
    "day_range",
    "expected_hours",
    "expected_units",
    "period_of",
    "status_report",
    "summarise_days",
    "summarise_units",
    "unit_range",
]

ScheduleFor = Callable[[str], TradingSchedule | None]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Coverage:
    """Coverage of one instrument and kind: units by state, rows stored, first and last row
    (UTC; a candle's start for candle kinds), first unit start and last unit end.

    ``ticks``, ``first_tick`` and ``last_tick`` are those of the ``ticks`` kind (0 and ``None``
    for candle kinds); ``rows``, ``first_row`` and ``last_row`` hold them for every kind.
    """

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
    kind: str = TICKS
    rows: int = 0
    first_row: datetime | None = None
    last_row: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (ISO-8601 times with ``Z``)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = _iso(v)
        return d


async def coverage(
    conn: asyncpg.Connection, instrument: str | None = None, kind: str | None = None
) -> list[Coverage]:
    """Coverage per instrument and kind from the ingest log, with the first and last row from
    ``ticks`` or ``candles``; only ``instrument``/``kind`` when given. Ordered by instrument,
    ``ticks`` first, then the candle kinds by name."""
    rows = await summary_rows(conn, instrument, kind)
    out = []
    for r in rows:
        is_ticks = r["kind"] == TICKS
        out.append(
            Coverage(
                instrument=r["instrument"],
                kind=r["kind"],
                units_stored=r["units_stored"],
                units_empty=r["units_empty"],
                units_partial=r["units_partial"],
                units_suspect_empty=r["units_suspect_empty"],
                units_failed=r["units_failed"],
                ticks=int(r["rows"]) if is_ticks else 0,
                first_tick=r["first_row"] if is_ticks else None,
                last_tick=r["last_row"] if is_ticks else None,
                rows=int(r["rows"]),
                first_row=r["first_row"],
                last_row=r["last_row"],
                first_unit=r["first_unit"],
                last_unit=r["last_unit"],
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class PeriodCoverage:
    """One instrument's units of one kind in one period (a UTC day, month or year) against its
    trading schedule.

    ``day``: the period's first day. ``period``: ``day`` (units of an hour or a day), ``month``
    or ``year``. ``expected``: units in which the market is open for any part of the unit (all
    of them when ``scheduled`` is false: no schedule known). ``stored`` … ``failed``: ledger
    rows of the period by state, expected or not. ``missing``: expected units without a ledger
    row, listed in ``missing_units`` (unit starts, ISO-8601 UTC) and, for hour units, in
    ``missing_hours`` (UTC hour of day); ``failed_units``/``failed_hours`` likewise. ``rows``:
    ticks or candles stored.
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
    rows: int
    missing_hours: list[int] = field(default_factory=list)
    failed_hours: list[int] = field(default_factory=list)
    kind: str = TICKS
    period: str = "day"
    missing_units: list[str] = field(default_factory=list)
    failed_units: list[str] = field(default_factory=list)

    @property
    def ticks(self) -> int:
        """Ticks stored in the period (0 for a candle kind)."""
        return self.rows if self.kind == TICKS else 0

    @property
    def complete(self) -> bool:
        """Every expected unit has a final row, and none failed, is partial or suspect."""
        return not (self.missing or self.failed or self.partial or self.suspect_empty)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (``day`` as ``YYYY-MM-DD``), with ``ticks`` and ``complete``."""
        d = asdict(self)
        d["day"] = self.day.isoformat()
        d["ticks"] = self.ticks
        d["complete"] = self.complete
        return d


#: The name this report had when it covered ticks by UTC day only.
DailyCoverage = PeriodCoverage


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


def expected_units(
    schedule: TradingSchedule | None, starts: NDArray[np.int64], ends: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Boolean per unit ``[starts[i], ends[i])`` (ms, int64, shape ``(n,)``): True where the
    market is open for any part of it; all True without a schedule. Pure."""
    if schedule is None:
        return np.ones(starts.shape, dtype=np.bool_)
    open_: NDArray[np.bool_] = schedule.open_ms_between(starts, ends) > 0
    return open_


def expected_hours(schedule: TradingSchedule | None, lo_ms: int, hi_ms: int) -> NDArray[np.bool_]:
    """Boolean per hour of ``[lo_ms, hi_ms)`` (hour aligned): True where the market is open for
    any part of the hour; all True without a schedule. Pure."""
    starts = np.arange(lo_ms, hi_ms, HOUR_MS, dtype=np.int64)
    return expected_units(schedule, starts, starts + HOUR_MS)


def period_of(kind: str) -> str:
    """The report period of ``kind``'s units: ``day`` (hour and day units), ``month`` or
    ``year``. Raises :class:`~tickpipe_shared.kinds.KindError` for a malformed kind."""
    span = unit_span(kind)
    return "day" if span in ("hour", "day") else span


def _period_start(start_ms: int, period: str) -> date:
    d = datetime.fromtimestamp(start_ms / 1000, UTC).date()
    if period == "month":
        return d.replace(day=1)
    if period == "year":
        return d.replace(month=1, day=1)
    return d


def summarise_units(
    instrument: str,
    kind: str,
    units: Sequence[tuple[int, int]],
    schedule: TradingSchedule | None,
    ledger: Sequence[tuple[int, str, int]],
) -> list[PeriodCoverage]:
    """Coverage per period (:func:`period_of`) of the consecutive ``units`` ``(start ms, end
    ms)`` of ``kind`` from the ledger rows ``(unit start ms, state, rows)`` of that range (rows
    outside it, or not on a unit start, are ignored). Every period the units touch gets a
    row, oldest first. Pure: :func:`daily_coverage` is this over a query."""
    period = period_of(kind)
    hourly = unit_span(kind) == "hour"
    starts = np.array([u[0] for u in units], dtype=np.int64)
    ends = np.array([u[1] for u in units], dtype=np.int64)
    expected = expected_units(schedule, starts, ends)
    index = {int(s): i for i, s in enumerate(starts)}
    state_of: dict[int, tuple[str, int]] = {}
    for start_ms, state, rows in ledger:
        i = index.get(start_ms)
        if i is not None:
            state_of[i] = (state, rows)
    periods: dict[date, list[int]] = {}
    for i, s in enumerate(starts):
        periods.setdefault(_period_start(int(s), period), []).append(i)
    out = []
    for day, members in periods.items():
        counts = dict.fromkeys(STATES, 0)
        rows = 0
        missing: list[int] = []
        failed: list[int] = []
        for i in members:
            got = state_of.get(i)
            if got is None:
                if expected[i]:
                    missing.append(i)
                continue
            state, n = got
            if state in counts:
                counts[state] += 1
            if state == "failed":
                failed.append(i)
            rows += n

        def hours(idx: list[int]) -> list[int]:
            return [int(starts[i] % DAY_MS // HOUR_MS) for i in idx] if hourly else []

        out.append(
            PeriodCoverage(
                instrument=instrument,
                kind=kind,
                period=period,
                day=day,
                scheduled=schedule is not None,
                expected=int(expected[members].sum()),
                stored=counts["stored"],
                empty=counts["empty"],
                suspect_empty=counts["suspect-empty"],
                partial=counts["partial"],
                failed=counts["failed"],
                missing=len(missing),
                rows=rows,
                missing_hours=hours(missing),
                failed_hours=hours(failed),
                missing_units=[ms_to_iso(int(starts[i])) for i in missing],
                failed_units=[ms_to_iso(int(starts[i])) for i in failed],
            )
        )
    return out


def summarise_days(
    instrument: str,
    lo_ms: int,
    hi_ms: int,
    schedule: TradingSchedule | None,
    ledger: list[tuple[int, str, int]],
) -> list[PeriodCoverage]:
    """Daily coverage of the ``ticks`` hours of ``[lo_ms, hi_ms)`` (whole UTC days) from the
    ledger rows ``(unit start ms, state, rows)`` of that range. Pure."""
    hours = [(h, h + HOUR_MS) for h in range(lo_ms, hi_ms, HOUR_MS)]
    return summarise_units(instrument, TICKS, hours, schedule, ledger)


def unit_range(kind: str, from_: datetime, to: datetime) -> list[tuple[int, int]]:
    """The units ``(start ms, end ms)`` of ``kind`` a report of ``[from_, to)`` covers: for
    hour and day units the range widened to whole UTC days (:func:`day_range`), otherwise every
    month or year the range touches. Raises :class:`ValueError` for naive datetimes, an empty
    range or a malformed kind."""
    lo, hi = day_range(from_, to) if period_of(kind) == "day" else (from_, to)
    if lo.tzinfo is None or hi.tzinfo is None:
        raise ValueError("from_ and to must be timezone-aware (UTC)")
    return [(u.start_ms, u.end_ms) for u in plan_units("", "-", kind, dt_to_ms(lo), dt_to_ms(hi))]


async def daily_coverage(
    conn: asyncpg.Connection,
    instrument: str,
    from_: datetime,
    to: datetime,
    schedule_for: ScheduleFor,
    kind: str = TICKS,
) -> list[PeriodCoverage]:
    """Per period of ``[from_, to)`` (:func:`unit_range`): the ``kind`` units the trading
    schedule ``schedule_for(instrument)`` expects against the ledger, oldest first. Use
    :func:`tickpipe_shared.instruments.schedule.default_schedule_for` for ``schedule_for``
    unless a better schedule is known. Raises :class:`ValueError` as :func:`unit_range`."""
    kind = str(Kind.parse(kind))
    units = unit_range(kind, from_, to)
    ledger = await unit_states(conn, instrument, kind, units[0][0], units[-1][1])
    return summarise_units(instrument, kind, units, schedule_for(instrument), ledger)


async def status_report(
    conn: asyncpg.Connection,
    schedule_for: ScheduleFor,
    instrument: str | None = None,
    kind: str | None = None,
    *,
    by_period: bool = False,
    from_: datetime | None = None,
    to: datetime | None = None,
) -> list[dict[str, Any]]:
    """What ``tickpipe status [--json]`` prints: :func:`coverage` rows as dicts; with
    ``by_period`` (``--by-day``), the :func:`daily_coverage` rows of every instrument and kind
    over ``[from_, to)``, each bound defaulting to the first unit start / last unit end of that
    instrument and kind. An ``instrument`` (and ``kind``, default ``ticks``) with nothing in
    the ledger is reported too when both bounds are given: every expected unit is missing."""
    covered = await coverage(conn, instrument, kind)
    if not by_period:
        return [c.to_dict() for c in covered]
    bounds = {(c.instrument, c.kind): (c.first_unit, c.last_unit) for c in covered}
    if instrument is not None and not any(i == instrument for i, _ in bounds):
        bounds[(instrument, kind or TICKS)] = (None, None)
    out: list[dict[str, Any]] = []
    for (inst, k), (first, last) in bounds.items():
        lo, hi = from_ or first, to or last
        if lo is None or hi is None or hi <= lo:
            continue
        out += [p.to_dict() for p in await daily_coverage(conn, inst, lo, hi, schedule_for, k)]
    return out
