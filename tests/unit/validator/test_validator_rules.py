"""Validator rules (masks) and ``validate``/``configure`` (actions, quality, errors)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tickpipe_shared.columns import TICK_COLUMNS, Ticks
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import FLAGS_COLUMN, BatchMeta, TickBatch
from tickpipe_validator.rules import ACTIONS, CANDLE_RULES, RULES, TICK_RULES, Rule
from tickpipe_validator.rules.crossed_quote import CROSSED_QUOTE
from tickpipe_validator.rules.inside_unit import INSIDE_UNIT
from tickpipe_validator.rules.non_decreasing import NON_DECREASING
from tickpipe_validator.rules.non_negative_volume import NON_NEGATIVE_VOLUME
from tickpipe_validator.rules.positive_price import POSITIVE_PRICE
from tickpipe_validator.validate import (
    ConfigError,
    ConfiguredRule,
    RejectedUnitError,
    configure,
    validate,
)

T0 = 1_549_238_400_000  # 2019-02-04T00:00:00Z
HOUR = 3_600_000
AT = T0 + 5 * HOUR


def ticks(
    ts: list[int],
    bid: list[int] | None = None,
    ask: list[int] | None = None,
    bv: list[float] | None = None,
    av: list[float] | None = None,
) -> Ticks:
    n = len(ts)
    return Ticks(
        ts_ms=np.array(ts, dtype=np.int64),
        bid=np.array(bid if bid is not None else [100] * n, dtype=np.int64),
        ask=np.array(ask if ask is not None else [101] * n, dtype=np.int64),
        bid_volume=np.array(bv if bv is not None else [1.0] * n, dtype=np.float64),
        ask_volume=np.array(av if av is not None else [1.0] * n, dtype=np.float64),
    )


def meta(rows: int, part: int = 0) -> BatchMeta:
    return BatchMeta(
        unit=Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR),
        part=part,
        part_count=part + 1,
        rows=rows,
        price_scale=5,
        payload_sha256="00" * 32,
        request_id="r",
        fetched_at_ms=T0,
        decoded_at_ms=T0,
    )


def batch(t: Ticks, part: int = 0) -> TickBatch:
    return TickBatch(meta(len(t), part), t)


# --- the rules' masks -------------------------------------------------------------------------


def test_rule_registry() -> None:
    assert [r.name for r in RULES] == [
        "inside_unit",
        "non_decreasing",
        "positive_price",
        "crossed_quote",
        "non_negative_volume",
        "duplicate",
        "spread_outlier",
        "price_spike",
        "stale_run",
        "gap",
        "candle_high_low",
        "aligned_start",
    ]
    assert [r.bit for r in RULES] == list(range(12))
    assert len({r.bit for r in RULES}) == len(RULES)
    assert len({r.name for r in RULES}) == len(RULES)
    assert [r.mask for r in RULES] == [1 << b for b in range(12)]
    assert all(r.action in r.allowed for r in RULES)
    assert ACTIONS == ("flag", "drop", "reject")
    # Which rules check what: one name per concept, shared by ticks and candles where it fits.
    assert [r.name for r in TICK_RULES] == [r.name for r in RULES[:10]]
    assert [r.name for r in CANDLE_RULES] == [
        "inside_unit",
        "non_decreasing",
        "positive_price",
        "non_negative_volume",
        "duplicate",
        "price_spike",
        "candle_high_low",
        "aligned_start",
    ]
    for r in RULES:
        assert bool(r.description) == (r.check is not None)
        assert bool(r.candle_description) == (r.candle_check is not None)


def test_rule_needs_a_check_and_descriptions() -> None:
    with pytest.raises(ValueError, match="rule 'x' checks neither ticks nor candles"):
        Rule(name="x", bit=15, action="flag")
    with pytest.raises(ValueError, match="rule 'x' lacks the description of a hit row"):
        Rule(name="x", bit=15, action="flag", check=CROSSED_QUOTE.check)


def test_inside_unit_mask() -> None:
    t = ticks([T0 - 1, T0, T0 + HOUR - 1, T0 + HOUR, T0 + 2 * HOUR])
    assert INSIDE_UNIT.check(t, meta(5)).tolist() == [True, False, False, True, True]


def test_non_decreasing_mask() -> None:
    t = ticks([T0 + 5, T0 + 5, T0 + 3, T0 + 4, T0 + 1, T0 + 9])
    assert NON_DECREASING.check(t, meta(6)).tolist() == [False, False, True, False, True, False]
    assert NON_DECREASING.check(ticks([T0]), meta(1)).tolist() == [False]
    assert NON_DECREASING.check(Ticks.empty(), meta(0)).tolist() == []


def test_positive_price_mask() -> None:
    t = ticks([T0] * 5, bid=[1, 0, 5, -3, 7], ask=[1, 5, 0, 4, -1])
    assert POSITIVE_PRICE.check(t, meta(5)).tolist() == [False, True, True, True, True]


def test_crossed_quote_mask() -> None:
    t = ticks([T0] * 3, bid=[100, 101, 102], ask=[101, 101, 101])
    assert CROSSED_QUOTE.check(t, meta(3)).tolist() == [False, False, True]  # locked allowed


def test_non_negative_volume_mask() -> None:
    t = ticks(
        [T0] * 6,
        bv=[0.0, -0.1, np.nan, 1.0, 1.0, np.inf],
        av=[0.0, 1.0, 1.0, -np.inf, np.nan, 2.0],
    )
    assert NON_NEGATIVE_VOLUME.check(t, meta(6)).tolist() == [False, True, True, True, True, True]


# --- configure --------------------------------------------------------------------------------


def test_configure_defaults() -> None:
    configured = configure({})
    assert [(c.rule.name, c.action) for c in configured] == [
        ("inside_unit", "reject"),
        ("non_decreasing", "flag"),
        ("positive_price", "reject"),
        ("crossed_quote", "flag"),
        ("non_negative_volume", "flag"),
        ("duplicate", "drop"),
        ("spread_outlier", "flag"),
        ("price_spike", "flag"),
        ("stale_run", "flag"),
        ("gap", "flag"),
        ("candle_high_low", "flag"),
        ("aligned_start", "flag"),
    ]


def test_configure_overrides() -> None:
    configured = {
        c.rule.name: c.action for c in configure({"crossed_quote": "drop", "inside_unit": "drop"})
    }
    assert configured["crossed_quote"] == "drop"
    assert configured["inside_unit"] == "drop"
    assert configured["non_decreasing"] == "flag"


def test_configure_unknown_rule() -> None:
    with pytest.raises(ConfigError) as info:
        configure({"crossed_quotes": "drop", "zzz": "flag"})
    msg = str(info.value)
    assert msg.startswith("unknown validation rules ['crossed_quotes', 'zzz']; known: [")
    assert "'crossed_quote'" in msg and "'inside_unit'" in msg


def test_configure_inside_unit_cannot_flag() -> None:
    with pytest.raises(
        ConfigError, match="rule 'inside_unit' cannot 'flag'; allowed: drop, reject"
    ):
        configure({"inside_unit": "flag"})


def test_configure_unknown_action() -> None:
    with pytest.raises(
        ConfigError, match="rule 'crossed_quote' cannot 'ignore'; allowed: flag, drop, reject"
    ):
        configure({"crossed_quote": "ignore"})


# --- validate ---------------------------------------------------------------------------------


def test_clean_batch_gets_zero_flags_and_empty_quality() -> None:
    b = batch(ticks([T0, T0 + 1, T0 + 2]))
    v = validate(b, configure({}), AT)
    assert v.flags is not None and v.flags.dtype == np.uint16
    assert v.flags.tolist() == [0, 0, 0]
    assert v.meta.quality == {}
    assert v.meta.validated_at_ms == AT
    assert v.meta.columns == [*TICK_COLUMNS, FLAGS_COLUMN]
    assert v.meta.rows == 3


def test_flag_action_sets_bits_and_counts() -> None:
    t = ticks(
        [T0 + 10, T0 + 5, T0 + 20, T0 + 30],
        bid=[100, 102, 100, 100],
        ask=[101, 101, 101, 101],
        bv=[1.0, -1.0, 1.0, 1.0],
    )
    v = validate(batch(t), configure({}), AT)
    assert v.flags is not None
    # row 1: went backwards (bit 1), crossed (bit 3), negative volume (bit 4)
    assert v.flags.tolist() == [0, 0b11010, 0, 0]
    assert v.meta.quality == {"non_decreasing": 1, "crossed_quote": 1, "non_negative_volume": 1}
    assert len(v.ticks) == 4


def test_drop_action_removes_ticks_and_keeps_others_flags() -> None:
    t = ticks(
        [T0 - 5, T0 + 1, T0 + 2, T0 + HOUR],
        bid=[100, 105, 100, 100],
        ask=[101, 101, 101, 101],
    )
    rules = configure({"inside_unit": "drop"})
    v = validate(batch(t), rules, AT)
    assert v.ticks.ts_ms.tolist() == [T0 + 1, T0 + 2]
    assert v.ticks.bid.tolist() == [105, 100]
    assert v.flags is not None and v.flags.tolist() == [CROSSED_QUOTE.mask, 0]
    assert v.meta.rows == 2
    assert v.meta.quality == {"inside_unit": 2, "crossed_quote": 1}


def test_drop_everything() -> None:
    t = ticks([T0 + 1, T0 + 2], bid=[5, 6], ask=[1, 1])
    v = validate(batch(t), configure({"crossed_quote": "drop"}), AT)
    assert len(v.ticks) == 0 and v.meta.rows == 0
    assert v.flags is not None and v.flags.tolist() == []
    assert v.meta.quality == {"crossed_quote": 2}


def test_reject_action_message() -> None:
    t = ticks([T0 + 1, T0 + 2, T0 + 3, T0 + 4], bid=[100, 0, 100, -1], ask=[101, 101, 101, 101])
    with pytest.raises(RejectedUnitError) as info:
        validate(batch(t, part=2), configure({}), AT)
    assert str(info.value) == (
        "dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z part 2: rule positive_price "
        "(bid or ask is zero or negative) hit 2 of 4 ticks, first at row 1 "
        f"(ts_ms={T0 + 2}, bid=0, ask=101 points)"
    )


def test_reject_configured_for_a_flag_rule() -> None:
    t = ticks([T0, T0 + 1], bid=[100, 102], ask=[101, 101])
    with pytest.raises(
        RejectedUnitError, match=r"rule crossed_quote .* hit 1 of 2 ticks, first at row 1"
    ):
        validate(batch(t), configure({"crossed_quote": "reject"}), AT)


def test_default_rejects_tick_outside_unit() -> None:
    t = ticks([T0, T0 + HOUR])
    with pytest.raises(RejectedUnitError, match=re.escape("rule inside_unit (timestamp outside")):
        validate(batch(t), configure({}), AT)


def test_validate_empty_batch() -> None:
    v = validate(batch(Ticks.empty()), configure({}), AT)
    assert len(v.ticks) == 0 and v.flags is not None and len(v.flags) == 0


def test_validate_does_not_modify_input() -> None:
    t = ticks([T0 - 1, T0 + 1], bid=[5, 6], ask=[1, 1])
    b = batch(t)
    validate(b, configure({"inside_unit": "drop"}), AT)
    assert b.flags is None and b.meta.rows == 2 and b.meta.quality == {}
    assert b.ticks.ts_ms.tolist() == [T0 - 1, T0 + 1]


# --- property: flags and drops correspond exactly to the masks ----------------------------------

FLAGGABLE = ["non_decreasing", "positive_price", "crossed_quote", "non_negative_volume"]


@st.composite
def tick_arrays(draw: st.DrawFn) -> Ticks:
    n = draw(st.integers(0, 40))
    ts = draw(hnp.arrays(np.int64, n, elements=st.integers(T0 - 1000, T0 + HOUR + 1000)))
    bid = draw(hnp.arrays(np.int64, n, elements=st.integers(-5, 20)))
    ask = draw(hnp.arrays(np.int64, n, elements=st.integers(-5, 20)))
    vol = st.one_of(
        st.floats(-2, 5, allow_nan=False), st.sampled_from([np.nan, np.inf, -np.inf, 0.0])
    )
    bv = draw(hnp.arrays(np.float64, n, elements=vol))
    av = draw(hnp.arrays(np.float64, n, elements=vol))
    return Ticks(ts, bid, ask, bv, av)


@st.composite
def action_maps(draw: st.DrawFn) -> dict[str, str]:
    actions = {name: draw(st.sampled_from(["flag", "drop"])) for name in FLAGGABLE}
    actions["inside_unit"] = "drop"
    return actions


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t=tick_arrays(), actions=action_maps())
def test_flags_and_drops_match_rule_masks(t: Ticks, actions: dict[str, str]) -> None:
    b = batch(t)
    rules = configure(actions)
    masks = {c.rule.name: c.rule.check(t, b.meta) for c in rules if c.rule.check is not None}
    dropped = np.zeros(len(t), dtype=bool)
    expected_flags = np.zeros(len(t), dtype=np.uint16)
    for c in rules:
        if c.rule.name not in masks:
            continue
        if c.action == "drop":
            dropped |= masks[c.rule.name]
        else:
            expected_flags[masks[c.rule.name]] |= np.uint16(c.rule.mask)
    v = validate(b, rules, AT)
    keep = ~dropped
    assert v.flags is not None
    np.testing.assert_array_equal(v.flags, expected_flags[keep])
    for name, _ in TICK_COLUMNS:
        np.testing.assert_array_equal(getattr(v.ticks, name), getattr(t, name)[keep])
    assert v.meta.rows == int(keep.sum())
    assert v.meta.quality == {name: int(m.sum()) for name, m in masks.items() if m.any()}
    # Every kept tick has exactly the bits of the flag rules that hit it.
    for c in rules:
        if c.action == "flag" and c.rule.name in masks:
            bit_set = (v.flags & c.rule.mask) != 0
            np.testing.assert_array_equal(bit_set, masks[c.rule.name][keep])


def test_configured_rule_is_plain_data() -> None:
    c = ConfiguredRule(CROSSED_QUOTE, "drop")
    assert c.rule is CROSSED_QUOTE and c.action == "drop"
