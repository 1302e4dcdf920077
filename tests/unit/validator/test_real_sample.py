"""The default rules on the 49 recorded EURUSD ``.bi5`` tick hours: no false positives.

Skipped without ``../shared/data/dukascopy``. Prints the hits per rule (``pytest -s``).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_ticks
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import (
    FX_DEFAULT_SCHEDULE,
    HOUR_MS,
    TradingSchedule,
)
from tickpipe_shared.wire.batch import BatchMeta, TickBatch
from tickpipe_validator.rules import RULES
from tickpipe_validator.validate import configure, validate


def hour_start(rel: Path) -> int:
    y, m0, d = (int(x) for x in rel.parts[-4:-1])
    return int(datetime(y, m0 + 1, d, int(rel.name[:2]), tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def hours(dukascopy_dir: Path) -> list[TickBatch]:
    files = sorted((dukascopy_dir / "bi5").glob("*/**/*_ticks.bi5"))
    out = []
    for p in files:
        start = hour_start(p.relative_to(dukascopy_dir))
        ticks: Ticks = decode_bi5_ticks(p.read_bytes(), start)
        meta = BatchMeta(
            "dukascopy-bi5", "EURUSD", "ticks", start, start + HOUR_MS, 0, 1, len(ticks), 5,
            "00" * 32, "r", start, start,
        )  # fmt: skip
        out.append(TickBatch(meta, ticks))
    return out


def hits(batches: list[TickBatch], schedule: TradingSchedule | None) -> Counter[str]:
    # Every rule flags (nothing dropped or rejected) so that each one's count is complete.
    rules = configure({r.name: "flag" if "flag" in r.allowed else "drop" for r in RULES})
    total: Counter[str] = Counter()
    for b in batches:
        total.update(validate(b, rules, 0, schedule).meta.quality)
    return total


def test_default_rules_on_real_hours(hours: list[TickBatch], dukascopy_dir: Path) -> None:
    n = sum(len(b.ticks) for b in hours)
    assert len(hours) == 49 and n == 267_970
    detail = json.loads((dukascopy_dir / "json/instruments/EUR-USD.json").read_text())
    for label, schedule in [
        ("FX default schedule", FX_DEFAULT_SCHEDULE),
        ("EUR-USD detail schedule", TradingSchedule.from_instrument_detail(detail)),
    ]:
        got = hits(hours, schedule)
        print(f"\n{n:,} ticks in {len(hours)} hours, {label}:")
        for rule in RULES:
            print(f"  {rule.name:20} {got[rule.name]:6}  {100 * got[rule.name] / n:.4f} %")
        for exact in ("inside_unit", "non_decreasing", "positive_price", "crossed_quote",
                      "non_negative_volume", "duplicate", "stale_run", "gap"):  # fmt: skip
            assert got[exact] == 0, (exact, got)
        assert got["spread_outlier"] < n * 0.0001
        assert got["price_spike"] < n * 0.001
    # The actual pipeline configuration validates every hour without rejecting any.
    for b in hours:
        validate(b, configure({}), 0, FX_DEFAULT_SCHEDULE)
