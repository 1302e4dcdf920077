"""Candle rules (masks) and ``validate`` on candle batches: actions, quality, errors."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.kinds import DAY_MS, HOUR_MS, MINUTE_MS, KindError
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import (
    FLAGS_COLUMN,
    BatchMeta,
    CandleBatch,
    TickBatch,
    decode_batch,
    encode_batch,
)
from tickpipe_validator.rules import RULES, CandleCheck, Rule, RuleParams
from tickpipe_validator.rules.aligned_start import ALIGNED_START, alignment_step_ms
from tickpipe_validator.rules.candle_high_low import CANDLE_HIGH_LOW
from tickpipe_validator.rules.duplicate import DUPLICATE
from tickpipe_validator.rules.inside_unit import INSIDE_UNIT
from tickpipe_validator.rules.non_decreasing import NON_DECREASING
from tickpipe_validator.rules.non_negative_volume import NON_NEGATIVE_VOLUME
from tickpipe_validator.rules.positive_price import POSITIVE_PRICE
from tickpipe_validator.rules.price_spike import PRICE_SPIKE, candle_mad_floor, price_spike_mask
from tickpipe_validator.validate import RejectedUnitError, configure, validate, validate_candles

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z, a Monday
M = MINUTE_MS
AT = T0 + 2 * DAY_MS


def candles(
    ts: list[int],
    o: list[int] | None = None,
    h: list[int] | None = None,
    lo: list[int] | None = None,
    c: list[int] | None = None,
    v: list[float] | None = None,
) -> Candles:
    n = len(ts)
    return Candles(
        ts_ms=np.array(ts, dtype=np.int64),
        open=np.array(o if o is not None else [100] * n, dtype=np.int64),
        high=np.array(h if h is not None else [103] * n, dtype=np.int64),
        low=np.array(lo if lo is not None else [99] * n, dtype=np.int64),
        close=np.array(c if c is not None else [101] * n, dtype=np.int64),
        volume=np.array(v if v is not None else [1.0] * n, dtype=np.float64),
    )


def cmeta(
    rows: int,
    kind: str = "candles:1m:bid",
    *,
    start: int = T0,
    end: int = T0 + DAY_MS,
    source: str = "dukascopy-bi5",
    volume_unit: str = "millions",
    asset_class: str = "",
    part: int = 0,
) -> BatchMeta:
    return BatchMeta(
        unit=Unit(source, "EURUSD", kind, start, end),
        part=part,
        part_count=part + 1,
        rows=rows,
        price_scale=5,
        payload_sha256="00" * 32,
        request_id="r",
        fetched_at_ms=end,
        decoded_at_ms=end,
        volume_unit=volume_unit,
        columns=list(CANDLE_COLUMNS),
        asset_class=asset_class,
    )


def batch(c: Candles, **kw: Any) -> CandleBatch:
    return CandleBatch(cmeta(len(c), **kw), c)


def ccheck(rule: Rule) -> CandleCheck:
    assert rule.candle_check is not None
    return rule.candle_check


def where(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def minutes(n: int, first: int = 0) -> list[int]:
    return [T0 + (first + i) * M for i in range(n)]


def all_flag() -> dict[str, str]:
    return {r.name: "flag" if "flag" in r.allowed else "drop" for r in RULES}


# --- the rules' candle masks ------------------------------------------------------------------


def test_inside_unit_candles() -> None:
    c = candles([T0 - M, T0, T0 + DAY_MS - M, T0 + DAY_MS, T0 + 2 * DAY_MS])
    assert where(ccheck(INSIDE_UNIT)(c, cmeta(5))) == [0, 3, 4]


def test_non_decreasing_and_duplicate_make_starts_strictly_increasing() -> None:
    c = candles([T0 + 2 * M, T0 + M, T0 + M, T0 + 3 * M, T0 + 3 * M, T0 + 4 * M])
    m = cmeta(6)
    assert where(ccheck(NON_DECREASING)(c, m)) == [1]
    assert where(ccheck(DUPLICATE)(c, m)) == [2, 4]
    assert where(ccheck(DUPLICATE)(candles([T0]), cmeta(1))) == []


def test_duplicate_start_with_other_prices_is_a_duplicate_and_drop_keeps_the_first() -> None:
    c = candles([T0, T0, T0 + M], c=[101, 102, 101])
    v = validate(batch(c), configure({}), AT)
    assert v.candles.ts_ms.tolist() == [T0, T0 + M]
    assert v.candles.close.tolist() == [101, 101]
    assert v.meta.quality == {"duplicate": 1}


def test_positive_price_candles_every_ohlc() -> None:
    c = candles(
        minutes(5),
        o=[1, 0, 5, 5, 5],
        h=[9, 9, -1, 9, 9],
        lo=[1, 1, 1, 0, 1],
        c=[5, 5, 5, 5, -3],
    )
    assert where(ccheck(POSITIVE_PRICE)(c, cmeta(5))) == [1, 2, 3, 4]


def test_non_negative_volume_candles_nan_allowed_only_without_volume() -> None:
    c = candles(minutes(6), v=[-1.0, np.nan, np.inf, -np.inf, 0.0, 2.5])
    check = ccheck(NON_NEGATIVE_VOLUME)
    assert where(check(c, cmeta(6))) == [0, 1, 2, 3]
    assert where(check(c, cmeta(6, volume_unit="none"))) == [0, 2, 3]
    assert where(check(c, cmeta(6, volume_unit="units"))) == [0, 1, 2, 3]


def test_candle_high_low_rule() -> None:
    o, h, lo, c_ = [10, 10, 10, 10], [12, 11, 12, 9], [9, 9, 11, 11], [11, 12, 11, 10]
    c = candles(minutes(4), o=o, h=h, lo=lo, c=c_)
    assert where(ccheck(CANDLE_HIGH_LOW)(c, cmeta(4))) == [1, 2, 3]
    assert CANDLE_HIGH_LOW.check is None


# --- aligned_start ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "source", "asset_class", "step"),
    [
        ("candles:1m:bid", "dukascopy-bi5", "", M),
        ("candles:1h:ask", "dukascopy-json", "fx", HOUR_MS),
        ("candles:1s:trade", "polygon", "stock", 1000),
        ("candles:15m:mid", "deriv", "synthetic", 15 * M),
        ("candles:4h:mid", "deriv", "synthetic", 4 * HOUR_MS),
        ("candles:12h:mid", "deriv", "fx", 12 * HOUR_MS),
        ("candles:90m:trade", "polygon", "crypto", 90 * M),
        # Polygon stocks / indices may count from New York midnight: hours only.
        ("candles:4h:trade", "polygon", "stock", HOUR_MS),
        ("candles:90m:trade", "polygon", "index", 30 * M),
        ("candles:30m:trade", "polygon", "", 30 * M),
        ("candles:4h:trade", "polygon", "fx", 4 * HOUR_MS),
        # Not checked: a day or longer, calendar timeframes, timeframes that do not divide a day.
        ("candles:1d:bid", "dukascopy-bi5", "fx", None),
        ("candles:1d:trade", "polygon", "stock", None),
        ("candles:1w:trade", "polygon", "crypto", None),
        ("candles:1mo:trade", "polygon", "crypto", None),
        ("candles:7m:trade", "polygon", "crypto", None),
        ("candles:5h:trade", "polygon", "crypto", None),
    ],
)
def test_alignment_step(kind: str, source: str, asset_class: str, step: int | None) -> None:
    assert alignment_step_ms(cmeta(0, kind, source=source, asset_class=asset_class)) == step


def test_aligned_start_mask() -> None:
    check = ccheck(ALIGNED_START)
    c = candles([T0, T0 + M, T0 + M + 30_000, T0 + 2 * M + 1])
    assert where(check(c, cmeta(4))) == [2, 3]
    h = candles([T0, T0 + HOUR_MS, T0 + 30 * M])
    assert where(check(h, cmeta(3, "candles:1h:bid"))) == [2]


def test_polygon_daily_stock_bars_at_new_york_midnight_are_not_flagged() -> None:
    check = ccheck(ALIGNED_START)
    # 2005-04-01 05:00Z (EST) and 2005-04-04 04:00Z (EDT): midnight in New York.
    c = candles([1_112_331_600_000, 1_112_587_200_000])
    year = 1_104_537_600_000  # 2005-01-01T00:00Z
    m = cmeta(2, "candles:1d:trade", start=year, end=year + 365 * DAY_MS, source="polygon",
              asset_class="stock")  # fmt: skip
    assert where(check(c, m)) == []
    # 4-hour stock bars from New York midnight (05:00Z) are on the hour grid; 05:30Z is not.
    c4 = candles([T0 + 5 * HOUR_MS, T0 + 9 * HOUR_MS, T0 + 13 * HOUR_MS + 30 * M])
    m4 = cmeta(3, "candles:4h:trade", source="polygon", asset_class="stock")
    assert where(check(c4, m4)) == [2]
    # The same bars of a crypto pair are off its UTC grid.
    m4c = cmeta(3, "candles:4h:trade", source="polygon", asset_class="crypto")
    assert where(check(c4, m4c)) == [0, 1, 2]


def test_malformed_candle_kind_is_a_kind_error() -> None:
    b = batch(candles([T0]), kind="candles:7x:bid")
    with pytest.raises(KindError, match="timeframe '7x'"):
        validate_candles(b, configure({}), AT)


# --- price_spike on closes --------------------------------------------------------------------


def walk(n: int, seed: int = 3) -> Candles:
    rng = np.random.default_rng(seed)
    close = (113_000 + np.cumsum(rng.integers(-3, 4, n))).astype(np.int64)
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) + 2
    low = np.minimum(open_, close) - 2
    return Candles(np.array(minutes(n), dtype=np.int64), open_, high, low, close, np.ones(n))


def test_candle_mad_floor_is_the_median_positive_range() -> None:
    c = candles(minutes(5), h=[10, 14, 10, 20, 10], lo=[10, 10, 10, 12, 4])  # ranges 0 4 0 8 6
    assert candle_mad_floor(c) == 6.0
    flat = candles(minutes(3), h=[10, 10, 10], lo=[10, 10, 10])
    assert candle_mad_floor(flat) == 1.0
    assert candle_mad_floor(Candles.empty()) == 1.0


def test_price_spike_on_closes() -> None:
    check = ccheck(PRICE_SPIKE)
    c = walk(120)
    m = cmeta(120)
    assert where(check(c, m)) == []
    floor = candle_mad_floor(c)  # about 7 points: a step of ±3 plus 2 on each side
    close = c.close.copy()
    close[60] += int(12 * floor)
    spiked = Candles(c.ts_ms, c.open, np.maximum(c.high, close), c.low, close, c.volume)
    assert where(check(spiked, m)) == [60]
    assert where(check(spiked, m, RuleParams(threshold=15))) == []


def test_price_spike_on_closes_ignores_a_calm_move_of_a_few_ranges() -> None:
    # A quiet stretch (closes within a point) then a dip of 15 points for four candles: 15 MADs
    # of one point, but under two candle ranges of 8 points. Recorded late-evening EURUSD minutes
    # look like this; they are not spikes.
    n = 40
    close = np.full(n, 112_894, dtype=np.int64)
    close[::3] += 1
    close[20:24] -= 15
    ts = np.array(minutes(n), dtype=np.int64)
    c = Candles(ts, close, close + 4, close - 4, close, np.ones(n))
    assert where(price_spike_mask(close, close)) == [20, 21, 22, 23]  # the tick scale would hit
    assert where(ccheck(PRICE_SPIKE)(c, cmeta(n))) == []


# --- validate on candle batches: actions, quality, messages --------------------------------------


def test_clean_candle_batch() -> None:
    c = walk(30)
    v = validate(batch(c), configure({}), AT)
    assert isinstance(v, CandleBatch)
    assert v.flags is not None and v.flags.dtype == np.uint16 and v.flags.tolist() == [0] * 30
    assert v.meta.quality == {}
    assert v.meta.validated_at_ms == AT
    assert v.meta.columns == [*CANDLE_COLUMNS, FLAGS_COLUMN]
    back = decode_batch(encode_batch(v))
    assert isinstance(back, CandleBatch)
    assert back.flags is not None and back.flags.tolist() == [0] * 30


def test_flag_action_on_candles_sets_bits() -> None:
    c = candles(
        [T0, T0 + 2 * M, T0 + M + 1, T0 + 3 * M],
        h=[103, 100, 103, 103],  # row 1: high below open and close
        v=[1.0, 1.0, -2.0, 1.0],  # row 2: negative volume
    )
    v = validate(batch(c), configure({}), AT)
    assert v.flags is not None
    bit = {r.name: r.mask for r in RULES}
    assert v.flags.tolist() == [
        0,
        bit["candle_high_low"],
        bit["non_decreasing"] | bit["non_negative_volume"] | bit["aligned_start"],
        0,
    ]
    assert v.meta.quality == {
        "non_decreasing": 1,
        "non_negative_volume": 1,
        "candle_high_low": 1,
        "aligned_start": 1,
    }


def test_drop_action_on_candles() -> None:
    c = candles([T0 - M, T0, T0 + M, T0 + 2 * M], h=[103, 103, 100, 103])
    rules = configure({"inside_unit": "drop", "candle_high_low": "drop"})
    v = validate(batch(c), rules, AT)
    assert v.candles.ts_ms.tolist() == [T0, T0 + 2 * M]
    assert v.meta.rows == 2 and v.flags is not None and v.flags.tolist() == [0, 0]
    assert v.meta.quality == {"inside_unit": 1, "candle_high_low": 1}


def test_reject_action_on_candles_message() -> None:
    c = candles(minutes(3), o=[100, 0, 100], lo=[99, 0, 99])
    with pytest.raises(RejectedUnitError) as info:
        validate(batch(c, part=1), configure({}), AT)
    assert str(info.value) == (
        "dukascopy-bi5|EURUSD|candles:1m:bid|2019-02-04T00:00:00Z part 1: rule positive_price "
        "(open, high, low or close is zero or negative) hit 1 of 3 candles, first at row 1 "
        f"(ts_ms={T0 + M}, open=0, high=103, low=0, close=101 points)"
    )


def test_candle_only_rule_can_reject() -> None:
    c = candles([T0 + M, T0 + 90_000])
    with pytest.raises(RejectedUnitError, match=re.escape("rule aligned_start (candle start not")):
        validate(batch(c), configure({"aligned_start": "reject"}), AT)


def test_tick_only_rules_skip_candles_and_candle_only_rules_skip_ticks() -> None:
    # Rejecting tick-only rules does nothing to candles (their flat closes would be a stale run,
    # their zero spread nothing at all) …
    tick_only = {"crossed_quote", "spread_outlier", "stale_run", "gap"}
    rules = configure(dict.fromkeys(tick_only, "reject"), thresholds={"stale_run": 2})
    flat = candles(minutes(10), o=[100] * 10, h=[100] * 10, lo=[100] * 10, c=[100] * 10)
    assert validate(batch(flat), rules, AT).meta.quality == {}
    # … and rejecting candle-only rules does nothing to ticks.
    n = 3
    t = Ticks(
        np.array([T0 + 1, T0 + 2, T0 + 3], dtype=np.int64),
        np.full(n, 100, dtype=np.int64),
        np.full(n, 101, dtype=np.int64),
        np.ones(n),
        np.ones(n),
    )
    tm = BatchMeta(
        Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR_MS),
        0,
        1,
        n,
        5,
        "00" * 32,
        "r",
        T0,
        T0,
    )
    rules = configure({"candle_high_low": "reject", "aligned_start": "reject"})
    assert validate(TickBatch(tm, t), rules, AT).meta.quality == {}


def test_empty_candle_batch() -> None:
    v = validate(batch(Candles.empty()), configure({}), AT)
    assert len(v.candles) == 0 and v.flags is not None and len(v.flags) == 0
    assert v.meta.rows == 0 and v.meta.quality == {}


def test_validate_candles_does_not_modify_input() -> None:
    c = candles([T0 - M, T0])
    b = batch(c)
    validate(b, configure({"inside_unit": "drop"}), AT)
    assert b.flags is None and b.meta.rows == 2 and b.meta.quality == {}
    assert b.candles.ts_ms.tolist() == [T0 - M, T0]


# --- property: flags and drops correspond exactly to the candle masks ---------------------------

CANDLE_FLAGGABLE = [
    "non_decreasing",
    "positive_price",
    "non_negative_volume",
    "duplicate",
    "candle_high_low",
    "aligned_start",
]


@st.composite
def candle_arrays(draw: st.DrawFn) -> Candles:
    n = draw(st.integers(0, 30))
    ts = draw(hnp.arrays(np.int64, n, elements=st.sampled_from([T0 - M, T0, T0 + M, T0 + 61_000])))
    prices = [draw(hnp.arrays(np.int64, n, elements=st.integers(-2, 8))) for _ in range(4)]
    vol = st.sampled_from([np.nan, np.inf, -1.0, 0.0, 3.5])
    return Candles(ts, *prices, draw(hnp.arrays(np.float64, n, elements=vol)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    c=candle_arrays(),
    actions=st.fixed_dictionaries(
        {name: st.sampled_from(["flag", "drop"]) for name in CANDLE_FLAGGABLE}
    ),
    volume_unit=st.sampled_from(["millions", "none"]),
)
def test_candle_flags_and_drops_match_rule_masks(
    c: Candles, actions: dict[str, str], volume_unit: str
) -> None:
    b = batch(c, volume_unit=volume_unit)
    rules = configure({**actions, "inside_unit": "drop"})
    masks = {
        r.rule.name: r.rule.candle_check(c, b.meta, RuleParams(r.threshold))
        for r in rules
        if r.rule.candle_check is not None
    }
    dropped = np.zeros(len(c), dtype=bool)
    expected = np.zeros(len(c), dtype=np.uint16)
    for r in rules:
        if r.rule.name in masks:
            if r.action == "drop":
                dropped |= masks[r.rule.name]
            else:
                expected[masks[r.rule.name]] |= np.uint16(r.rule.mask)
    v = validate(b, rules, AT)
    keep = ~dropped
    assert v.flags is not None
    np.testing.assert_array_equal(v.flags, expected[keep])
    for name, _ in CANDLE_COLUMNS:
        np.testing.assert_array_equal(getattr(v.candles, name), getattr(c, name)[keep])
    assert v.meta.quality == {name: int(m.sum()) for name, m in masks.items() if m.any()}
