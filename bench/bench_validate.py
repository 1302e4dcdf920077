"""Validation throughput on the recorded EURUSD sample, against baselines.

Run: ``uv run python bench/bench_validate.py [--repeat N]``. Needs ``../shared/data/dukascopy``
beside the repo (or ``TICKPIPE_SHARED_DIR``). Decodes the 49 ``.bi5`` tick hours once, then
times, in the same run:

* ``validate`` with the default rules and actions (FX default schedule for ``gap``), hour by
  hour as the validator stage sees them;
* each rule's check alone, to show where the time goes;
* baselines: ``decode_bi5_ticks`` of the same files (the stage before; validation should not be
  the bottleneck), and a naive per-tick Python loop implementing the same ten rules;
* ``validate`` on candles: the recorded ``.bi5`` BID candle files (minute days, hour months,
  day years) with the default rules, against ``decode_bi5_candles`` of the same files.

Each figure is the best of N runs (the naive loop runs once: it is slow).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import best, dukascopy_dir
from support.batches import unit_meta
from support.shared_data import bi5_candle_unit, bi5_hour_start
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_candles, decode_bi5_ticks
from tickpipe_shared.candles import CANDLE_COLUMNS
from tickpipe_shared.instruments.schedule import FX_DEFAULT_SCHEDULE, TradingSchedule
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import CandleBatch, TickBatch
from tickpipe_validator.rules import TICK_RULES, RuleParams
from tickpipe_validator.validate import configure, validate

REPO = Path(__file__).resolve().parents[1]
HOUR_MS = 3_600_000


def same_vol(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def naive_validate(b: TickBatch, schedule: TradingSchedule) -> dict[str, int]:
    """The ten tick rules, one tick at a time in plain Python (the same definitions)."""
    m, t = b.meta, b.ticks
    ts, bid, ask = t.ts_ms.tolist(), t.bid.tolist(), t.ask.tolist()
    bv, av = t.bid_volume.tolist(), t.ask_volume.tolist()
    n = len(ts)
    counts = dict.fromkeys((r.name for r in TICK_RULES), 0)
    spreads = [a - b_ for a, b_ in zip(ask, bid, strict=True)]
    median_spread = max(statistics.median(spreads), 1) if n else 1
    mid2 = [a + b_ for a, b_ in zip(ask, bid, strict=True)]
    w = min(21, n)
    run_start, stale = 0, [False] * n
    gap_at: set[int] = set()
    for i in range(n):
        counts["inside_unit"] += not (m.unit.start_ms <= ts[i] < m.unit.end_ms)
        counts["non_decreasing"] += i > 0 and ts[i] < ts[i - 1]
        counts["positive_price"] += bid[i] <= 0 or ask[i] <= 0
        counts["crossed_quote"] += bid[i] > ask[i]
        counts["non_negative_volume"] += not (
            math.isfinite(bv[i]) and math.isfinite(av[i]) and bv[i] >= 0 and av[i] >= 0
        )
        same = i > 0 and bid[i] == bid[i - 1] and ask[i] == ask[i - 1]
        counts["duplicate"] += (
            same
            and ts[i] == ts[i - 1]
            and same_vol(bv[i], bv[i - 1])
            and same_vol(av[i], av[i - 1])
        )
        counts["spread_outlier"] += spreads[i] > 50 * median_spread
        lo = min(max(i - 10, 0), n - w)
        win = mid2[lo : lo + w]
        med = statistics.median(win)
        mad = statistics.median(abs(x - med) for x in win)
        counts["price_spike"] += abs(mid2[i] - med) > 10 * max(mad, 2)
        if not same:
            run_start = i
        elif i - run_start + 1 >= 500:
            for k in range(run_start + 1, i + 1):
                stale[k] = True
        prev = ts[i - 1] if i else m.unit.start_ms
        # The open-time check only where the wall-clock one fires.
        if ts[i] - prev > 300_000 and int(schedule.open_ms_between(prev, ts[i])) > 300_000:
            gap_at.add(i)
    if n:  # the trailing silence, from the latest tick (the last of equal maxima)
        latest = max(range(n), key=lambda k: (ts[k], k))
        end = min(m.unit.end_ms, m.fetched_at_ms)
        if end - ts[latest] > 300_000 and int(schedule.open_ms_between(ts[latest], end)) > 300_000:
            gap_at.add(latest)
    counts["gap"] = len(gap_at)
    counts["stale_run"] = sum(stale)
    return {k: v for k, v in counts.items() if v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    d = dukascopy_dir()
    files = sorted((d / "bi5").glob("*/**/*_ticks.bi5"))
    payloads = [(p.read_bytes(), bi5_hour_start(p.relative_to(d))) for p in files]
    batches = []
    for payload, start in payloads:
        ticks = decode_bi5_ticks(payload, start)
        unit = Unit("dukascopy-bi5", "EURUSD", "ticks", start, start + HOUR_MS)
        meta = unit_meta(unit, len(ticks), 5, request_id="bench")
        batches.append(TickBatch(meta, ticks))
    total = sum(len(b.ticks) for b in batches)
    rules = configure({})
    sched = FX_DEFAULT_SCHEDULE

    # The vectorised and naive implementations must agree before their times mean anything.
    for b in batches:
        want = validate(b, rules, 0, sched).meta.quality
        if naive_validate(b, sched) != want:
            sys.exit(f"naive and vectorised disagree on {b.meta.unit.key}")

    rows: list[tuple[str, float, int]] = []
    candle_batches: list[CandleBatch] = []

    def add(name: str, fn: Callable[[], int], repeat: int = args.repeat) -> None:
        secs, n = best(fn, repeat)
        rows.append((name, secs, n))

    def run_validate() -> int:
        return sum(len(validate(b, rules, 0, sched).ticks) for b in batches)

    add("validate, default tick rules (10)", run_validate)
    add(
        "decode_bi5_ticks (baseline)", lambda: sum(len(decode_bi5_ticks(p, s)) for p, s in payloads)
    )

    def run_naive() -> int:
        for b in batches:
            naive_validate(b, sched)
        return total

    add("naive per-tick Python, same rules", run_naive, 1)
    for c in rules:
        if c.rule.check is None:
            continue
        params = RuleParams(c.threshold, sched)

        def one(check: Callable[..., np.ndarray] = c.rule.check, p: RuleParams = params) -> int:
            return sum(len(check(b.ticks, b.meta, p)) for b in batches)

        add(f"  rule {c.rule.name}", one)

    print(f"{len(batches)} EURUSD .bi5 hours, {total:,} ticks; best of {args.repeat}\n")
    print(f"{'method':38} {'ticks':>10} {'seconds':>9} {'Mticks/s':>9} {'vs validate':>11}")
    ref = rows[0][2] / rows[0][1]
    for name, secs, n in rows:
        rate = n / secs
        print(f"{name:38} {n:>10,} {secs:>9.4f} {rate / 1e6:>9.2f} {rate / ref:>10.2f}x")

    # Candles: every recorded .bi5 candle file, one unit each.
    candle_files = []
    for p in sorted((d / "bi5").glob("*/**/*_candles_*.bi5")):
        tf, start, end = bi5_candle_unit(p.relative_to(d))
        candle_files.append((p.read_bytes(), start))
        c = decode_bi5_candles(candle_files[-1][0], start)
        unit = Unit("dukascopy-bi5", "EURUSD", f"candles:{tf}:bid", start, end)
        meta = unit_meta(unit, len(c), 5, request_id="bench", columns=list(CANDLE_COLUMNS))
        candle_batches.append(CandleBatch(meta, c))
    n_candles = sum(len(b.candles) for b in candle_batches)
    rows.clear()

    def run_candles() -> int:
        return sum(len(validate(b, rules, 0).candles) for b in candle_batches)

    add("validate, default candle rules (8)", run_candles)
    add(
        "decode_bi5_candles (baseline)",
        lambda: sum(len(decode_bi5_candles(p, s)) for p, s in candle_files),
    )
    print(f"\n{len(candle_batches)} EURUSD .bi5 candle files, {n_candles:,} candles\n")
    print(f"{'method':38} {'candles':>10} {'seconds':>9} {'Mcand/s':>9} {'vs validate':>11}")
    ref = rows[0][2] / rows[0][1]
    for name, secs, n in rows:
        rate = n / secs
        print(f"{name:38} {n:>10,} {secs:>9.4f} {rate / 1e6:>9.2f} {rate / ref:>10.2f}x")


if __name__ == "__main__":
    main()
