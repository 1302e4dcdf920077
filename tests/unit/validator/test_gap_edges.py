"""The ``gap`` rule at the edges of a unit: leading silence (unit start → first tick) and
trailing silence (latest tick → unit end), and what stays undetected across units."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import ALWAYS_OPEN, DAY_MS, FX_DEFAULT_SCHEDULE, HOUR_MS
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_validator.rules import RuleParams
from tickpipe_validator.rules.gap import GAP, gap_mask
from tickpipe_validator.validate import configure, validate

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, a Monday
H10 = T0 + 10 * HOUR_MS  # Monday 10:00Z, FX open
FRI_21 = T0 + 4 * DAY_MS + 21 * HOUR_MS  # Friday 21:00Z: the FX week closes at 22:00Z in winter
MIN = 60_000
FX = RuleParams(schedule=FX_DEFAULT_SCHEDULE)


def ticks(ts: list[int]) -> Ticks:
    n = len(ts)
    bid = np.full(n, 113_000, dtype=np.int64)
    return Ticks(np.array(ts, dtype=np.int64), bid, bid + 2, np.ones(n), np.ones(n))


def meta(
    rows: int,
    start: int = H10,
    part: int = 0,
    part_count: int = 1,
    fetched_at: int | None = None,
) -> BatchMeta:
    return BatchMeta(
        Unit("dukascopy-json", "EURUSD", "ticks", start, start + HOUR_MS),
        part,
        part_count,
        rows,
        5,
        "00" * 32,
        "r",
        fetched_at if fetched_at is not None else start + DAY_MS,
        start,
    )


def every_10s(start: int, until: int) -> list[int]:
    return list(range(start, until, 10_000))


def where(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def test_hour_that_stops_ticking_at_minute_10_is_flagged_on_its_last_tick() -> None:
    ts = every_10s(H10, H10 + 10 * MIN)
    t = ticks(ts)
    assert where(GAP.check(t, meta(len(t)), FX)) == [len(ts) - 1]
    v = validate(TickBatch(meta(len(t)), t), configure({}), H10, FX_DEFAULT_SCHEDULE)
    assert v.meta.quality == {"gap": 1}
    assert v.flags is not None and where(v.flags) == [len(ts) - 1]


def test_trailing_silence_up_to_the_threshold_is_not_a_gap() -> None:
    ts = every_10s(H10, H10 + 55 * MIN + 10_000)  # last tick 10:55:00, 300 s before 11:00
    t = ticks(ts)
    assert where(GAP.check(t, meta(len(t)), FX)) == []
    assert where(GAP.check(t, meta(len(t)), RuleParams(299, FX_DEFAULT_SCHEDULE))) == [len(ts) - 1]


def test_leading_silence_is_flagged_on_the_first_tick() -> None:
    t = ticks(every_10s(H10 + 7 * MIN, H10 + HOUR_MS))
    assert where(GAP.check(t, meta(len(t)), FX)) == [0]


def test_single_tick_with_both_silences_is_hit_once() -> None:
    t = ticks([H10 + 30 * MIN])
    v = validate(TickBatch(meta(1), t), configure({}), H10, FX_DEFAULT_SCHEDULE)
    assert v.meta.quality == {"gap": 1}
    assert v.flags is not None and v.flags.tolist() == [GAP.mask]


def test_trailing_silence_only_in_the_last_part_and_leading_only_in_part_0() -> None:
    first = ticks(every_10s(H10 + 6 * MIN, H10 + 20 * MIN))
    last = ticks(every_10s(H10 + 20 * MIN, H10 + 40 * MIN))
    assert where(GAP.check(first, meta(len(first), part=0, part_count=2), FX)) == [0]
    assert where(GAP.check(last, meta(len(last), part=1, part_count=2), FX)) == [len(last) - 1]
    # A middle part sees neither edge.
    assert where(GAP.check(first, meta(len(first), part=1, part_count=3), FX)) == []


def test_unit_fetched_before_its_end_stops_at_the_download_time() -> None:
    t = ticks(every_10s(H10, H10 + 10 * MIN))
    fetched = H10 + 12 * MIN  # the open hour was downloaded at 10:12
    assert where(GAP.check(t, meta(len(t), fetched_at=fetched), FX)) == []
    late = H10 + 16 * MIN
    assert where(GAP.check(t, meta(len(t), fetched_at=late), FX)) == [len(t) - 1]


def test_market_closing_after_the_last_tick_is_not_a_gap() -> None:
    # Friday 21:00–22:00Z: the FX week closes at 22:00; a last tick at 21:58 leaves 2 minutes.
    t = ticks(every_10s(FRI_21, FRI_21 + 58 * MIN + 10_000))
    assert where(GAP.check(t, meta(len(t), start=FRI_21), FX)) == []
    early = ticks(every_10s(FRI_21, FRI_21 + 50 * MIN))
    assert where(GAP.check(early, meta(len(early), start=FRI_21), FX)) == [len(early) - 1]
    # A 24/7 market's Friday evening has no close: 2 minutes is fine, the rest too.
    always = RuleParams(schedule=ALWAYS_OPEN)
    assert where(GAP.check(t, meta(len(t), start=FRI_21), always)) == []


def test_latest_tick_is_the_last_of_the_maxima_in_row_order() -> None:
    ts = np.array([H10 + 50 * MIN, H10 + 20 * MIN, H10 + 50 * MIN], dtype=np.int64)
    # Row 1 goes backwards (not a gap); rows 0 and 2 share the latest time: row 2 is hit.
    assert where(gap_mask(ts, FX_DEFAULT_SCHEDULE, 300, None, H10 + HOUR_MS)) == [2]
    assert where(gap_mask(ts[:2], FX_DEFAULT_SCHEDULE, 300, None, H10 + HOUR_MS)) == [0]


def test_silence_across_a_unit_boundary_is_seen_only_when_one_side_exceeds_g() -> None:
    # 10:57 → 11:03 is six minutes without a tick, three on each side of the boundary: neither
    # unit sees more than 300 s. This is the documented limit of validating units alone.
    a = ticks(every_10s(H10, H10 + 57 * MIN + 10_000))
    b = ticks(every_10s(H10 + HOUR_MS + 3 * MIN, H10 + 2 * HOUR_MS))
    assert where(GAP.check(a, meta(len(a)), FX)) == []
    assert where(GAP.check(b, meta(len(b), start=H10 + HOUR_MS), FX)) == []
    # Shifted so that the earlier unit's side alone is six minutes: seen there.
    a2 = ticks(every_10s(H10, H10 + 54 * MIN))
    assert where(GAP.check(a2, meta(len(a2)), FX)) == [len(a2) - 1]


def test_empty_unit_is_not_the_validators() -> None:
    # An open hour without any tick has no row to flag: the fetcher's suspect_empty covers it.
    assert GAP.check(ticks([]), meta(0), FX).tolist() == []


def test_no_schedule_no_edge_gaps() -> None:
    t = ticks([H10 + 30 * MIN])
    assert where(GAP.check(t, meta(1), RuleParams())) == []


def naive_gaps(ts: list[int], seconds: float, start: int | None, end: int | None) -> list[bool]:
    """One tick at a time, with the same schedule query per pair."""

    def open_ms(a: int, b: int) -> int:
        return int(FX_DEFAULT_SCHEDULE.open_ms_between(a, b))

    out = []
    for i, t in enumerate(ts):
        prev = ts[i - 1] if i else (t if start is None else start)
        out.append(open_ms(prev, t) > seconds * 1000)
    if ts and end is not None:
        latest = max(range(len(ts)), key=lambda k: (ts[k], k))
        out[latest] = out[latest] or open_ms(ts[latest], end) > seconds * 1000
    return out


@settings(max_examples=100, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 3_599), max_size=12),
    seconds=st.sampled_from([60.0, 300.0, 900.0]),
    edges=st.sampled_from([(True, True), (True, False), (False, True), (False, False)]),
    hour=st.sampled_from([H10, FRI_21, FRI_21 + HOUR_MS]),  # open, closing at 22:00, closed
)
def test_gap_mask_matches_naive(
    offsets: list[int], seconds: float, edges: tuple[bool, bool], hour: int
) -> None:
    ts = [hour + o * 1000 for o in offsets]
    start = hour if edges[0] else None
    end = hour + HOUR_MS if edges[1] else None
    got = gap_mask(np.array(ts, dtype=np.int64), FX_DEFAULT_SCHEDULE, seconds, start, end)
    assert got.tolist() == naive_gaps(ts, seconds, start, end)
