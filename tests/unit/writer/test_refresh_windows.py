"""The writer's refresh calls of the continuous aggregates for a written hour (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.ohlcv import T0, hour_batch
from tickpipe_writer.aggregates import refresh_plan, refresh_sql, written_windows
from tickpipe_writer.plan import Plan


def test_refresh_windows_are_aligned_per_level() -> None:
    """The writer's refresh text for one written hour: 1m/5m/1h the hour, 1d its day."""
    batch = hour_batch("EURUSD", T0, 5, seed=1)
    calls = [refresh_sql(v, w) for v, w in refresh_plan(written_windows(Plan(inserts=[batch])))]
    first = datetime.fromtimestamp(int(batch.ticks.ts_ms.min()) / 1000, UTC)
    assert calls[0].startswith("CALL refresh_continuous_aggregate('ohlcv_1m', ")
    assert first.replace(second=0, microsecond=0).isoformat() in calls[0]
    day = datetime.fromtimestamp(T0 / 1000, UTC).replace(hour=0)
    assert calls[-1] == (
        f"CALL refresh_continuous_aggregate('ohlcv_1d', '{day.isoformat()}'::timestamptz, "
        f"'{(day + timedelta(days=1)).isoformat()}'::timestamptz)"
    )
