"""The default rules on recorded data: no false positives.

The 49 recorded EURUSD ``.bi5`` tick hours, and every recorded candle payload: Dukascopy ``.bi5``
and JSON candles (through the decoder), Polygon aggregates and Deriv candles (parsed here; their
prices taken to 6 decimals). Skipped without ``../shared/data``. Prints the hits per rule
(``pytest -s``).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from support.batches import unit_meta
from support.shared_data import bi5_candle_unit, bi5_hour_start
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_candles, decode_bi5_ticks
from tickpipe_decoder.formats.dukascopy_json import decode_json_candles
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.instruments.schedule import (
    FX_DEFAULT_SCHEDULE,
    HOUR_MS,
    TradingSchedule,
)
from tickpipe_shared.units import Unit, plan_units
from tickpipe_shared.wire.batch import CandleBatch, TickBatch
from tickpipe_validator.rules import RULES, TICK_RULES
from tickpipe_validator.validate import ConfiguredRule, configure, validate


@pytest.fixture(scope="module")
def hours(dukascopy_dir: Path) -> list[TickBatch]:
    files = sorted((dukascopy_dir / "bi5").glob("*/**/*_ticks.bi5"))
    out = []
    for p in files:
        start = bi5_hour_start(p.relative_to(dukascopy_dir))
        ticks: Ticks = decode_bi5_ticks(p.read_bytes(), start)
        unit = Unit("dukascopy-bi5", "EURUSD", "ticks", start, start + HOUR_MS)
        meta = unit_meta(unit, len(ticks), 5, request_id="r")
        out.append(TickBatch(meta, ticks))
    return out


def every_rule_flags() -> list[ConfiguredRule]:
    """Every rule flags (nothing dropped or rejected) so that each one's count is complete."""
    return configure({r.name: "flag" if "flag" in r.allowed else "drop" for r in RULES})


def hits(batches: list[TickBatch], schedule: TradingSchedule | None) -> Counter[str]:
    rules = every_rule_flags()
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
        for rule in TICK_RULES:
            print(f"  {rule.name:20} {got[rule.name]:6}  {100 * got[rule.name] / n:.4f} %")
        for exact in ("inside_unit", "non_decreasing", "positive_price", "crossed_quote",
                      "non_negative_volume", "duplicate", "stale_run", "gap"):  # fmt: skip
            assert got[exact] == 0, (exact, got)
        assert got["spread_outlier"] < n * 0.0001
        assert got["price_spike"] < n * 0.001
    # The actual pipeline configuration validates every hour without rejecting any.
    for b in hours:
        validate(b, configure({}), 0, FX_DEFAULT_SCHEDULE)


# --- candles -------------------------------------------------------------------------------------


def candle_batch(
    source: str,
    instrument: str,
    kind: str,
    candles: Candles,
    scale: int,
    volume_unit: str,
    asset_class: str = "",
) -> CandleBatch:
    """The batch of the one unit that holds every candle of a recording."""
    [unit] = plan_units(
        source, instrument, kind, int(candles.ts_ms.min()), int(candles.ts_ms.max()) + 1
    )
    meta = unit_meta(
        unit,
        len(candles),
        scale,
        request_id="r",
        volume_unit=volume_unit,
        columns=list(CANDLE_COLUMNS),
        asset_class=asset_class,
    )
    return CandleBatch(meta, candles)


def dukascopy_candles(dukascopy_dir: Path) -> list[CandleBatch]:
    out = []
    for p in sorted((dukascopy_dir / "bi5").glob("*/**/*_candles_*.bi5")):
        tf, start, _ = bi5_candle_unit(p.relative_to(dukascopy_dir))
        c = decode_bi5_candles(p.read_bytes(), start)
        out.append(candle_batch("dukascopy-bi5", "EURUSD", f"candles:{tf}:bid", c, 5, "millions"))
    for p in sorted((dukascopy_dir / "json" / "candles").glob("**/*.json")):
        c, scale = decode_json_candles(p.read_bytes())
        if len(c):
            kind = "candles:1m:bid"
            out.append(candle_batch("dukascopy-json", "EURUSD", kind, c, scale, "millions"))
    return out


def points(values: list[float | str], scale: int = 6) -> NDArray[np.int64]:
    return np.array([round(float(x) * 10**scale) for x in values], dtype=np.int64)


POLYGON_CLASSES = {"X": "crypto", "C": "fx", "I": "index"}


def polygon_candles(polygon_dir: Path) -> list[CandleBatch]:
    out = []
    for p in sorted(polygon_dir.glob("aggs_*.json")):
        bars = sorted(json.loads(p.read_text()).get("results") or [], key=lambda r: r["t"])
        if not bars:
            continue
        ticker = p.name.split("_")[1:3]
        asset = POLYGON_CLASSES.get(ticker[0], "stock") if len(ticker[0]) == 1 else "stock"
        instrument = ticker[1] if len(ticker[0]) == 1 else ticker[0]
        has_volume = all("v" in r for r in bars)
        c = Candles(
            np.array([r["t"] for r in bars], dtype=np.int64),
            *(points([r[k] for r in bars]) for k in "ohlc"),
            np.array([r["v"] if has_volume else np.nan for r in bars], dtype=np.float64),
        )
        tf = "1m" if "_minute_" in p.name else "1d"
        unit = "units" if has_volume else "none"
        out.append(candle_batch("polygon", instrument, f"candles:{tf}:trade", c, 6, unit, asset))
    return out


def deriv_candles(deriv_dir: Path) -> list[CandleBatch]:
    out = []
    for p in sorted(deriv_dir.glob("ticks_history_*_candles60_*.json")):
        rows = json.loads(p.read_text())["candles"]
        n = len(rows)
        c = Candles(
            np.array([int(r["epoch"]) * 1000 for r in rows], dtype=np.int64),
            *(points([r[k] for r in rows]) for k in ("open", "high", "low", "close")),
            np.full(n, np.nan),
        )
        symbol = p.name.split("_")[2] + "_" + p.name.split("_")[3]
        out.append(candle_batch("deriv", symbol, "candles:1m:mid", c, 6, "none", "synthetic"))
    return out


def test_default_rules_on_recorded_candles(shared_dir: Path) -> None:
    data = shared_dir / "data"
    batches = [
        *dukascopy_candles(data / "dukascopy"),
        *polygon_candles(data / "polygon"),
        *deriv_candles(data / "deriv"),
    ]
    sources = Counter(b.meta.unit.source for b in batches)
    assert sources == {"dukascopy-bi5": 9, "dukascopy-json": 1, "polygon": 7, "deriv": 3}
    n = sum(len(b.candles) for b in batches)
    rules = every_rule_flags()
    got: Counter[str] = Counter()
    for b in batches:
        got.update(validate(b, rules, 0).meta.quality)
    print(f"\n{n:,} recorded candles in {len(batches)} units: {dict(got) or 'no hits'}")
    assert got == Counter()
    for b in batches:
        validate(b, configure({}), 0)  # the pipeline's configuration rejects none
