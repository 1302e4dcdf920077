"""The synthetic source: determinism, rate, schedule gaps, and the round trip through the real
``.bi5`` decoder, validator-clean rows and the checksum."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pytest
from tickpipe_decoder.decode import decode_payload
from tickpipe_decoder.formats.dukascopy_bi5 import decode_bi5_ticks
from tickpipe_fetcher.main import configured_sources
from tickpipe_fetcher.planner import Planner
from tickpipe_fetcher.sources.synthetic import SyntheticSource, encode_bi5_ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.schedule import FX_DEFAULT_SCHEDULE
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.synthetic.checksum import ticks_checksum
from tickpipe_shared.synthetic.ticks import (
    HOUR_MS,
    SyntheticParams,
    generate_ticks,
    price_scale_of,
    unit_tick_counts,
)
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import TickBatch, decode_batch
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta
from tickpipe_validator.validate import configure, validate_ticks

T0 = int(datetime(2024, 1, 15, 14, tzinfo=UTC).timestamp() * 1000)  # a Monday afternoon
PARAMS = SyntheticParams(ticks_per_hour=20_000, volatility=0.002, spread_points=6, seed=7)


def _unit(
    start: int = T0, instrument: str = "SYNEURUSD", market_open: bool | None = True
) -> FetchUnit:
    return FetchUnit(
        "req-syn",
        Unit("synthetic", instrument, "ticks", start, start + HOUR_MS),
        instrument,
        price_scale_of(instrument),
        "fx",
        True,
    )


def test_same_unit_same_ticks_other_seed_or_hour_other_ticks() -> None:
    a = generate_ticks("SYNEURUSD", T0, T0 + HOUR_MS, market_open=True, params=PARAMS)
    b = generate_ticks("SYNEURUSD", T0, T0 + HOUR_MS, market_open=True, params=PARAMS)
    for name in ("ts_ms", "bid", "ask", "bid_volume", "ask_volume"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    other_seed = SyntheticParams(20_000, 0.002, 6, seed=8)
    c = generate_ticks("SYNEURUSD", T0, T0 + HOUR_MS, market_open=True, params=other_seed)
    d = generate_ticks("SYNEURUSD", T0 + HOUR_MS, T0 + 2 * HOUR_MS, market_open=True,
                       params=PARAMS)  # fmt: skip
    e = generate_ticks("SYNGBPUSD", T0, T0 + HOUR_MS, market_open=True, params=PARAMS)
    sums = {ticks_checksum(t) for t in (a, c, d, e)}
    assert len(sums) == 4
    assert ticks_checksum(a) == ticks_checksum(b)


def test_rows_are_in_the_unit_strictly_increasing_and_never_crossed() -> None:
    t = generate_ticks("SYNUSDJPY", T0, T0 + HOUR_MS, market_open=True, params=PARAMS)
    assert len(t) > 0
    assert t.ts_ms[0] >= T0 and t.ts_ms[-1] < T0 + HOUR_MS
    assert np.all(np.diff(t.ts_ms) > 0)
    assert np.all(t.ask - t.bid >= PARAMS.spread_points) and np.all(t.bid > 0)
    assert np.all(np.abs(t.bid_volume * 100 - np.rint(t.bid_volume * 100)) < 1e-9)
    assert 100_000 < t.bid[0] < 200_000  # JPY: scale 3, level ~150
    assert price_scale_of("SYNUSDJPY") == 3 and price_scale_of("SYNEURUSD") == 5


def test_rate_is_the_configured_mean_over_many_hours() -> None:
    starts = T0 + HOUR_MS * np.arange(200, dtype=np.int64)
    counts = unit_tick_counts("SYNEURUSD", starts, np.ones(200, dtype=bool), PARAMS)
    assert abs(counts.mean() / PARAMS.ticks_per_hour - 1) < 0.01
    # The count shortcut agrees with the generator itself.
    for start, n in zip(starts[:5].tolist(), counts[:5].tolist(), strict=True):
        assert len(generate_ticks("SYNEURUSD", start, start + HOUR_MS, market_open=True,
                                  params=PARAMS)) == n  # fmt: skip


def test_closed_hours_are_empty_and_encode_as_zero_byte_files() -> None:
    t = generate_ticks("SYNEURUSD", T0, T0 + HOUR_MS, market_open=False, params=PARAMS)
    assert len(t) == 0 and encode_bi5_ticks(t, T0) == b""
    zero = unit_tick_counts("SYNEURUSD", np.array([T0]), np.array([False]), PARAMS)
    assert zero.tolist() == [0]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        SyntheticParams(ticks_per_hour=-1)
    with pytest.raises(ValueError, match="empty"):
        generate_ticks("X", T0, T0, market_open=True, params=PARAMS)


def test_decode_round_trip_through_the_real_decoder_keeps_the_checksum() -> None:
    source = SyntheticSource(PARAMS)
    fu = _unit()
    answer = asyncio.run(source.fetch(fu, T0 + 2 * HOUR_MS, requests=None))  # type: ignore[arg-type]
    assert answer.format == "dukascopy-bi5-ticks" and answer.body[0] == 0x5D
    generated = generate_ticks("SYNEURUSD", T0, T0 + HOUR_MS, market_open=True, params=PARAMS)
    decoded = decode_bi5_ticks(answer.body, T0)
    assert len(decoded) == len(generated)
    assert ticks_checksum(decoded) == ticks_checksum(generated)
    # Through the decoder stage's own path (parts of max_batch_bytes) and the validator rules.
    meta = RawPayloadMeta(
        unit=fu.unit, format=answer.format, url=answer.url, sha256="0" * 64,
        fetched_at_ms=T0 + 2 * HOUR_MS, price_scale=5, request_id="req-syn",
        http_status=200, content_type=answer.content_type, attempts=1,
        source_code="SYNEURUSD", asset_class="fx",
    )  # fmt: skip
    unit = decode_payload(meta, answer.body, 300_000)
    parts = [decode_batch(b) for b in unit.batches]
    assert len(parts) > 1  # 20 000 ticks in parts of 300 kB: the writer sees real parts
    rules = configure({}, {})
    total = 0
    for part in parts:
        assert isinstance(part, TickBatch)
        result = validate_ticks(part, rules, T0 + 2 * HOUR_MS, FX_DEFAULT_SCHEDULE)
        assert len(result.ticks) == len(part.ticks)  # nothing dropped or rejected
        assert not result.meta.quality.get("crossed_quote")
        total += ticks_checksum(part.ticks)
    assert total % (1 << 64) == ticks_checksum(generated)


@dataclass
class _Rec:
    value: bytes
    key: bytes | None = None
    topic: str = "tickpipe.fetch-requests"
    partition: int = 0
    offset: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()


class _Ledger:
    async def done_units(self, instrument: str, kind: str, start: int, end: int) -> set[int]:
        return set()


async def _no_registry() -> object:
    raise AssertionError("the synthetic source needs no instrument registry")


def _plan(body: dict[str, str]) -> list[FetchUnit]:
    planner = Planner(
        Settings(), _no_registry, {"synthetic"}, lambda r, e, rid: OutRecord("f", None, b""),  # type: ignore[arg-type]
        ledger=_Ledger(), clock=lambda: datetime(2026, 1, 1, tzinfo=UTC).timestamp(),
    )  # fmt: skip
    value = json.dumps({"request_id": "r", "source": "synthetic", **body}).encode()
    out = asyncio.run(planner.process([_Rec(value)]))
    return [FetchUnit.from_json(o.value or b"") for o in out if o.topic.endswith("fetch-units")]


def test_planner_gives_fx_week_gaps_and_the_synthetic_scale() -> None:
    # Friday 20:00 UTC → Sunday 23:00 UTC, winter: the FX week closes at 22:00 Friday and
    # reopens at 22:00 Sunday.
    units = _plan({"instrument": "SYNEURUSD", "from": "2019-02-08T20:00:00Z",
                   "to": "2019-02-10T23:00:00Z"})  # fmt: skip
    assert [u.market_open for u in units] == [True, True] + [False] * 48 + [True]
    assert {u.price_scale for u in units} == {5}
    closed = units[5]
    source = SyntheticSource(PARAMS)
    assert source.payload(closed) == b""


def test_configured_only_when_turned_on() -> None:
    assert "synthetic" not in configured_sources(Settings())
    on: dict[str, object] = {"synthetic_source": True, "synthetic_ticks_per_hour": 5}
    source = configured_sources(Settings(**on))["synthetic"]
    assert isinstance(source, SyntheticSource) and source.params.ticks_per_hour == 5
