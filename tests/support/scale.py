"""Synthetic volume runs, shared by the scale bench and the scale tests: which hours make N
ticks, and whether the database holds exactly what the synthetic source generated.

Nothing is kept of the generated rows: :func:`verify` regenerates each unit (a pure function of
instrument, unit start and seed) and compares its row count and checksum
(:mod:`tickpipe_shared.synthetic.checksum`) with the stored rows of that hour, computed in SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import numpy as np
from tickpipe_shared.instruments.schedule import FX_DEFAULT_SCHEDULE
from tickpipe_shared.synthetic.checksum import ticks_checksum, unit_checksums_sql
from tickpipe_shared.synthetic.ticks import (
    HOUR_MS,
    SyntheticParams,
    generate_ticks,
    price_scale_of,
    unit_tick_counts,
)
from tickpipe_shared.units import ms_to_iso

from support.golden_db import GoldenHour

#: Hours planned per step while looking for the range that holds N ticks.
_CHUNK_HOURS = 24 * 7


@dataclass(frozen=True, slots=True)
class SyntheticPlan:
    """The hour units ``[from_ms, to_ms)`` of ``instrument`` that hold ``ticks`` synthetic ticks.

    ``starts``: every hour's start (ms, shape ``(U,)``), ``open_``: the FX week's market-open
    flag per hour (what the planner sends), ``counts``: ticks per hour (0 for closed hours).
    """

    instrument: str
    params: SyntheticParams
    starts: np.ndarray
    open_: np.ndarray
    counts: np.ndarray

    @property
    def from_ms(self) -> int:
        return int(self.starts[0])

    @property
    def to_ms(self) -> int:
        return int(self.starts[-1]) + HOUR_MS

    @property
    def ticks(self) -> int:
        return int(self.counts.sum())

    @property
    def scale(self) -> int:
        return price_scale_of(self.instrument)

    @property
    def from_dt(self) -> datetime:
        return datetime.fromtimestamp(self.from_ms / 1000, tz=UTC)

    @property
    def to_dt(self) -> datetime:
        return datetime.fromtimestamp(self.to_ms / 1000, tz=UTC)


def plan_ticks(
    instrument: str, first: datetime, ticks: int, params: SyntheticParams
) -> SyntheticPlan:
    """The shortest range of whole hours from ``first`` (rounded down to its hour) whose
    synthetic ticks reach ``ticks`` (at least one hour). Raises :class:`ValueError` when the
    parameters generate no ticks at all."""
    if params.ticks_per_hour <= 0:
        raise ValueError("ticks_per_hour must be > 0 to reach a tick count")
    start = int(first.timestamp() * 1000) // HOUR_MS * HOUR_MS
    starts, opens, counts = [], [], []
    total = 0
    while total < ticks or not starts:
        hours = start + HOUR_MS * np.arange(_CHUNK_HOURS, dtype=np.int64)
        open_ = FX_DEFAULT_SCHEDULE.open_ms_between(hours, hours + HOUR_MS) > 0
        n = unit_tick_counts(instrument, hours, open_, params)
        cum = total + np.cumsum(n)
        stop = int(np.searchsorted(cum, ticks)) + 1 if cum[-1] >= ticks else len(hours)
        starts.append(hours[:stop])
        opens.append(open_[:stop])
        counts.append(n[:stop])
        total = int(cum[stop - 1])
        start += _CHUNK_HOURS * HOUR_MS
    return SyntheticPlan(
        instrument, params, np.concatenate(starts), np.concatenate(opens), np.concatenate(counts)
    )


def plan_hours(
    instrument: str, first: datetime, hours: int, params: SyntheticParams
) -> SyntheticPlan:
    """The ``hours`` whole hours from ``first`` (rounded down to its hour), whatever they hold."""
    start = int(first.timestamp() * 1000) // HOUR_MS * HOUR_MS
    starts = start + HOUR_MS * np.arange(hours, dtype=np.int64)
    open_ = FX_DEFAULT_SCHEDULE.open_ms_between(starts, starts + HOUR_MS) > 0
    return SyntheticPlan(
        instrument, params, starts, open_, unit_tick_counts(instrument, starts, open_, params)
    )


def expected_units(plan: SyntheticPlan) -> Iterator[tuple[int, int, int]]:
    """``(unit start ms, rows, checksum)`` of every hour of ``plan`` that has ticks."""
    for start, is_open, n in zip(
        plan.starts.tolist(), plan.open_.tolist(), plan.counts.tolist(), strict=True
    ):
        if n:
            t = generate_ticks(
                plan.instrument, start, start + HOUR_MS, market_open=is_open, params=plan.params
            )
            yield start, len(t), ticks_checksum(t)


@dataclass
class Verification:
    """What :func:`verify` found: units and rows compared, and every mismatch described."""

    units: int = 0
    rows_expected: int = 0
    rows_stored: int = 0
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.rows_expected == self.rows_stored


async def verify(conn: asyncpg.Connection, plan: SyntheticPlan) -> Verification:
    """Compare the stored ticks of ``plan``'s range with the generated ones, per hour (row
    count and checksum), without storing a copy; closed hours must hold no rows."""
    stored: dict[int, tuple[int, int]] = {}
    rows = await conn.fetch(unit_checksums_sql(), plan.instrument, plan.from_dt, plan.to_dt)
    for r in rows:
        stored[int(r["unit_start"].timestamp() * 1000)] = (int(r["rows"]), int(r["checksum"]))
    result = Verification(rows_stored=sum(n for n, _ in stored.values()))
    for start, n, checksum in expected_units(plan):
        result.units += 1
        result.rows_expected += n
        got = stored.pop(start, (0, 0))
        if got != (n, checksum):
            result.mismatches.append(
                f"{ms_to_iso(start)}: stored {got[0]} rows (checksum {got[1]}), "
                f"generated {n} (checksum {checksum})"
            )
    for start, (n, _) in sorted(stored.items()):
        result.mismatches.append(f"{ms_to_iso(start)}: {n} rows stored in an hour with none")
    return result


def golden_hour(plan: SyntheticPlan, start_ms: int) -> GoldenHour:
    """The generated hour at ``start_ms`` of ``plan`` in the golden form of
    :mod:`support.golden_db` (exact decimal prices at the scale), for a row-by-row comparison."""
    open_ = bool(plan.open_[int((start_ms - plan.from_ms) // HOUR_MS)])
    t = generate_ticks(plan.instrument, start_ms, start_ms + HOUR_MS, market_open=open_,
                       params=plan.params)  # fmt: skip
    scale = plan.scale

    def price(points: int) -> str:
        return f"{Decimal(points).scaleb(-scale):.{scale}f}"

    rows = [
        (ms, price(a), price(b), av, bv)
        for ms, a, b, av, bv in zip(
            t.ts_ms.tolist(), t.ask.tolist(), t.bid.tolist(), t.ask_volume.tolist(),
            t.bid_volume.tolist(), strict=True,
        )
    ]  # fmt: skip
    return GoldenHour(plan.instrument, datetime.fromtimestamp(start_ms / 1000, tz=UTC), scale, rows)
