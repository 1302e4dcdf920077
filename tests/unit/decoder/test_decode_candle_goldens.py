"""Dukascopy candle units through ``decode_payload`` against the golden CSVs.

The pipeline stores no flats (``tickpipe_decoder.candle_rules``): a dense ``.bi5`` candle file
must give exactly its golden's non-flat rows (the raw record decoder, which keeps every row, is
compared with the whole golden in ``test_dukascopy_bi5.py``), a sparse JSON response exactly its
golden, which is also its ``.filled.csv`` golden without the flats.

Source of truth: ``../shared/docs/dukascopy.md §2.4, §3.2, §6``.
"""

from __future__ import annotations

import calendar
import hashlib
import lzma
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from support.shared_data import GoldenCsv, format_points
from tickpipe_decoder.decode import decode_payload
from tickpipe_decoder.formats.dukascopy_bi5 import BI5_CANDLE_DTYPE
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import CandleBatch, decode_batch
from tickpipe_shared.wire.raw import RawPayloadMeta

DAY_MS = 86_400_000
TIMEFRAMES = {"min": "1m", "minute": "1m", "hour": "1h", "day": "1d"}
STEP_MS = {"1m": 60_000, "1h": 3_600_000, "1d": DAY_MS}


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp() * 1000)


def bi5_unit(rel: str) -> tuple[str, int, int]:
    """(timeframe, unit start, unit end) of ``bi5/<SYMBOL>/…/<SIDE>_candles_<tf>_1.bi5``
    (0-based month folder)."""
    parts = rel.split("/")
    tf = TIMEFRAMES[parts[-1].split("_")[2]]
    nums = [int(x) for x in parts[2:-1]]
    if tf == "1m":
        y, m0, d = nums
        return tf, ms(y, m0 + 1, d), ms(y, m0 + 1, d) + DAY_MS
    if tf == "1h":
        y, m0 = nums
        return tf, ms(y, m0 + 1, 1), ms(y, m0 + 1, 1) + calendar.monthrange(y, m0 + 1)[1] * DAY_MS
    (y,) = nums
    return tf, ms(y, 1, 1), ms(y + 1, 1, 1)


def json_unit(rel: str) -> tuple[str, str, int, int]:
    """(timeframe, side, unit start, unit end) of ``json/candles/<tf>/<CODE>/<SIDE>/Y[/M[/D]].json``
    (1-based month)."""
    parts = rel.removesuffix(".json").split("/")
    tf = TIMEFRAMES[parts[2]]
    nums = [int(x) for x in parts[5:]]
    if tf == "1m":
        y, m, d = nums
        return tf, parts[4].lower(), ms(y, m, d), ms(y, m, d) + DAY_MS
    if tf == "1h":
        y, m = nums
        return (
            tf,
            parts[4].lower(),
            ms(y, m, 1),
            ms(y, m, 1) + calendar.monthrange(y, m)[1] * DAY_MS,
        )
    (y,) = nums
    return tf, parts[4].lower(), ms(y, 1, 1), ms(y + 1, 1, 1)


def meta_for(
    payload: bytes, source: str, kind: str, start: int, end: int, *, scale: int, fetched: int
) -> RawPayloadMeta:
    return RawPayloadMeta(
        unit=Unit(source, "EURUSD", kind, start, end),
        format=f"{source}-candles",
        url="https://x.test/unit",
        sha256=hashlib.sha256(payload).hexdigest(),
        fetched_at_ms=fetched,
        price_scale=scale,
        request_id="golden",
        source_code="EURUSD" if source == "dukascopy-bi5" else "EUR-USD",
        asset_class="fx",
    )


def decode_unit(meta: RawPayloadMeta, payload: bytes) -> tuple[Candles, dict[str, int]]:
    unit = decode_payload(meta, payload, 64 * 1024)  # small parts: the split is exercised too
    parts = [decode_batch(v) for v in unit.batches]
    assert all(isinstance(p, CandleBatch) for p in parts)
    candles = [p.candles for p in parts if isinstance(p, CandleBatch)]
    assert unit.candles and unit.rows == sum(len(c) for c in candles)
    assert {p.meta.volume_unit for p in parts} == {"millions"}
    return (
        Candles(*(np.concatenate([getattr(c, n) for c in candles]) for n, _ in CANDLE_COLUMNS)),
        unit.dropped,
    )


def non_flat_rows(g: GoldenCsv) -> list[list[str]]:
    """Golden rows without the flats; checks that every zero-volume row is O = H = L = C."""
    rows = []
    for row in g.rows:
        _, o, h, low, c, v = row
        if float(v) == 0:
            assert o == h == low == c, f"zero-volume row that is not flat: {row}"
        else:
            rows.append(row)
    return rows


def assert_rows(candles: Candles, rows: list[list[str]], scale: int) -> None:
    got = [
        [str(t), *(format_points(int(p), scale) for p in ohlc)]
        for t, *ohlc in zip(
            candles.ts_ms.tolist(),
            candles.open.tolist(),
            candles.high.tolist(),
            candles.low.tolist(),
            candles.close.tolist(),
            strict=True,
        )
    ]
    want = [row[:5] for row in rows]
    assert len(got) == len(want)
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, f"{len(bad)} rows differ, first {bad[0]}: {got[bad[0]]} != {want[bad[0]]}"
    assert candles.volume.tolist() == [float(row[5]) for row in rows]


def test_bi5_candle_units_store_the_non_flat_golden_rows(
    bi5_candle_file: str,
    dukascopy_dir: Path,
    golden: Callable[[str], GoldenCsv],
    golden_index: dict[str, dict[str, str]],
) -> None:
    payload = (dukascopy_dir / bi5_candle_file).read_bytes()
    tf, start, end = bi5_unit(bi5_candle_file)
    scale = int(golden_index[bi5_candle_file]["scale"])
    meta = meta_for(
        payload, "dukascopy-bi5", f"candles:{tf}:bid", start, end, scale=scale, fetched=end
    )
    candles, dropped = decode_unit(meta, payload)
    g = golden(bi5_candle_file)
    rows = non_flat_rows(g)
    assert_rows(candles, rows, scale)
    assert dropped == ({"flat": len(g.rows) - len(rows)} if len(rows) < len(g.rows) else {})


def test_real_flats_are_dropped(dukascopy_dir: Path) -> None:
    """The EURUSD year and month files hold weekend flats; the minute files hold few or none."""
    flats = {}
    for rel in (
        "bi5/EURUSD/2019/BID_candles_day_1.bi5",
        "bi5/EURUSD/2019/00/BID_candles_hour_1.bi5",
    ):
        payload = (dukascopy_dir / rel).read_bytes()
        tf, start, end = bi5_unit(rel)
        meta = meta_for(
            payload, "dukascopy-bi5", f"candles:{tf}:bid", start, end, scale=5, fetched=end
        )
        flats[rel] = decode_unit(meta, payload)[1].get("flat", 0)
    assert all(n > 0 for n in flats.values()), flats


def test_bi5_candles_of_an_open_period_are_dropped(
    dukascopy_dir: Path, golden: Callable[[str], GoldenCsv]
) -> None:
    rel = "bi5/EURUSD/2019/01/04/BID_candles_min_1.bi5"
    payload = (dukascopy_dir / rel).read_bytes()
    _, start, end = bi5_unit(rel)
    fetched = start + 12 * 3_600_000 + 30_000  # 12:00:30: the 12:00 minute is still open
    meta = meta_for(
        payload, "dukascopy-bi5", "candles:1m:bid", start, end, scale=5, fetched=fetched
    )
    candles, dropped = decode_unit(meta, payload)
    rows = [r for r in non_flat_rows(golden(rel)) if int(r[0]) + 60_000 <= fetched]
    assert_rows(candles, rows, 5)
    assert candles.ts_ms.tolist()[-1] == start + 12 * 3_600_000 - 60_000
    assert dropped["open"] == len(non_flat_rows(golden(rel))) - len(rows) > 0


def test_json_candle_units_store_the_golden_rows(
    json_candle_file: str,
    dukascopy_dir: Path,
    golden: Callable[[str], GoldenCsv],
    golden_index: dict[str, dict[str, str]],
) -> None:
    payload = (dukascopy_dir / json_candle_file).read_bytes()
    tf, side, start, end = json_unit(json_candle_file)
    # tp-price_scale is ignored for JSON: the response's multiplier decides.
    meta = meta_for(
        payload, "dukascopy-json", f"candles:{tf}:{side}", start, end, scale=-1, fetched=end
    )
    candles, dropped = decode_unit(meta, payload)
    scale = int(golden_index[json_candle_file]["scale"])
    g = golden(json_candle_file)
    assert non_flat_rows(g) == g.rows  # a sparse response has no flats
    assert_rows(candles, g.rows, scale)
    assert dropped == {}
    filled = dukascopy_dir / "golden" / f"{json_candle_file}.filled.csv"
    if filled.exists():
        assert non_flat_rows(golden(json_candle_file + ".filled")) == g.rows


def test_dense_and_sparse_give_the_same_rows(
    dukascopy_dir: Path, golden: Callable[[str], GoldenCsv]
) -> None:
    """A dense ``.bi5`` file of the day the JSON response covers (built from the ``.filled.csv``
    golden, i.e. with flats) stores the same rows as the sparse JSON response."""
    rel = "json/candles/minute/EUR-USD/BID/2026/7/10.json"
    _, _, start, end = json_unit(rel)
    body = (dukascopy_dir / rel).read_bytes()
    sparse, _ = decode_unit(
        meta_for(body, "dukascopy-json", "candles:1m:bid", start, end, scale=-1, fetched=end),
        body,
    )
    filled = golden(rel + ".filled")
    rec = np.zeros(len(filled.rows), dtype=BI5_CANDLE_DTYPE)
    for i, (t, o, h, low, c, v) in enumerate(filled.rows):
        rec[i] = ((int(t) - start) // 1000, *(round(float(x) * 1e5) for x in (o, c, low, h)), v)
    payload = lzma.compress(rec.tobytes(), format=lzma.FORMAT_ALONE)
    dense, dropped = decode_unit(
        meta_for(payload, "dukascopy-bi5", "candles:1m:bid", start, end, scale=5, fetched=end),
        payload,
    )
    assert dropped == {"flat": len(filled.rows) - len(sparse)} and dropped["flat"] > 0
    for name in ("ts_ms", "open", "high", "low", "close"):
        np.testing.assert_array_equal(getattr(dense, name), getattr(sparse, name))
    # .bi5 volumes are float32: equal to the JSON volumes at float32 precision.
    np.testing.assert_array_equal(dense.volume.astype(np.float32), sparse.volume.astype(np.float32))
