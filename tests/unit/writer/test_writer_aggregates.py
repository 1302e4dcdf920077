"""The writer's OHLCV refresh windows: what a transaction wrote, aligned per timeframe, merged."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from support.batches import unit_meta
from tickpipe_shared.columns import Ticks
from tickpipe_shared.units import HOUR_MS, Unit
from tickpipe_shared.wire.batch import TickBatch
from tickpipe_writer.aggregates import (
    OhlcvRefresher,
    align,
    refresh_plan,
    refresh_sql,
    written_windows,
)
from tickpipe_writer.plan import Plan, UnitWindow

MIN, DAY = 60_000, 24 * HOUR_MS
H0 = int(datetime(2021, 3, 1, 10, tzinfo=UTC).timestamp() * 1000)  # a whole hour


def batch(ts: list[int], start: int = H0) -> TickBatch:
    n = len(ts)
    unit = Unit("dukascopy-bi5", "EURUSD", "ticks", start, start + HOUR_MS)
    meta = unit_meta(unit, n, 5, sha="a" * 64, request_id="r", fetched_at_ms=start)
    a = np.arange(n, dtype=np.int64)
    ticks = Ticks(np.array(ts, dtype=np.int64), a, a, np.ones(n), np.ones(n))
    return TickBatch(meta, ticks)


def test_written_windows_are_deleted_units_and_inserted_tick_spans() -> None:
    work = Plan(
        deletes=[UnitWindow("EURUSD", "ticks", H0, H0 + HOUR_MS)],
        inserts=[batch([H0 + 5, H0 + 90_000]), batch([])],
    )
    assert written_windows(work) == [(H0, H0 + HOUR_MS), (H0 + 5, H0 + 90_001)]
    assert written_windows(Plan()) == []


def test_align_floors_ceils_and_merges() -> None:
    # [10:00:00.005, 10:01:30.001) covers the minutes 10:00 and 10:01.
    assert align([(H0 + 5, H0 + 90_001)], MIN) == [(H0, H0 + 2 * MIN)]
    # An already aligned window stays as it is; an empty one is dropped.
    assert align([(H0, H0 + MIN), (H0 + 7, H0 + 7)], MIN) == [(H0, H0 + MIN)]
    # Overlapping and touching windows merge, disjoint ones do not; output sorted.
    windows = [(H0 + 10 * MIN, H0 + 11 * MIN), (H0, H0 + MIN), (H0 + MIN, H0 + 2 * MIN)]
    assert align(windows, MIN) == [(H0, H0 + 2 * MIN), (H0 + 10 * MIN, H0 + 11 * MIN)]
    # Coarser buckets swallow the gap between them.
    assert align(windows, HOUR_MS) == [(H0, H0 + HOUR_MS)]


def test_refresh_plan_is_finest_first_with_each_level_aligned() -> None:
    # One hour unit, and two ticks on the next day: two days touched.
    steps = refresh_plan([(H0, H0 + HOUR_MS), (H0 + DAY + 5, H0 + DAY + 6)])
    views = [v for v, _ in steps]
    assert views == sorted(views, key=["ohlcv_1m", "ohlcv_5m", "ohlcv_1h", "ohlcv_1d"].index)
    by_view: dict[str, list[Any]] = {}
    for v, w in steps:
        by_view.setdefault(v, []).append(w)
    assert by_view["ohlcv_1m"] == [(H0, H0 + HOUR_MS), (H0 + DAY, H0 + DAY + MIN)]
    assert by_view["ohlcv_5m"] == [(H0, H0 + HOUR_MS), (H0 + DAY, H0 + DAY + 5 * MIN)]
    assert by_view["ohlcv_1h"] == [(H0, H0 + HOUR_MS), (H0 + DAY, H0 + DAY + HOUR_MS)]
    midnight = H0 - 10 * HOUR_MS
    assert by_view["ohlcv_1d"] == [(midnight, midnight + 2 * DAY)]  # adjacent days merged
    assert refresh_plan([]) == []


def test_refresh_sql_is_a_literal_call_and_only_for_ohlcv_views() -> None:
    assert refresh_sql("ohlcv_1h", (H0, H0 + HOUR_MS)) == (
        "CALL refresh_continuous_aggregate('ohlcv_1h', '2021-03-01T10:00:00+00:00'::timestamptz, "
        "'2021-03-01T11:00:00+00:00'::timestamptz)"
    )
    with pytest.raises(ValueError, match="not an OHLCV aggregate"):
        refresh_sql("ticks'; DROP TABLE ticks; --", (H0, H0 + 1))


def test_migration_0002_refreshes_after_commit_and_creates_aggregates_inside() -> None:
    from tickpipe_shared.db.migrate import load_migrations, split_after_commit

    (m,) = [m for m in load_migrations() if m.name == "ohlcv"]
    assert m.timescaledb_sql is not None
    inside, after = split_after_commit(m.timescaledb_sql)
    assert after == [
        f"CALL refresh_continuous_aggregate('ohlcv_{tf}', NULL, NULL)"
        for tf in ("1m", "5m", "1h", "1d")
    ]
    assert "WITH NO DATA" in inside and "CALL refresh_continuous_aggregate" not in inside
    assert split_after_commit("SELECT 1;\n") == ("SELECT 1;\n", [])


class CountingRefresher(OhlcvRefresher):
    """Counts background rounds instead of touching a database; fails the ones in ``fail``."""

    def __init__(self, fail: set[int] | None = None) -> None:
        super().__init__(["ohlcv_1m"])
        self.rounds, self.fail = 0, fail or set()

    async def drain(self, pool: Any) -> int:
        self.rounds += 1
        if self.rounds in self.fail:
            raise RuntimeError("refresh boom")
        return 0


async def _run_for(refresher: OhlcvRefresher, seconds: float, idle: float) -> None:
    task = asyncio.create_task(refresher.run(None, 0.01, lambda: idle))  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_rounds_wait_for_a_pause_and_are_overdue_after_ten_periods() -> None:
    idle = CountingRefresher()
    await _run_for(idle, 0.3, idle=1.0)  # idle writer: a round every period
    busy = CountingRefresher()
    await _run_for(busy, 0.3, idle=0.0)  # writing all the time: every BUSY_ROUNDS periods
    assert busy.rounds >= 1
    assert idle.rounds >= 3 * busy.rounds


async def test_a_failed_round_is_counted_and_the_next_one_runs() -> None:
    from tickpipe_writer.aggregates import REFRESH_FAILURES

    before = REFRESH_FAILURES._value.get()
    refresher = CountingRefresher(fail={1})
    await _run_for(refresher, 0.1, idle=1.0)
    assert REFRESH_FAILURES._value.get() == before + 1
    assert refresher.rounds >= 2
