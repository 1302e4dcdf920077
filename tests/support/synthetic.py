"""Self-made Dukascopy payloads for instruments and years the recorded sample lacks.

Each generator returns the payload bytes and the rows the database must hold afterwards, in the
golden-CSV form of :mod:`support.golden_db` (prices as exact decimal strings at the scale).
"""

from __future__ import annotations

import json
import lzma
from datetime import datetime
from decimal import Decimal

import numpy as np

from support.golden_db import Row

BI5_TICK = np.dtype(
    [("ms", ">u4"), ("ask", ">u4"), ("bid", ">u4"), ("ask_vol", ">f4"), ("bid_vol", ">f4")]
)


def _price(points: int, scale: int) -> str:
    return f"{Decimal(points).scaleb(-scale):.{scale}f}"


def random_ticks(seed: int, n: int, first_bid: int, spread: int) -> tuple[np.ndarray, ...]:
    """``n`` increasing ms offsets within an hour and bid/ask points around ``first_bid``."""
    rng = np.random.default_rng(seed)
    ms = np.sort(rng.choice(3_600_000, size=n, replace=False)).astype(np.int64)
    bid = first_bid + np.cumsum(rng.integers(-3, 4, size=n))
    ask = bid + rng.integers(0, spread + 1, size=n)
    return ms, bid.astype(np.int64), ask.astype(np.int64)


def bi5_hour(
    hour: datetime, scale: int, seed: int, n: int, first_bid: int
) -> tuple[bytes, list[Row]]:
    """A ``.bi5`` tick file (LZMA alone, 20-byte big-endian records) and its expected rows.

    Volumes are float32 values that are short decimals (0.5, 1.25 …), as Dukascopy's are.
    """
    ms, bid, ask = random_ticks(seed, n, first_bid, spread=5 * 10 ** max(0, scale - 3))
    vols = np.array([0.5, 1.0, 1.25, 2.06, 0.01], dtype=np.float32)
    rec = np.zeros(n, dtype=BI5_TICK)
    rec["ms"], rec["ask"], rec["bid"] = ms, ask, bid
    rec["ask_vol"], rec["bid_vol"] = vols[np.arange(n) % 5], vols[(np.arange(n) + 2) % 5]
    payload = lzma.compress(rec.tobytes(), format=lzma.FORMAT_ALONE)
    start = int(hour.timestamp() * 1000)
    rows = [
        (
            start + int(m),
            _price(int(a), scale),
            _price(int(b), scale),
            float(str(np.float32(av))),
            float(str(np.float32(bv))),
        )
        for m, a, b, av, bv in zip(ms, ask, bid, rec["ask_vol"], rec["bid_vol"], strict=True)
    ]
    return payload, rows


def json_hour(
    hour: datetime, scale: int, seed: int, n: int, first_bid: int
) -> tuple[bytes, list[Row]]:
    """A JSON API tick response (delta encoded, volumes in units) and its expected rows."""
    ms, bid, ask = random_ticks(seed, n, first_bid, spread=3)
    start = int(hour.timestamp() * 1000)
    units = np.array([1_800_000.0, 900_000.0, 14_490_000.0, 250_000.0], dtype=np.float64)
    ask_units, bid_units = units[np.arange(n) % 4], units[(np.arange(n) + 1) % 4]
    body = {
        "timestamp": start,
        "multiplier": float(f"1e-{scale}"),
        "ask": float(_price(int(ask[0]), scale)),
        "bid": float(_price(int(bid[0]), scale)),
        "times": np.diff(ms, prepend=0).tolist(),
        "asks": np.diff(ask, prepend=ask[0]).tolist(),
        "bids": np.diff(bid, prepend=bid[0]).tolist(),
        "askVolumes": ask_units.tolist(),
        "bidVolumes": bid_units.tolist(),
    }
    rows = [
        (
            start + int(m),
            _price(int(a), scale),
            _price(int(b), scale),
            float(Decimal(repr(float(au))) / 1_000_000),
            float(Decimal(repr(float(bu))) / 1_000_000),
        )
        for m, a, b, au, bu in zip(ms, ask, bid, ask_units, bid_units, strict=True)
    ]
    return json.dumps(body).encode(), rows


def instruments_response(entries: list[tuple[str, float, int]]) -> bytes:
    """A minimal JSON API ``instruments`` response: (code, pipValue, priceScale) per entry."""
    return json.dumps(
        {
            "instruments": [
                {
                    "id": i,
                    "name": code.replace("-", "/"),
                    "code": code,
                    "description": code,
                    "pipValue": pip,
                    "priceScale": scale,
                }
                for i, (code, pip, scale) in enumerate(entries)
            ]
        }
    ).encode()
