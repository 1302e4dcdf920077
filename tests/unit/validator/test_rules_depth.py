"""The depth rules (duplicate, spread_outlier, price_spike, stale_run, gap), candle_high_low,
thresholds configuration, and properties against naive per-tick reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tickpipe_shared.candles import Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import (
    DAY_MS,
    FX_DEFAULT_SCHEDULE,
    HOUR_MS,
    TradingSchedule,
)
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_validator.rules import RULES, RuleParams
from tickpipe_validator.rules.candle_high_low import candle_high_low
from tickpipe_validator.rules.duplicate import DUPLICATE, duplicate_mask
from tickpipe_validator.rules.gap import GAP, gap_mask
from tickpipe_validator.rules.price_spike import PRICE_SPIKE, price_spike_mask
from tickpipe_validator.rules.spread_outlier import SPREAD_OUTLIER, spread_outlier_mask
from tickpipe_validator.rules.stale_run import STALE_RUN, stale_run_mask
from tickpipe_validator.validate import ConfigError, configure, validate

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, a Monday
FRI_22 = T0 + 4 * DAY_MS + 22 * HOUR_MS  # 2019-02-08T22:00:00Z
SEC = 1000


def ticks(
    ts: list[int] | None = None,
    bid: list[int] | None = None,
    ask: list[int] | None = None,
    bv: list[float] | None = None,
    av: list[float] | None = None,
    n: int | None = None,
) -> Ticks:
    size = n if n is not None else len(next(x for x in (ts, bid, ask, bv, av) if x is not None))
    return Ticks(
        ts_ms=np.array(ts if ts is not None else [T0 + i for i in range(size)], dtype=np.int64),
        bid=np.array(bid if bid is not None else [100_000] * size, dtype=np.int64),
        ask=np.array(ask if ask is not None else [100_002] * size, dtype=np.int64),
        bid_volume=np.array(bv if bv is not None else [1.0] * size, dtype=np.float64),
        ask_volume=np.array(av if av is not None else [1.0] * size, dtype=np.float64),
    )


def meta(rows: int, start: int = T0, part: int = 0) -> BatchMeta:
    return BatchMeta(
        Unit("dukascopy-bi5", "EURUSD", "ticks", start, start + HOUR_MS),
        part,
        part + 1,
        rows,
        5,
        "00" * 32,
        "r",
        start,
        start,
    )


def where(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


# --- duplicate --------------------------------------------------------------------------------


def test_duplicate_hits_exact_copies_only() -> None:
    t = ticks(
        ts=[T0, T0, T0, T0 + 1, T0 + 1, T0 + 1, T0 + 2],
        bid=[10, 10, 10, 10, 10, 11, 11],
        ask=[12, 12, 12, 12, 12, 12, 12],
        bv=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        av=[2.0, 2.0, 2.0, 2.0, 2.5, 2.5, 2.5],
    )
    # rows 1, 2: copies of row 0; row 3: new ts; row 4: ask volume differs; row 5: bid differs;
    # row 6: ts differs.
    assert where(duplicate_mask(t)) == [1, 2]
    assert where(DUPLICATE.check(t, meta(len(t)))) == [1, 2]


def test_duplicate_nan_volumes_count_as_equal() -> None:
    t = ticks(ts=[T0, T0, T0], bv=[np.nan, np.nan, 1.0], av=[1.0, 1.0, 1.0])
    assert where(duplicate_mask(t)) == [1]


def test_duplicate_empty_and_single() -> None:
    assert duplicate_mask(Ticks.empty()).tolist() == []
    assert duplicate_mask(ticks(n=1)).tolist() == [False]


def test_duplicate_default_drop_keeps_one_copy() -> None:
    t = ticks(ts=[T0, T0, T0, T0 + 5], bid=[10, 10, 10, 10], ask=[12, 12, 12, 12])
    v = validate(TickBatch(meta(4), t), configure({}), T0)
    assert v.ticks.ts_ms.tolist() == [T0, T0 + 5]
    assert v.meta.quality == {"duplicate": 2}


# --- spread_outlier ---------------------------------------------------------------------------


def test_spread_outlier_relative_to_median() -> None:
    bid = [100_000] * 9
    ask = [100_002, 100_002, 100_003, 100_100, 100_101, 100_102, 100_002, 100_002, 100_002]
    # spreads 2 2 3 100 101 102 2 2 2: median 2, 50 × 2 = 100 → 101 and 102 are outliers.
    assert where(spread_outlier_mask(np.array(bid), np.array(ask))) == [4, 5]
    assert where(spread_outlier_mask(np.array(bid), np.array(ask), k=10)) == [3, 4, 5]
    t = ticks(bid=bid, ask=ask)
    assert where(SPREAD_OUTLIER.check(t, meta(9))) == [4, 5]
    assert where(SPREAD_OUTLIER.check(t, meta(9), RuleParams(threshold=100))) == []


def test_spread_outlier_median_floor_for_locked_quotes() -> None:
    # Median spread 0 (locked) would make every positive spread an outlier; the floor is 1 point.
    bid = np.array([50] * 7, dtype=np.int64)
    ask = np.array([50, 50, 50, 50, 51, 100, 101], dtype=np.int64)
    assert where(spread_outlier_mask(bid, ask)) == [6]
    assert spread_outlier_mask(bid[:0], ask[:0]).tolist() == []


# --- price_spike ------------------------------------------------------------------------------


def noisy_walk(n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bid = (110_000 + np.cumsum(rng.integers(-2, 3, n))).astype(np.int64)
    return bid, bid + 2


def test_price_spike_isolated_spikes() -> None:
    bid, ask = noisy_walk(200)
    assert where(price_spike_mask(bid, ask)) == []
    bid[[0, 57, 58, 199]] += [400, 300, 310, -500]
    ask[[0, 57, 58, 199]] += [400, 300, 310, -500]
    assert where(price_spike_mask(bid, ask)) == [0, 57, 58, 199]
    t = ticks(bid=bid.tolist(), ask=ask.tolist())
    assert where(PRICE_SPIKE.check(t, meta(200))) == [0, 57, 58, 199]


def test_price_spike_one_side_only_moves_mid() -> None:
    bid, ask = noisy_walk(100)
    ask[40] += 200  # mid moves 100 points; the MAD of a ±2 walk is a few points
    assert where(price_spike_mask(bid, ask)) == [40]
    assert where(price_spike_mask(bid, ask, k=1000)) == []


def test_price_spike_level_shift_is_not_a_spike() -> None:
    bid = np.array([100_000] * 50 + [100_500] * 50, dtype=np.int64)
    assert where(price_spike_mask(bid, bid + 2)) == []


def test_price_spike_flat_market_uses_mad_floor() -> None:
    # Flat market: MAD 0. Without the floor a one-point move would be infinitely many MADs.
    bid = np.array([100_000] * 60, dtype=np.int64)
    bid[30] += 10  # exactly k × 1 point (mid moves 10 points): not more than k MADs
    assert where(price_spike_mask(bid, bid)) == []
    bid[30] += 1
    assert where(price_spike_mask(bid, bid)) == [30]


def test_price_spike_short_batches() -> None:
    bid = np.array([100, 100, 100, 500, 100], dtype=np.int64)
    assert where(price_spike_mask(bid, bid)) == [3]  # fewer ticks than the window
    one = np.array([7], dtype=np.int64)
    assert price_spike_mask(one, one).tolist() == [False]
    assert price_spike_mask(one[:0], one[:0]).tolist() == []


# --- stale_run --------------------------------------------------------------------------------


def test_stale_run_flags_all_but_first_of_long_runs() -> None:
    bid = [1, 1, 1, 2, 2, 2, 2, 3, 2, 2, 2, 2, 2]
    ask = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6]
    # runs: [0-2] len 3, [3-6] len 4, [7] 1, [8-11] len 4, [12] 1
    got = stale_run_mask(np.array(bid), np.array(ask), n=4)
    assert where(got) == [4, 5, 6, 9, 10, 11]
    assert where(stale_run_mask(np.array(bid), np.array(ask), n=3)) == [1, 2, 4, 5, 6, 9, 10, 11]
    assert where(stale_run_mask(np.array(bid), np.array(ask), n=5)) == []


def test_stale_run_default_500() -> None:
    t = ticks(n=600, bid=[100] * 499 + [101] * 101, ask=[102] * 600)
    assert where(STALE_RUN.check(t, meta(600))) == []
    t = ticks(n=600, bid=[100] * 500 + [101] * 100, ask=[102] * 600)
    assert where(STALE_RUN.check(t, meta(600))) == list(range(1, 500))
    assert where(STALE_RUN.check(t, meta(600), RuleParams(threshold=100))) == [
        *range(1, 500),
        *range(501, 600),
    ]


def test_stale_run_empty() -> None:
    e = np.empty(0, dtype=np.int64)
    assert stale_run_mask(e, e).tolist() == []


# --- gap --------------------------------------------------------------------------------------


def test_gap_in_open_market() -> None:
    ts = np.array([T0 + 10 * SEC, T0 + 20 * SEC, T0 + 321 * SEC, T0 + 621 * SEC, T0 + 922 * SEC])
    # silences: 10 s from the unit start, 10 s, 301 s, 300 s (not more than 300), 301 s
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 300, T0)) == [2, 4]
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 301, T0)) == []
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 300)) == [2, 4]
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 5, T0)) == [0, 1, 2, 3, 4]
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 5)) == [1, 2, 3, 4]  # no start: 0 is not


def test_gap_first_tick_against_unit_start_only_in_part_0() -> None:
    t = ticks(ts=[T0 + 400 * SEC, T0 + 401 * SEC])
    p = RuleParams(schedule=FX_DEFAULT_SCHEDULE)
    assert where(GAP.check(t, meta(2), p)) == [0]
    assert where(GAP.check(t, meta(2, part=1), p)) == []


def test_weekend_and_closed_time_are_not_gaps() -> None:
    # Friday 21:58 → Sunday 22:01 (default FX schedule): 2 + 1 = 3 minutes of open market.
    ts = np.array([FRI_22 - 2 * 60 * SEC, FRI_22 + 2 * DAY_MS + 60 * SEC])
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 300)) == []
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 179)) == [1]
    # A tick inside the closed weekend after a silence: open time since Friday 21:58 is 2 min.
    sat = FRI_22 + DAY_MS
    assert where(gap_mask(np.array([FRI_22 - 120 * SEC, sat]), FX_DEFAULT_SCHEDULE, 60)) == [1]
    assert where(gap_mask(np.array([FRI_22 - 120 * SEC, sat]), FX_DEFAULT_SCHEDULE, 300)) == []


def test_holiday_is_not_a_gap() -> None:
    sched = TradingSchedule.weekly(
        [(-2 * HOUR_MS, 4 * DAY_MS + 22 * HOUR_MS)], holidays=[(T0 + HOUR_MS, T0 + 3 * HOUR_MS)]
    )
    ts = np.array([T0 + HOUR_MS - 60 * SEC, T0 + 3 * HOUR_MS + 60 * SEC])
    assert where(gap_mask(ts, sched, 300)) == []
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 300)) == [1]


def test_gap_without_schedule_is_inactive() -> None:
    t = ticks(ts=[T0, T0 + 3_000 * SEC])
    assert where(GAP.check(t, meta(2))) == []
    assert where(GAP.check(t, meta(2), RuleParams(threshold=1))) == []
    assert where(GAP.check(t, meta(2), RuleParams(1, FX_DEFAULT_SCHEDULE))) == [1]


def test_gap_backwards_time_is_not_a_gap() -> None:
    ts = np.array([T0 + 3_000 * SEC, T0])
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 1)) == []
    assert gap_mask(ts[:0], FX_DEFAULT_SCHEDULE, 1).tolist() == []


def test_validate_passes_schedule_to_gap() -> None:
    t = ticks(ts=[T0 + 1, T0 + 400 * SEC])
    assert validate(TickBatch(meta(2), t), configure({}), T0).meta.quality == {}
    v = validate(TickBatch(meta(2), t), configure({}), T0, FX_DEFAULT_SCHEDULE)
    assert v.meta.quality == {"gap": 1}
    assert v.flags is not None and v.flags.tolist() == [0, 1 << 9]


# --- candle_high_low --------------------------------------------------------------------------


def test_candle_high_low() -> None:
    rows = [  # open, high, low, close
        (10, 12, 9, 11),  # fine
        (10, 10, 10, 10),  # flat: fine
        (10, 11, 9, 12),  # high < close
        (13, 14, 10, 11),  # fine (bearish)
        (10, 12, 11, 11),  # low > open
        (10, 9, 11, 10),  # high < open, low > open, low > high
        (10, 10, 12, 10),  # low > high (and > open/close)
        (12, 13, 9, 13),  # fine: high == close
    ]
    o, h, lo, c = (np.array(col, dtype=np.int64) for col in zip(*rows, strict=True))
    n = len(rows)
    candles = Candles(np.arange(n, dtype=np.int64), o, h, lo, c, np.ones(n))
    assert where(candle_high_low(candles)) == [2, 4, 5, 6]
    assert candle_high_low(Candles.empty()).tolist() == []


# --- thresholds -------------------------------------------------------------------------------


def test_default_thresholds() -> None:
    got = {c.rule.name: c.threshold for c in configure({})}
    assert got == {
        "inside_unit": None,
        "non_decreasing": None,
        "positive_price": None,
        "crossed_quote": None,
        "non_negative_volume": None,
        "duplicate": None,
        "spread_outlier": 50.0,
        "price_spike": 10.0,
        "stale_run": 500.0,
        "gap": 300.0,
        "candle_high_low": None,
        "aligned_start": None,
    }


def test_thresholds_override() -> None:
    configured = configure({}, thresholds={"spread_outlier": 100, "gap": 600.5, "stale_run": 20})
    got = {c.rule.name: c.threshold for c in configured}
    assert got["spread_outlier"] == 100 and got["gap"] == 600.5 and got["stale_run"] == 20
    assert got["price_spike"] == 10


def test_threshold_reaches_the_rule() -> None:
    t = ticks(n=30, bid=[100] * 30, ask=[102] * 30)
    b = TickBatch(meta(30), t)
    assert validate(b, configure({}), T0).meta.quality == {}
    v = validate(b, configure({}, thresholds={"stale_run": 30}), T0)
    assert v.meta.quality == {"stale_run": 29}


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        (
            {"spread_outliers": 3, "zzz": 1},
            "thresholds for unknown validation rules ['spread_outliers', 'zzz']; rules with a "
            "threshold: ['gap', 'price_spike', 'spread_outlier', 'stale_run']",
        ),
        (
            {"duplicate": 1},
            "rule 'duplicate' has no threshold; rules with a threshold: "
            "['gap', 'price_spike', 'spread_outlier', 'stale_run']",
        ),
        (
            {"crossed_quote": 0},
            "rule 'crossed_quote' has no threshold; rules with a threshold: ",
        ),
        (
            {"spread_outlier": 0.5},
            "threshold of rule 'spread_outlier' must be a number in [1, 1e+06] "
            "(× the median spread), got 0.5",
        ),
        ({"price_spike": -1}, "threshold of rule 'price_spike' must be a number in [1, 1e+06]"),
        ({"price_spike": float("nan")}, "threshold of rule 'price_spike' must be a number"),
        ({"gap": float("inf")}, "threshold of rule 'gap' must be a number in [1, 604800]"),
        ({"gap": 0}, "threshold of rule 'gap' must be a number in [1, 604800] (seconds), got 0"),
        (
            {"stale_run": 1},
            "threshold of rule 'stale_run' must be a whole number in [2, 1e+07] (ticks), got 1",
        ),
        ({"stale_run": 12.5}, "threshold of rule 'stale_run' must be a whole number in [2, 1e+07]"),
    ],
)
def test_threshold_errors(thresholds: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure({}, thresholds=thresholds)
    assert str(info.value).startswith(message)


def test_every_threshold_default_is_in_range() -> None:
    for rule in RULES:
        if rule.threshold is not None:
            assert rule.threshold.check(rule.name, rule.threshold.default) == rule.threshold.default
            assert rule.threshold.minimum <= rule.threshold.maximum


# --- properties against naive per-tick references --------------------------------------------


def naive_duplicates(t: Ticks) -> list[bool]:
    rows = list(zip(*(getattr(t, c).tolist() for c in ("ts_ms", "bid", "ask")), strict=True))
    vols = list(zip(t.bid_volume.tolist(), t.ask_volume.tolist(), strict=True))

    def same_vol(a: float, b: float) -> bool:
        return a == b or (a != a and b != b)  # NaN == NaN here

    out = [False]
    for i in range(1, len(rows)):
        out.append(
            rows[i] == rows[i - 1]
            and same_vol(vols[i][0], vols[i - 1][0])
            and same_vol(vols[i][1], vols[i - 1][1])
        )
    return out[: len(rows)]


def naive_stale(bid: list[int], ask: list[int], n: int) -> list[bool]:
    out = [False] * len(bid)
    i = 0
    while i < len(bid):
        j = i
        while j + 1 < len(bid) and bid[j + 1] == bid[i] and ask[j + 1] == ask[i]:
            j += 1
        if j - i + 1 >= n:
            for k in range(i + 1, j + 1):
                out[k] = True
        i = j + 1
    return out


small = st.integers(0, 2)


@st.composite
def repetitive_ticks(draw: st.DrawFn) -> Ticks:
    n = draw(st.integers(0, 30))
    vol = st.sampled_from([0.0, 1.0, np.nan])
    cols = [draw(st.lists(small, min_size=n, max_size=n)) for _ in range(3)]
    vols = [draw(st.lists(vol, min_size=n, max_size=n)) for _ in range(2)]
    return ticks(ts=[T0 + x for x in cols[0]], bid=cols[1], ask=cols[2], bv=vols[0], av=vols[1])


@settings(max_examples=100, deadline=None)
@given(t=repetitive_ticks())
def test_duplicates_match_naive(t: Ticks) -> None:
    assert duplicate_mask(t).tolist() == naive_duplicates(t)


@settings(max_examples=200, deadline=None)
@given(
    bid=st.lists(st.integers(0, 1), max_size=40),
    data=st.data(),
    n=st.integers(2, 8),
)
def test_stale_runs_match_naive(bid: list[int], data: st.DataObject, n: int) -> None:
    ask = data.draw(st.lists(st.integers(0, 1), min_size=len(bid), max_size=len(bid)))
    got = stale_run_mask(np.array(bid, dtype=np.int64), np.array(ask, dtype=np.int64), n)
    assert got.tolist() == naive_stale(bid, ask, n)


def naive_spikes(bid: list[int], ask: list[int], k: float, w: int) -> list[bool]:
    mid = [(b + a) / 2 for b, a in zip(bid, ask, strict=True)]
    n = len(mid)
    size = min(w, n)
    out = []
    for i in range(n):
        lo = min(max(i - w // 2, 0), n - size)
        win = mid[lo : lo + size]
        med = float(np.median(win))
        mad = float(np.median([abs(x - med) for x in win]))
        out.append(abs(mid[i] - med) > k * max(mad, 1.0))
    return out


@settings(max_examples=150, deadline=None)
@given(
    bid=st.lists(st.integers(90, 110), max_size=50),
    k=st.sampled_from([1.0, 2.0, 3.5, 10.0]),
    w=st.sampled_from([3, 5, 21]),
)
def test_price_spikes_match_naive(bid: list[int], k: float, w: int) -> None:
    ask = [b + 2 for b in bid]
    got = price_spike_mask(np.array(bid, dtype=np.int64), np.array(ask, dtype=np.int64), k, w)
    assert got.tolist() == naive_spikes(bid, ask, k, w)
