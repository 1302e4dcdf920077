"""Decode throughput of the Dukascopy decoders against simple baselines.

Run: ``uv run python bench/bench_decode.py [--repeat N]``. Needs ``../shared/data/dukascopy``
beside the repo (or ``TICKPIPE_SHARED_DIR``). For ``.bi5`` it decodes all 49 tick files and
compares with (a) ``lzma.decompress`` alone, the floor any decoder pays, and (b) a naive decoder
that unpacks each record with ``struct``. For JSON it decodes the recorded hour and compares with
``json.loads`` alone and a per-tick Python reconstruction. Candles: the 9 ``.bi5`` candle files
and the recorded JSON minute-candle day, by the format decoder alone and by ``decode_payload``
(candle rules and batch encoding included), against the same floors. Each figure is the best of
N runs; the last column compares with the first line of its group.

Two lines keep the floors honest. The ``.bi5`` decoder remembers volume conversions across files
(:class:`~tickpipe_decoder.formats.volumes._ShortestCache`, as a running decoder does); "cold
cache" empties it before every file. The JSON decoder parses the number arrays from the bytes
itself (:mod:`~tickpipe_decoder.formats.number_arrays`) and so can beat ``json.loads``;
"json.loads path" turns that fast path off (what every body it declines costs).
"""

from __future__ import annotations

import argparse
import json
import lzma
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from common import best, dukascopy_dir
from support.shared_data import bi5_candle_unit, bi5_hour_start
from tickpipe_decoder.decode import decode_payload
from tickpipe_decoder.formats import dukascopy_json, volumes
from tickpipe_decoder.formats.dukascopy_bi5 import (
    decode_bi5_candle_records,
    decode_bi5_candles,
    decode_bi5_tick_records,
    decode_bi5_ticks,
)
from tickpipe_decoder.formats.dukascopy_json import decode_json_candles, decode_json_ticks
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.raw import RawPayloadMeta

REPO = Path(__file__).resolve().parents[1]
TICK = struct.Struct(">IIIff")
ALONE = lzma.FORMAT_ALONE


def candle_meta(fmt: str, kind: str, start: int, end: int) -> RawPayloadMeta:
    return RawPayloadMeta(
        unit=Unit(fmt.rsplit("-", 1)[0], "EURUSD", kind, start, end),
        format=fmt,
        url="bench",
        sha256="0" * 64,
        fetched_at_ms=end,
        price_scale=5,
        request_id="bench",
    )


def naive_bi5(payload: bytes, start: int) -> list[tuple[int, int, int, float, float]]:
    raw = lzma.decompress(payload, format=lzma.FORMAT_ALONE) if payload else b""
    return [(start + ms, ask, bid, av, bv) for ms, ask, bid, av, bv in TICK.iter_unpack(raw)]


def naive_json(body: bytes) -> list[tuple[int, int, int, float, float]]:
    obj = json.loads(body)
    m = obj["multiplier"]
    t, a, b = obj["timestamp"], round(obj["ask"] / m), round(obj["bid"] / m)
    rows = []
    for dt, da, db, av, bv in zip(obj["times"], obj["asks"], obj["bids"], obj["askVolumes"],
                                  obj["bidVolumes"], strict=True):  # fmt: skip
        t, a, b = t + dt, a + da, b + db
        rows.append((t, a, b, av / 1e6, bv / 1e6))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    d = dukascopy_dir()
    files = sorted(p for p in (d / "bi5").glob("*/**/*_ticks.bi5"))
    payloads = [(p.read_bytes(), bi5_hour_start(p.relative_to(d))) for p in files]
    raws = [(lzma.decompress(b, format=lzma.FORMAT_ALONE), s) for b, s in payloads]
    body = (d / "json/ticks/EUR-USD/2026/7/13/12.json").read_bytes()
    json_reps = 50
    candle_files = sorted(p for p in (d / "bi5").glob("*/**/*_candles_*.bi5"))
    bi5_candles = []
    for p in candle_files:
        tf, start, end = bi5_candle_unit(p.relative_to(d))
        meta = candle_meta("dukascopy-bi5-candles", f"candles:{tf}:bid", start, end)
        bi5_candles.append((p.read_bytes(), meta))
    candle_raws = [(lzma.decompress(b, format=ALONE), m.unit.start_ms) for b, m in bi5_candles]
    day = datetime(2026, 7, 10, tzinfo=UTC).timestamp() * 1000
    candle_body = (d / "json/candles/minute/EUR-USD/BID/2026/7/10.json").read_bytes()
    day_meta = candle_meta(
        "dukascopy-json-candles", "candles:1m:bid", int(day), int(day) + 86_400_000
    )

    rows: list[tuple[str, str, float, int]] = []

    def add(group: str, name: str, fn: Callable[[], int], repeat: int = args.repeat) -> None:
        secs, n = best(fn, repeat)
        rows.append((group, name, secs, n))

    add(".bi5", "decode_bi5_ticks (lzma + numpy)",
        lambda: sum(len(decode_bi5_ticks(b, s)) for b, s in payloads))  # fmt: skip

    def bi5_cold() -> int:
        n = 0
        for b, s in payloads:
            volumes._CACHE = volumes._ShortestCache()
            n += len(decode_bi5_ticks(b, s))
        return n

    add(".bi5", "decode_bi5_ticks, cold cache", bi5_cold)
    add(".bi5", "lzma.decompress only (floor)",
        lambda: sum(len(lzma.decompress(b, format=ALONE)) for b, _ in payloads) // 20)  # fmt: skip
    add(".bi5", "numpy records only (no lzma)",
        lambda: sum(len(decode_bi5_tick_records(r, s)) for r, s in raws))  # fmt: skip
    add(".bi5", "naive lzma + struct.iter_unpack",
        lambda: sum(len(naive_bi5(b, s)) for b, s in payloads))  # fmt: skip
    add("json", f"decode_json_ticks (x{json_reps})",
        lambda: sum(len(decode_json_ticks(body)[0]) for _ in range(json_reps)))  # fmt: skip

    def json_slow() -> int:
        fast = dukascopy_json.split_columns
        dukascopy_json.split_columns = lambda *a: None  # type: ignore[assignment]
        try:
            return sum(len(decode_json_ticks(body)[0]) for _ in range(json_reps))
        finally:
            dukascopy_json.split_columns = fast

    add("json", f"decode_json_ticks, json.loads path (x{json_reps})", json_slow)
    add("json", f"json.loads only (x{json_reps}, floor)",
        lambda: sum(len(json.loads(body)["times"]) for _ in range(json_reps)))  # fmt: skip
    add("json", f"naive per-tick Python (x{json_reps})",
        lambda: sum(len(naive_json(body)) for _ in range(json_reps)))  # fmt: skip

    def bi5_c_decoder() -> int:
        return sum(len(decode_bi5_candles(b, m.unit.start_ms)) for b, m in bi5_candles)

    def bi5_c_payload() -> int:
        return sum(decode_payload(m, b, 900_000).rows for b, m in bi5_candles)

    def bi5_c_lzma() -> int:
        return sum(len(lzma.decompress(b, format=ALONE)) for b, _ in bi5_candles) // 24

    def bi5_c_records() -> int:
        return sum(len(decode_bi5_candle_records(r, s)) for r, s in candle_raws)

    def json_c_decoder() -> int:
        return sum(len(decode_json_candles(candle_body)[0]) for _ in range(json_reps))

    def json_c_payload() -> int:
        return sum(decode_payload(day_meta, candle_body, 900_000).rows for _ in range(json_reps))

    def json_c_loads() -> int:
        return sum(len(json.loads(candle_body)["times"]) for _ in range(json_reps))

    add("bi5-c", "decode_bi5_candles (lzma + numpy)", bi5_c_decoder)
    add("bi5-c", "decode_payload (+ rules, encode)", bi5_c_payload)
    add("bi5-c", "lzma.decompress only (floor)", bi5_c_lzma)
    add("bi5-c", "numpy records only (no lzma)", bi5_c_records)
    add("json-c", f"decode_json_candles (x{json_reps})", json_c_decoder)
    add("json-c", f"decode_payload (x{json_reps})", json_c_payload)
    add("json-c", f"json.loads only (x{json_reps}, floor)", json_c_loads)

    print(f"{len(payloads)} .bi5 tick files ({sum(len(b) for b, _ in payloads):,} bytes), "
          f"1 JSON hour ({len(body):,} bytes), {len(bi5_candles)} .bi5 candle files, "
          f"1 JSON candle day ({len(candle_body):,} bytes); best of {args.repeat}\n")  # fmt: skip
    print(f"{'':6} {'method':44} {'rows':>10} {'seconds':>9} {'Mrows/s':>9} {'vs first':>10}")
    ref: dict[str, float] = {}
    for group, name, secs, n in rows:
        rate = n / secs
        ref.setdefault(group, rate)
        print(f"{group:6} {name:44} {n:>10,} {secs:>9.4f} {rate / 1e6:>9.2f} "
              f"{rate / ref[group]:>9.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
