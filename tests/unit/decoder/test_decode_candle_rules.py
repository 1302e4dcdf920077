"""The candle rules every format shares: candle ends, closed candles, flats."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tickpipe_decoder.candle_rules import candle_ends_ms, closed_mask, flat_mask
from tickpipe_shared.candles import Candles
from tickpipe_shared.kinds import Timeframe


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp() * 1000)


def ends(starts: list[int], tf: str) -> list[int]:
    result: list[int] = candle_ends_ms(
        np.array(starts, dtype=np.int64), Timeframe.parse(tf)
    ).tolist()
    return result


@pytest.mark.parametrize(
    ("tf", "start", "end"),
    [
        ("1s", ms(2023, 1, 1), ms(2023, 1, 1, 0, 0, 1)),
        ("1m", ms(2023, 1, 1, 23, 59), ms(2023, 1, 2)),
        ("5m", ms(2023, 1, 1), ms(2023, 1, 1, 0, 5)),
        ("4h", ms(2023, 1, 1, 20), ms(2023, 1, 2)),
        ("1d", ms(2023, 1, 1, 5), ms(2023, 1, 2, 5)),
        ("1w", ms(2023, 1, 2), ms(2023, 1, 9)),
        ("1mo", ms(2023, 1, 1), ms(2023, 2, 1)),
        ("1mo", ms(2023, 1, 1, 5), ms(2023, 2, 1, 5)),  # a New York month: 05:00Z
        ("1mo", ms(2023, 1, 31, 12), ms(2023, 2, 28, 12)),  # clamped to February's end
        ("1mo", ms(2024, 1, 31), ms(2024, 2, 29)),
        ("1mo", ms(2023, 12, 1), ms(2024, 1, 1)),
        ("2mo", ms(2023, 11, 1), ms(2024, 1, 1)),
        ("1q", ms(2023, 10, 1), ms(2024, 1, 1)),
        ("1q", ms(2023, 11, 30), ms(2024, 2, 29)),
        ("1y", ms(2023, 1, 1), ms(2024, 1, 1)),
        ("1y", ms(2024, 2, 29), ms(2025, 2, 28)),
        ("1mo", ms(1969, 12, 15, 3), ms(1970, 1, 15, 3)),  # before the epoch
    ],
)
def test_candle_ends(tf: str, start: int, end: int) -> None:
    assert ends([start], tf) == [end]


def reference_end(start: int, tf: Timeframe) -> int:
    """End of a calendar candle with datetime arithmetic, for the property test."""
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start)
    months = {"mo": 1, "q": 3, "y": 12}[tf.unit] * tf.count
    y, m = divmod(t.month - 1 + months, 12)
    year, month = t.year + y, m + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    return ms(year, month, day) + (start - ms(t.year, t.month, t.day))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(ms(1900, 1, 1), ms(2200, 1, 1)), min_size=1, max_size=5),
    st.sampled_from(["1mo", "2mo", "3mo", "1q", "2q", "1y", "5y"]),
)
def test_calendar_ends_match_datetime_arithmetic(starts: list[int], tf: str) -> None:
    timeframe = Timeframe.parse(tf)
    assert ends(starts, tf) == [reference_end(s, timeframe) for s in starts]


def test_closed_mask_boundary() -> None:
    starts = np.array([0, 60_000, 120_000], dtype=np.int64)
    # The candle [60 000, 120 000) is closed exactly at 120 000; the next one is not.
    assert closed_mask(starts, Timeframe.parse("1m"), 120_000).tolist() == [True, True, False]
    assert closed_mask(starts, Timeframe.parse("1m"), 119_999).tolist() == [True, False, False]
    assert closed_mask(starts[:0], Timeframe.parse("1m"), 0).tolist() == []


def test_flat_mask() -> None:
    def col(*v: int) -> np.ndarray:
        return np.array(v, dtype=np.int64)

    candles = Candles(
        ts_ms=col(0, 1, 2, 3, 4),
        open=col(5, 5, 5, 5, 5),
        high=col(5, 5, 6, 5, 5),
        low=col(5, 5, 4, 5, 5),
        close=col(5, 5, 5, 5, 4),
        volume=np.array([0.0, 1.5, 0.0, np.nan, 0.0]),
    )
    # flat; traded at one price (kept); zero volume but a range (kept for the validator);
    # no volume given (Deriv, index bars: kept); zero volume but close differs (kept).
    assert flat_mask(candles).tolist() == [True, False, False, False, False]
