"""Legacy ``.bi5`` decoder: every recorded payload against its golden CSV, plus self-made cases.

Source of truth: ``../shared/docs/dukascopy.md §2`` and ``../shared/data/dukascopy/golden``.
"""

from __future__ import annotations

import calendar
import lzma
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.shared_data import GoldenCsv, format_points
from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats import dukascopy_bi5
from tickpipe_decoder.formats.dukascopy_bi5 import (
    BI5_CANDLE_DTYPE,
    BI5_TICK_DTYPE,
    decode_bi5_candles,
    decode_bi5_ticks,
    decompress_bi5,
)

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def period_of(rel: str) -> tuple[int, int]:
    """(start ms, length ms) of a ``bi5/<SYMBOL>/...`` file from its path (month is 0-based)."""
    parts = rel.split("/")
    name = parts[-1]
    if parts[1] == "_fixtures":
        return 0, HOUR_MS
    nums = [int(x) for x in parts[2:-1]]
    if name.endswith("_ticks.bi5"):
        y, m0, d = nums
        return _ms(y, m0 + 1, d, int(name[:2])), HOUR_MS
    if "_candles_min_" in name:
        y, m0, d = nums
        return _ms(y, m0 + 1, d), DAY_MS
    if "_candles_hour_" in name:
        y, m0 = nums
        return _ms(y, m0 + 1, 1), calendar.monthrange(y, m0 + 1)[1] * DAY_MS
    if "_candles_day_" in name:
        (y,) = nums
        return _ms(y, 1, 1), (366 if calendar.isleap(y) else 365) * DAY_MS
    raise AssertionError(f"unknown .bi5 file kind: {rel}")


def assert_column(name: str, got: Sequence[Any], want: Sequence[Any]) -> None:
    assert len(got) == len(want), f"{name}: {len(got)} rows, golden has {len(want)}"
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, (
        f"{name}: {len(bad)} mismatches, first at row {bad[0]}: {got[bad[0]]!r} != {want[bad[0]]!r}"
    )


def assert_volumes(name: str, got: np.ndarray, want_text: list[str]) -> None:
    """Exact float64 equality with the golden decimal (the float64 nearest to its text)."""
    assert_column(name, got.tolist(), [float(t) for t in want_text])


def scale_of(golden_index: dict[str, dict[str, str]], rel: str) -> int:
    return int(golden_index[rel]["scale"] or 0)


# --- every recorded payload vs its golden -------------------------------------------------


def test_bi5_ticks_match_golden(
    bi5_tick_file: str,
    dukascopy_dir: Path,
    golden: Callable[[str], GoldenCsv],
    golden_index: dict[str, dict[str, str]],
) -> None:
    start, _ = period_of(bi5_tick_file)
    ticks = decode_bi5_ticks((dukascopy_dir / bi5_tick_file).read_bytes(), start)
    g = golden(bi5_tick_file)
    if golden_index[bi5_tick_file]["kind"] == "empty":  # the 0-byte fixture: header-only golden
        assert len(ticks) == 0 and g.rows == []
        assert len(decode_bi5_candles((dukascopy_dir / bi5_tick_file).read_bytes(), 0)) == 0
        return
    assert g.header == ["timestamp_ms", "ask", "bid", "ask_volume", "bid_volume"]
    scale = scale_of(golden_index, bi5_tick_file)
    assert len(ticks) == int(golden_index[bi5_tick_file]["rows"])
    assert_column("timestamp_ms", [str(t) for t in ticks.ts_ms.tolist()], g.column("timestamp_ms"))
    assert_column("ask", [format_points(p, scale) for p in ticks.ask.tolist()], g.column("ask"))
    assert_column("bid", [format_points(p, scale) for p in ticks.bid.tolist()], g.column("bid"))
    assert_volumes("ask_volume", ticks.ask_volume, g.column("ask_volume"))
    assert_volumes("bid_volume", ticks.bid_volume, g.column("bid_volume"))


def test_bi5_candles_match_golden(
    bi5_candle_file: str,
    dukascopy_dir: Path,
    golden: Callable[[str], GoldenCsv],
    golden_index: dict[str, dict[str, str]],
) -> None:
    start, length = period_of(bi5_candle_file)
    candles = decode_bi5_candles(
        (dukascopy_dir / bi5_candle_file).read_bytes(), start, period_ms=length
    )
    g = golden(bi5_candle_file)
    assert g.header == ["timestamp_ms", "open", "high", "low", "close", "volume"]
    scale = scale_of(golden_index, bi5_candle_file)
    assert (
        len(candles)
        == int(golden_index[bi5_candle_file]["rows"])
        == length
        // {
            "m1": 60_000,
            "h1": HOUR_MS,
            "d1": DAY_MS,
        }[golden_index[bi5_candle_file]["kind"]]
    )
    assert_column(
        "timestamp_ms", [str(t) for t in candles.ts_ms.tolist()], g.column("timestamp_ms")
    )
    for col in ("open", "high", "low", "close"):
        points = getattr(candles, col).tolist()
        assert_column(col, [format_points(p, scale) for p in points], g.column(col))
    assert_volumes("volume", candles.volume, g.column("volume"))


def test_every_bi5_file_is_covered(
    dukascopy_dir: Path, golden_index: dict[str, dict[str, str]]
) -> None:
    files = sorted(
        p.relative_to(dukascopy_dir).as_posix() for p in dukascopy_dir.glob("bi5/**/*.bi5")
    )
    assert files == sorted(k for k in golden_index if k.startswith("bi5/"))
    ticks = [f for f in files if "_candles_" not in f]
    assert len(ticks) == 49 + 1  # plus the 0-byte fixture
    total = sum(len(decode_bi5_ticks((dukascopy_dir / f).read_bytes(), 0)) for f in ticks)
    assert total == 267_970


def test_real_volumes_need_shortest_conversion(dukascopy_dir: Path) -> None:
    """Plain float32 → float64 widening would not match the goldens (2.0599999… vs 2.06)."""
    raw = decompress_bi5((dukascopy_dir / "bi5/EURUSD/2019/01/04/00h_ticks.bi5").read_bytes())
    rec = np.frombuffer(raw, dtype=BI5_TICK_DTYPE)
    ticks = decode_bi5_ticks(
        (dukascopy_dir / "bi5/EURUSD/2019/01/04/00h_ticks.bi5").read_bytes(), 0
    )
    assert rec["bid_vol"][0].astype(np.float64) == pytest.approx(2.06, rel=1e-7)
    assert rec["bid_vol"][0].astype(np.float64) != 2.06
    assert ticks.bid_volume[0] == 2.06


def test_truncated_real_payload(dukascopy_dir: Path) -> None:
    payload = (dukascopy_dir / "bi5/EURUSD/2019/01/04/00h_ticks.bi5").read_bytes()
    with pytest.raises(DecodeError, match=r"^lzma: (truncated stream|corrupt stream)"):
        decode_bi5_ticks(payload[: len(payload) // 2], 0)


def test_decompress_in_thread_pool(dukascopy_dir: Path) -> None:
    files = sorted(dukascopy_dir.glob("bi5/EURUSD/2019/01/04/*_ticks.bi5"))
    payloads = [f.read_bytes() for f in files]
    with ThreadPoolExecutor(4) as pool:
        raws = list(pool.map(decompress_bi5, payloads))
    assert raws == [lzma.decompress(p, format=lzma.FORMAT_ALONE) for p in payloads]


# --- self-made payloads (no ../shared needed) ---------------------------------------------


def pack_ticks(records: list[tuple[int, int, int, float, float]]) -> bytes:
    return np.array(records, dtype=BI5_TICK_DTYPE).tobytes()


def pack_candles(records: list[tuple[int, int, int, int, int, float]]) -> bytes:
    """Records in on-disk order: sec, open, close, low, high, volume."""
    return np.array(records, dtype=BI5_CANDLE_DTYPE).tobytes()


def compress(raw: bytes) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_ALONE)


HOUR = _ms(2019, 2, 4, 0)
TICKS = [
    (994, 114545, 114543, 1.0, 2.06),
    (1271, 114546, 114544, 1.0, 1.0),
    (3_599_999, 2**32 - 1, 0, 0.1, 123456.79),
]


def test_roundtrip_self_made_ticks() -> None:
    ticks = decode_bi5_ticks(compress(pack_ticks(TICKS)), HOUR)
    assert ticks.ts_ms.tolist() == [HOUR + r[0] for r in TICKS]
    assert ticks.ask.tolist() == [r[1] for r in TICKS]
    assert ticks.bid.tolist() == [r[2] for r in TICKS]
    assert ticks.ask_volume.tolist() == [1.0, 1.0, 0.1]
    assert ticks.bid_volume.tolist() == [2.06, 1.0, 123456.79]
    for col in (ticks.ts_ms, ticks.ask, ticks.bid):
        assert col.dtype == np.int64
    assert ticks.ask_volume.dtype == np.float64


def test_roundtrip_self_made_candles_reorders_oclh() -> None:
    day = _ms(2019, 2, 4)
    raw = pack_candles([(0, 100, 105, 95, 110, 2.06), (60, 105, 105, 105, 105, 0.0)])
    candles = decode_bi5_candles(compress(raw), day, period_ms=DAY_MS)
    assert candles.ts_ms.tolist() == [day, day + 60_000]
    assert candles.open.tolist() == [100, 105]
    assert candles.high.tolist() == [110, 105]
    assert candles.low.tolist() == [95, 105]
    assert candles.close.tolist() == [105, 105]
    assert candles.volume.tolist() == [2.06, 0.0]


def test_empty_payload() -> None:
    assert decompress_bi5(b"") == b""
    assert len(decode_bi5_ticks(b"", HOUR)) == 0
    assert len(decode_bi5_candles(b"", HOUR)) == 0


def test_valid_stream_with_no_records() -> None:
    assert len(decode_bi5_ticks(compress(b""), HOUR)) == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            compress(b"x" * 41),
            "bi5 ticks: decompressed 41 bytes is not a multiple of the 20-byte record",
        ),
        (b"\x5d\x00\x00", "lzma: payload of 3 bytes is shorter than the 13-byte LZMA-alone header"),
        (b"\xff" * 40, "lzma: corrupt stream: "),
        (b"\x5d\x00\x00\x40\x00" + b"\xff" * 8 + b"\x01" * 30, "lzma: corrupt stream: "),
        (
            b"<html><body>503 Service Unavailable</body></html>",
            "lzma: header declares 3836637404838640702 uncompressed bytes, more than the limit",
        ),
        (compress(pack_ticks(TICKS))[:-8], "lzma: truncated stream: "),
        (compress(pack_ticks(TICKS))[:20], "lzma: truncated stream: "),
        (
            compress(pack_ticks([(3_600_000, 1, 1, 1.0, 1.0)])),
            "bi5 ticks: record 0 has offset 3600000 ms, outside the hour (0..3599999)",
        ),
        (
            compress(pack_ticks([(0, 1, 1, 1.0, 1.0), (1, 1, 1, float("nan"), 1.0)])),
            "bi5 ticks: field 'ask_vol' of record 1 is nan, not finite",
        ),
        (
            compress(pack_ticks([(0, 1, 1, 1.0, float("inf"))])),
            "bi5 ticks: field 'bid_vol' of record 0 is inf, not finite",
        ),
    ],
    ids=[
        "41-bytes",
        "short-header",
        "garbage",
        "garbage-after-header",
        "html",
        "truncated-tail",
        "truncated-head",
        "offset",
        "nan",
        "inf",
    ],
)
def test_corrupt_tick_payloads(payload: bytes, message: str) -> None:
    with pytest.raises(DecodeError) as info:
        decode_bi5_ticks(payload, HOUR)
    assert str(info.value).startswith(message), str(info.value)


def test_declared_size_checked_before_decompressing() -> None:
    payload = bytearray(compress(pack_ticks(TICKS)))
    payload[5:13] = (2**30).to_bytes(8, "little")
    with pytest.raises(
        DecodeError,
        match=r"^lzma: header declares 1073741824 uncompressed bytes, "
        r"more than the limit 268435456$",
    ):
        decompress_bi5(bytes(payload))


def test_inflation_limit_for_unknown_size_streams() -> None:
    payload = compress(b"\0" * 10_000)  # liblzma writes the "unknown size" header
    assert payload[5:13] == b"\xff" * 8
    with pytest.raises(
        DecodeError, match=r"^lzma: stream inflates beyond the limit of 1000 bytes$"
    ):
        decompress_bi5(payload, max_size=1000)
    assert len(decompress_bi5(payload, max_size=10_000)) == 10_000


def test_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dukascopy_bi5, "MAX_ROWS", 2)
    with pytest.raises(DecodeError, match=r"^bi5 ticks: 3 records is more than the limit of 2$"):
        decode_bi5_ticks(compress(pack_ticks(TICKS)), HOUR)


def test_corrupt_candle_payloads() -> None:
    with pytest.raises(
        DecodeError,
        match=r"^bi5 candles: decompressed 20 bytes is not a multiple of the 24-byte record$",
    ):
        decode_bi5_candles(compress(pack_ticks(TICKS[:1])), 0)
    raw = pack_candles([(86_400, 1, 1, 1, 1, 0.0)])
    with pytest.raises(
        DecodeError, match=r"^bi5 candles: record 0 has offset 86400 s, outside the 86400 s period$"
    ):
        decode_bi5_candles(compress(raw), 0, period_ms=DAY_MS)
    assert len(decode_bi5_candles(compress(raw), 0)) == 1  # no period given: not checked
    with pytest.raises(
        DecodeError, match=r"^bi5 candles: field 'volume' of record 0 is nan, not finite$"
    ):
        decode_bi5_candles(compress(pack_candles([(0, 1, 1, 1, 1, float("nan"))])), 0)


# --- fuzz: only DecodeError may escape ---------------------------------------------------

SEED_PAYLOADS = [
    compress(pack_ticks(TICKS)),
    compress(pack_candles([(0, 100, 105, 95, 110, 2.06), (60, 105, 105, 105, 105, 0.0)])),
    compress(b"x" * 41),
]


def _decode_all(payload: bytes) -> None:
    for call in (
        lambda: decode_bi5_ticks(payload, HOUR),
        lambda: decode_bi5_candles(payload, 0, period_ms=DAY_MS),
    ):
        try:
            call()
        except DecodeError:
            pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(payload: bytes) -> None:
    _decode_all(payload)
    _decode_all(b"\x5d\x00\x00\x40\x00" + payload)  # a plausible header, random rest


@pytest.fixture(scope="module")
def real_seed_payloads() -> list[bytes]:
    from support.shared_data import locate_shared_dir

    root = locate_shared_dir()
    if root is None:
        return []
    base = root / "data" / "dukascopy" / "bi5" / "EURUSD"
    return [
        (base / "2019/01/04/22h_ticks.bi5").read_bytes(),
        (base / "2019/BID_candles_day_1.bi5").read_bytes(),
    ]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_mutated_payloads(real_seed_payloads: list[bytes], data: st.DataObject) -> None:
    seeds = SEED_PAYLOADS + real_seed_payloads
    payload = bytearray(data.draw(st.sampled_from(seeds), label="seed"))
    for _ in range(data.draw(st.integers(0, 8), label="flips")):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(payload)), label="truncate at")
    _decode_all(bytes(payload[:cut]))
    _decode_all(bytes(payload))
