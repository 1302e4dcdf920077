"""Synthetic tick batches for the OHLCV tests and a plain-Python reference of their candles."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
from tickpipe_shared.columns import Ticks
from tickpipe_shared.db.ohlcv import BUCKET_ORIGIN, CANDLE_COLUMNS, parse_timeframe
from tickpipe_shared.units import HOUR_MS, Unit
from tickpipe_shared.wire.batch import TickBatch

from support.batches import unit_meta

#: 2021-03-01T22:00Z: the synthetic hours cross midnight, so every timeframe has several buckets.
T0 = int(datetime(2021, 3, 1, 22, tzinfo=UTC).timestamp() * 1000)

Candle = dict[str, Any]
TickRow = tuple[int, float, float, float, float]


def hour_batch(
    instrument: str,
    start_ms: int,
    n: int,
    *,
    seed: int,
    scale: int = 5,
    first_point: int = 112_345,
    sha: str = "a" * 64,
) -> TickBatch:
    """One single-part hour unit of ``n`` ticks at distinct random ms (no ties: the first and
    last tick of every bucket are well defined), random-walk bid, ask 0–5 points above, volumes
    that are short decimals."""
    rng = np.random.default_rng(seed)
    ms = start_ms + np.sort(rng.choice(HOUR_MS, size=n, replace=False)).astype(np.int64)
    bid = (first_point + np.cumsum(rng.integers(-4, 5, size=n))).astype(np.int64)
    ask = bid + rng.integers(0, 6, size=n).astype(np.int64)
    vols = np.array([0.5, 1.0, 1.25, 2.06, 0.01, 3.3])
    ticks = Ticks(ms, bid, ask, vols[rng.integers(0, 6, size=n)], vols[rng.integers(0, 6, size=n)])
    unit = Unit("dukascopy-bi5", instrument, "ticks", start_ms, start_ms + HOUR_MS)
    meta = unit_meta(unit, n, scale, request_id="ohlcv-test", sha=sha, fetched_at_ms=start_ms)
    return TickBatch(meta, ticks)


def initial_batches() -> list[TickBatch]:
    """Two instruments, hours 22:00–01:00 around midnight, a few hundred ticks in all."""
    out = []
    for h in range(3):
        out.append(hour_batch("EURUSD", T0 + h * HOUR_MS, 90, seed=10 + h))
        out.append(
            hour_batch("USDJPY", T0 + h * HOUR_MS, 40, seed=20 + h, scale=3, first_point=110_123)
        )
    return out


def stored_ticks(batches: Iterable[TickBatch]) -> dict[str, list[TickRow]]:
    """What the writer stores for ``batches`` applied in order (a part-0 batch replaces its
    unit): per instrument, ``(ts_ms, bid, ask, bid_volume, ask_volume)`` by time."""
    units: dict[tuple[str, int], TickBatch] = {}
    for b in batches:
        units[(b.meta.unit.instrument, b.meta.unit.start_ms)] = b
    out: dict[str, list[TickRow]] = {}
    for (instrument, _), b in sorted(units.items()):
        t, s = b.ticks, b.meta.price_scale
        rows = out.setdefault(instrument, [])
        for i in range(len(t)):
            rows.append(
                (
                    int(t.ts_ms[i]),
                    float(f"{int(t.bid[i])}e-{s}"),
                    float(f"{int(t.ask[i])}e-{s}"),
                    float(t.bid_volume[i]),
                    float(t.ask_volume[i]),
                )
            )
    for rows in out.values():
        rows.sort()
    return out


def _mid(bid: float, ask: float) -> float:
    """The double nearest the exact decimal (bid + ask) / 2 — what ``mid_*_points / 10^scale``
    reads back as (``repr`` of a price at most 15 digits long is its exact decimal)."""
    return float((Decimal(repr(bid)) + Decimal(repr(ask))) / 2)


def reference_candles(
    ticks: Mapping[str, Sequence[TickRow]],
    instrument: str,
    timeframe: str,
) -> list[Candle]:
    """The candles of ``instrument`` at any fixed ``timeframe`` computed in Python, keyed like
    :data:`CANDLE_COLUMNS` (buckets aligned to :data:`BUCKET_ORIGIN`, a Monday)."""
    width = parse_timeframe(timeframe).duration_ms or 0
    origin = int(datetime.fromisoformat(BUCKET_ORIGIN).timestamp() * 1000)
    groups: dict[int, list[TickRow]] = {}
    for row in ticks.get(instrument, []):
        groups.setdefault(row[0] - (row[0] - origin) % width, []).append(row)
    out = []
    for bucket, rows in sorted(groups.items()):
        c: Candle = {"instrument": instrument, "bucket": datetime.fromtimestamp(bucket / 1000, UTC)}
        for name, values in (
            ("bid", [r[1] for r in rows]),
            ("ask", [r[2] for r in rows]),
            ("mid", [_mid(r[1], r[2]) for r in rows]),
        ):
            c |= {
                f"{name}_open": values[0],
                f"{name}_high": max(values),
                f"{name}_low": min(values),
                f"{name}_close": values[-1],
            }
        c["tick_count"] = len(rows)
        c["bid_volume"] = math.fsum(r[3] for r in rows)
        c["ask_volume"] = math.fsum(r[4] for r in rows)
        out.append(c)
    return out


def assert_candles_equal(actual: Sequence[Mapping[str, Any]], expected: Sequence[Candle]) -> None:
    """Equal candle by candle: prices and counts exactly, volume sums to 1e-9 relative (the
    summation order differs between a flat sum and sums of sums)."""
    assert [a["bucket"] for a in actual] == [e["bucket"] for e in expected]
    for a, e in zip(actual, expected, strict=True):
        for col in CANDLE_COLUMNS:
            if col.endswith("_volume"):
                ok = math.isclose(a[col], e[col], rel_tol=1e-9)
                assert ok, (e["bucket"], col, a[col], e[col])
            else:
                assert a[col] == e[col], (e["bucket"], col, a[col], e[col])
