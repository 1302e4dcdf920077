"""``tickpipe_shared.instruments.schedule``: the default FX week, the JSON API instrument
detail (``../shared/data/dukascopy/json/instruments/EUR-USD.json``), holidays, queries."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tickpipe_shared.instruments.schedule import (
    DAY_MS,
    FX_DEFAULT_SCHEDULE,
    HOUR_MS,
    ScheduleEra,
    ScheduleFormatError,
    TradingSchedule,
    WeeklyWindow,
    default_schedule_for,
    is_fx_pair,
)

MIN_MS = 60_000


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, milli: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp() * 1000) + milli


# A trimmed copy of the real EUR-USD detail, so these tests run without ../shared.
EUR_USD: dict[str, Any] = {
    "code": "EUR-USD",
    "defaultTimezone": "America/New_York",
    "holidays": [
        {"from": 1577260800000, "till": 1577311200000},  # 2019-12-25 08:00 → 22:00 UTC
        {"from": 1577829600000, "till": 1577916000000},  # 2019-12-31 22:00 → 2020-01-01 22:00
    ],
    "tradeSchedule": [
        {
            "id": "trade-147-America_New_York",
            "from": 10800000,
            "to": None,
            "sessions": {
                day: [
                    {
                        "start": "17:00:00",
                        "previousDayStart": True,
                        "end": "17:00:00",
                        "previousDayEnd": False,
                    }
                ]
                for day in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY")
            },
        }
    ],
}


# --- the default FX schedule ------------------------------------------------------------------


def test_default_fx_week() -> None:
    cases = {
        ms(2019, 2, 8, 21, 59, 59, 999): True,  # Friday 21:59:59.999
        ms(2019, 2, 8, 22): False,  # Friday 22:00
        ms(2019, 2, 9, 12): False,  # Saturday
        ms(2019, 2, 10, 21, 59): False,  # Sunday 21:59
        ms(2019, 2, 10, 22): True,  # Sunday 22:00
        ms(2019, 2, 11, 0): True,  # Monday
        ms(2019, 2, 6, 12): True,  # Wednesday
        ms(2019, 7, 5, 20, 59): True,  # summer Friday 16:59 New York
        ms(2019, 7, 5, 21, 30): False,  # summer Friday 17:30 New York: closed
        ms(2019, 7, 7, 21, 30): True,  # summer Sunday 17:30 New York: open
        ms(2019, 12, 25, 12): True,  # no holidays in the default
    }
    got = FX_DEFAULT_SCHEDULE.is_open(np.array(list(cases), dtype=np.int64))
    assert got.tolist() == list(cases.values())


def test_default_open_ms_between() -> None:
    s = FX_DEFAULT_SCHEDULE
    fri_21, sun_23 = ms(2019, 2, 8, 21), ms(2019, 2, 10, 23)
    assert s.open_ms_between(fri_21, sun_23).tolist() == 2 * HOUR_MS
    a = np.array([fri_21, ms(2019, 2, 9), sun_23, sun_23])
    b = np.array([ms(2019, 2, 9), ms(2019, 2, 10), sun_23, fri_21])
    assert s.open_ms_between(a, b).tolist() == [HOUR_MS, 0, 0, 0]  # b <= a gives 0
    week = ms(2019, 2, 4)
    assert s.open_ms_between(week, week + 7 * DAY_MS) == 5 * DAY_MS
    assert s.open_ms_between(np.array([], dtype=np.int64), np.array([], dtype=np.int64)).shape == (
        0,
    )


def test_default_schedule_for() -> None:
    assert default_schedule_for("EURUSD") is FX_DEFAULT_SCHEDULE
    assert default_schedule_for("eur/jpy") is FX_DEFAULT_SCHEDULE
    assert default_schedule_for("USDCNH") is FX_DEFAULT_SCHEDULE
    for other in ("XAUUSD", "BTCUSD", "USA500IDXUSD", "EUR", "EURUSDX", "ABCDEF"):
        assert default_schedule_for(other) is None, other
        assert not is_fx_pair(other)


# --- the instrument detail --------------------------------------------------------------------


def test_eur_usd_detail_is_new_york_week_with_holidays() -> None:
    s = TradingSchedule.from_instrument_detail(EUR_USD)
    [era] = s.eras
    assert era.timezone == "America/New_York" and era.valid_from_ms == 10800000
    assert era.valid_till_ms is None
    assert len(era.windows) == 5
    cases = {
        # winter (EST, UTC-5): 17:00 New York = 22:00 UTC
        ms(2019, 2, 8, 21, 59): True,
        ms(2019, 2, 8, 22): False,
        ms(2019, 2, 10, 21, 59): False,
        ms(2019, 2, 10, 22): True,
        # summer (EDT, UTC-4): 17:00 New York = 21:00 UTC
        ms(2019, 7, 5, 20, 59): True,
        ms(2019, 7, 5, 21): False,
        ms(2019, 7, 7, 20, 59): False,
        ms(2019, 7, 7, 21): True,
        # the US switched to summer time on Sunday 2019-03-10: Friday 8th closes at 22:00 UTC,
        # Sunday 10th opens at 21:00 UTC
        ms(2019, 3, 8, 21, 30): True,
        ms(2019, 3, 10, 20, 59): False,
        ms(2019, 3, 10, 21): True,
        # holidays
        ms(2019, 12, 25, 7, 59): True,
        ms(2019, 12, 25, 8): False,  # Christmas holiday closes a Wednesday
        ms(2019, 12, 25, 21, 59): False,
        ms(2019, 12, 25, 22): True,
        ms(2020, 1, 1, 12): False,
        ms(2020, 1, 1, 22): True,
    }
    got = s.is_open(np.array(list(cases), dtype=np.int64))
    assert dict(zip(cases, got.tolist(), strict=True)) == cases


def test_real_eur_usd_detail(dukascopy_dir: Path) -> None:
    detail = json.loads((dukascopy_dir / "json/instruments/EUR-USD.json").read_text())
    s = TradingSchedule.from_instrument_detail(detail)
    assert len(s.eras) == 1
    # 2019-12-25 12:00 UTC is a holiday in the real detail; the Monday before is open.
    got = s.is_open(np.array([ms(2019, 12, 25, 12), ms(2019, 12, 23, 12), ms(2019, 12, 28)]))
    assert got.tolist() == [False, True, False]
    # 2020-12-31 22:00 → 2021-01-03 22:00: a long New Year closure joining the weekend.
    assert s.open_ms_between(ms(2020, 12, 31, 21), ms(2021, 1, 4)) == HOUR_MS + 2 * HOUR_MS


def test_holiday_closes_and_counts_no_open_time() -> None:
    wed = ms(2019, 2, 6)
    s = TradingSchedule.weekly(
        [(-2 * HOUR_MS, 4 * DAY_MS + 22 * HOUR_MS)],
        holidays=[(wed + 8 * HOUR_MS, wed + 9 * HOUR_MS)],
    )
    assert s.is_open([wed + 8 * HOUR_MS - 1, wed + 8 * HOUR_MS, wed + 9 * HOUR_MS]).tolist() == [
        True,
        False,
        True,
    ]
    assert s.open_ms_between(wed + 7 * HOUR_MS, wed + 10 * HOUR_MS) == 2 * HOUR_MS


def test_multiple_eras_and_validity() -> None:
    change = ms(2019, 2, 6)
    old = ScheduleEra((WeeklyWindow(0, 5 * DAY_MS),), "UTC", None, change)
    new = ScheduleEra((WeeklyWindow(0, 7 * DAY_MS),), "UTC", change, None)  # 24/7 from then
    s = TradingSchedule([old, new])
    sat_before, sat_after = ms(2019, 2, 2, 12), ms(2019, 2, 9, 12)
    assert s.is_open([sat_before, sat_after, change - 1, change]).tolist() == [
        False,
        True,
        True,
        True,
    ]


def test_detail_with_several_sessions_a_day_and_closed_days() -> None:
    detail = copy.deepcopy(EUR_USD)
    detail["defaultTimezone"] = "UTC"
    detail["holidays"] = None
    detail["tradeSchedule"][0]["sessions"] = {
        "TUESDAY": [
            {"start": "08:00", "end": "12:00"},
            {"start": "13:00:00.500", "end": "24:00:00", "previousDayEnd": False},
        ]
    }
    s = TradingSchedule.from_instrument_detail(detail)
    tue = ms(2019, 2, 5)
    probes = [tue + 7 * HOUR_MS, tue + 8 * HOUR_MS, tue + 12 * HOUR_MS, tue + 13 * HOUR_MS + 500,
              tue + 23 * HOUR_MS, tue + DAY_MS]  # fmt: skip
    assert s.is_open(probes).tolist() == [False, True, False, True, True, False]
    assert s.open_ms_between(tue, tue + 7 * DAY_MS) == 4 * HOUR_MS + 11 * HOUR_MS - 500


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(EUR_USD)
    target: Any = d
    for p in path[:-1]:
        target = target[p]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


MON = ["tradeSchedule", 0, "sessions", "MONDAY", 0]


@pytest.mark.parametrize(
    ("detail", "message"),
    [
        (mutate(["tradeSchedule"], KeyError), "instrument detail EUR-USD: tradeSchedule is None"),
        (mutate(["tradeSchedule"], []), "tradeSchedule is [], expected a non-empty list"),
        (mutate(["defaultTimezone"], KeyError), "defaultTimezone is None, expected a zone"),
        (mutate(["defaultTimezone"], "Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (
            mutate(["tradeSchedule", 0, "zone"], "UTC"),
            "tradeSchedule[0] has unknown fields ['zone']",
        ),
        (mutate(["tradeSchedule", 0, "sessions"], []), "tradeSchedule[0].sessions is []"),
        (
            mutate(["tradeSchedule", 0, "sessions", "MON"], []),
            "tradeSchedule[0].sessions has unknown day 'MON'",
        ),
        (mutate([*MON, "start"], "5pm"), "sessions.MONDAY[0].start is '5pm', expected a time"),
        (mutate([*MON, "end"], "25:00"), "sessions.MONDAY[0].end is '25:00', not a time of day"),
        (mutate([*MON, "previousDayEnd"], "no"), "MONDAY[0].previousDayEnd is 'no', expected true"),
        (mutate([*MON, "previousDayStart"], False), "sessions.MONDAY[0] ends before it starts"),
        (mutate([*MON, "timezone"], "UTC"), "MONDAY[0] has unknown fields ['timezone']"),
        (mutate(["tradeSchedule", 0, "from"], "1970"), "tradeSchedule[0].from is '1970'"),
        (mutate(["holidays", 0, "till"], 1), "holidays[0] is {'from': 1577260800000, 'till': 1}"),
        (mutate(["holidays", 1], {"from": 1}), "holidays[1] is {'from': 1}, expected {from, till}"),
        (mutate(["holidays"], {}), "holidays is {}, expected a list"),
    ],
)
def test_detail_shapes_not_understood(detail: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleFormatError) as info:
        TradingSchedule.from_instrument_detail(detail)
    assert message in str(info.value)


def test_windows_must_end_after_start() -> None:
    with pytest.raises(ValueError, match="not after its start"):
        WeeklyWindow(5, 5)
    with pytest.raises(ValueError, match="ends before it starts"):
        TradingSchedule.weekly([(0, DAY_MS)], holidays=[(10, 10)])


# --- property: vectorised answers agree with a direct definition ------------------------------


@settings(max_examples=50, deadline=None)
@given(
    a=st.lists(st.integers(ms(2019, 12, 18), ms(2020, 1, 8)), min_size=1, max_size=20),
    span=st.integers(0, 5 * DAY_MS),
)
def test_open_ms_between_matches_minute_sampling(a: list[int], span: int) -> None:
    s = TradingSchedule.from_instrument_detail(EUR_USD)
    aa = (np.array(a, dtype=np.int64) // MIN_MS) * MIN_MS
    bb = aa + (span // MIN_MS) * MIN_MS
    got = s.open_ms_between(aa, bb)
    for x, y, g in zip(aa.tolist(), bb.tolist(), got.tolist(), strict=True):
        minutes = np.arange(x, y, MIN_MS, dtype=np.int64)  # all boundaries are whole minutes
        assert g == int(s.is_open(minutes).sum()) * MIN_MS
