"""Ticks of sources with one quoted price and no volume (Deriv): bid == ask, NaN volumes with
``volume_unit`` ``none``. No rule may misfire on the zero spread or the missing volume."""

from __future__ import annotations

import numpy as np
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import ALWAYS_OPEN, FX_DEFAULT_SCHEDULE
from tickpipe_shared.kinds import DAY_MS, HOUR_MS
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_validator.rules import RULES
from tickpipe_validator.rules.crossed_quote import CROSSED_QUOTE
from tickpipe_validator.rules.duplicate import DUPLICATE
from tickpipe_validator.rules.non_negative_volume import NON_NEGATIVE_VOLUME
from tickpipe_validator.rules.spread_outlier import SPREAD_OUTLIER, spread_outlier_mask
from tickpipe_validator.validate import configure, validate

SAT = 1_549_670_400_000  # 2019-02-09T00:00:00Z, a Saturday: synthetic indices trade anyway


def deriv_meta(rows: int, start: int = SAT, volume_unit: str = "none") -> BatchMeta:
    return BatchMeta(
        unit=Unit("deriv", "R_50", "ticks", start, start + HOUR_MS),
        part=0,
        part_count=1,
        rows=rows,
        price_scale=4,
        payload_sha256="00" * 32,
        request_id="r",
        fetched_at_ms=start + DAY_MS,
        decoded_at_ms=start + DAY_MS,
        volume_unit=volume_unit,
        source_code="R_50",
        asset_class="synthetic",
    )


def deriv_hour(start: int = SAT, seed: int = 11) -> Ticks:
    """A tick every 2 s for a whole hour (1800), a random walk of one quoted price."""
    n = 1800
    rng = np.random.default_rng(seed)
    price = (1_847_895 + np.cumsum(rng.integers(-40, 41, n))).astype(np.int64)
    nan = np.full(n, np.nan)
    return Ticks(start + 2000 * np.arange(n, dtype=np.int64), price, price.copy(), nan, nan.copy())


def where(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def test_whole_deriv_hour_hits_nothing_with_every_rule() -> None:
    t = deriv_hour()
    rules = configure({r.name: "flag" if "flag" in r.allowed else "drop" for r in RULES})
    v = validate(TickBatch(deriv_meta(len(t)), t), rules, SAT, ALWAYS_OPEN)
    assert v.meta.quality == {}
    assert v.flags is not None and not v.flags.any()
    assert len(v.ticks) == 1800


def test_nan_volume_is_allowed_only_when_the_source_gives_none() -> None:
    t = deriv_hour()
    assert not NON_NEGATIVE_VOLUME.check(t, deriv_meta(len(t))).any()
    hit = NON_NEGATIVE_VOLUME.check(t, deriv_meta(len(t), volume_unit="millions"))
    assert hit.all()


def test_bad_volumes_are_still_hit_without_volume_unit() -> None:
    ts = SAT + np.arange(4, dtype=np.int64)
    p = np.full(4, 100, dtype=np.int64)
    t = Ticks(ts, p, p, np.array([np.nan, -1.0, np.inf, np.nan]), np.array([np.nan] * 3 + [-2.0]))
    assert where(NON_NEGATIVE_VOLUME.check(t, deriv_meta(4))) == [1, 2, 3]


def test_zero_spread_is_neither_crossed_nor_an_outlier() -> None:
    p = np.array([100, 250, 90, 100_000], dtype=np.int64)
    assert where(spread_outlier_mask(p, p)) == []
    assert where(spread_outlier_mask(p, p, k=1)) == []
    t = deriv_hour()
    assert where(SPREAD_OUTLIER.check(t, deriv_meta(len(t)))) == []
    assert where(CROSSED_QUOTE.check(t, deriv_meta(len(t)))) == []


def test_repeated_single_price_ticks_with_nan_volumes_are_duplicates() -> None:
    p = np.array([100, 100, 100], dtype=np.int64)
    nan = np.full(3, np.nan)
    t = Ticks(np.array([SAT, SAT, SAT + 2000], dtype=np.int64), p, p, nan, nan)
    assert where(DUPLICATE.check(t, deriv_meta(3))) == [1]


def test_synthetic_index_gaps_count_on_saturday() -> None:
    t = deriv_hour()
    keep = np.ones(len(t), dtype=bool)
    keep[100:400] = False  # 602 s without a tick, on a Saturday
    t = t.take(keep)
    v = validate(TickBatch(deriv_meta(len(t)), t), configure({}), SAT, ALWAYS_OPEN)
    assert v.meta.quality == {"gap": 1}
    assert v.flags is not None and where(v.flags) == [100]
    # On the FX week the same Saturday is closed: no gap.
    v = validate(TickBatch(deriv_meta(len(t)), t), configure({}), SAT, FX_DEFAULT_SCHEDULE)
    assert v.meta.quality == {}
