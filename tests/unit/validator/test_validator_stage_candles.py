"""The stage on mixed tick and candle records: dispatch, quality, metrics, failures, and the
schedule provider (prepared once per poll with the tick batches, asked per tick batch)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.details import InstrumentDetail
from tickpipe_shared.instruments.schedule import FX_DEFAULT_SCHEDULE, TradingSchedule
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.kinds import DAY_MS, HOUR_MS, MINUTE_MS, KindError
from tickpipe_shared.metrics import CANDLES, TICKS, UNITS
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import (
    BatchMeta,
    CandleBatch,
    TickBatch,
    decode_batch,
    encode_batch,
)
from tickpipe_validator.metrics import RULE_HITS
from tickpipe_validator.rules.candle_high_low import CANDLE_HIGH_LOW
from tickpipe_validator.rules.gap import GAP
from tickpipe_validator.schedules import DetailSchedules, StaticSchedules
from tickpipe_validator.stage import Validator
from tickpipe_validator.validate import RejectedUnitError

T0 = 1_549_238_400_000  # Monday 2019-02-04 00:00 UTC
H10 = T0 + 10 * HOUR_MS
M = MINUTE_MS


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.decoded-batches"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("tp-request_id", b"r")])


class Failures:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def __call__(self, record: Any, error: BaseException) -> OutRecord:
        self.errors.append(error)
        return OutRecord("tickpipe.failures", record.key, str(error).encode())


def tick_record(
    instrument: str = "EURUSD", ts: list[int] | None = None, source: str = "dukascopy-json"
) -> Rec:
    ts = ts if ts is not None else [H10 + i * 1000 for i in range(3600)]
    n = len(ts)
    bid = 113_000 + np.arange(n, dtype=np.int64) % 3  # a quiet market, never stale
    t = Ticks(np.array(ts, dtype=np.int64), bid, bid + 2, np.ones(n), np.ones(n))
    meta = BatchMeta(
        Unit(source, instrument, "ticks", H10, H10 + HOUR_MS),
        0,
        1,
        n,
        5,
        "aa" * 32,
        "r",
        H10 + DAY_MS,
        H10 + DAY_MS,
        source_code="EUR-USD",
    )
    return Rec(encode_batch(TickBatch(meta, t)))


def candle_record(
    high: list[int], low: list[int] | None = None, kind: str = "candles:1m:bid", n: int = 3
) -> Rec:
    o = np.full(n, 113_000, dtype=np.int64)
    c = Candles(
        np.array([T0 + i * M for i in range(n)], dtype=np.int64),
        o,
        np.array(high, dtype=np.int64),
        np.array(low if low is not None else [112_990] * n, dtype=np.int64),
        o + 1,
        np.full(n, np.nan),
    )
    meta = BatchMeta(
        Unit("dukascopy-bi5", "EURUSD", kind, T0, T0 + DAY_MS),
        0,
        1,
        n,
        5,
        "bb" * 32,
        "r",
        T0 + 2 * DAY_MS,
        T0 + 2 * DAY_MS,
        volume_unit="none",
        columns=list(CANDLE_COLUMNS),
    )
    return Rec(encode_batch(CandleBatch(meta, c)))


class Recording:
    """A provider recording what it is asked."""

    def __init__(self) -> None:
        self.prepared: list[list[str]] = []
        self.asked: list[str] = []

    async def prepare(self, metas: Iterable[BatchMeta]) -> None:
        self.prepared.append([f"{m.unit.instrument} {m.unit.kind}" for m in metas])

    def schedule_for(self, meta: BatchMeta) -> TradingSchedule | None:
        self.asked.append(meta.unit.kind)
        return FX_DEFAULT_SCHEDULE


def value(counter: Any, *labels: str) -> float:
    c = counter.labels(*labels) if labels else counter
    return c._value.get()  # type: ignore[no-any-return]


async def test_mixed_tick_and_candle_records() -> None:
    failures = Failures()
    provider = Recording()
    v = Validator(Settings(), failures, provider)
    before = {
        "hl": value(RULE_HITS, "candle_high_low", "EURUSD"),
        "candles": value(CANDLES, "validator"),
        "ticks": value(TICKS, "validator"),
        "passed": value(UNITS, "validator", "passed"),
        "rejected": value(UNITS, "validator", "rejected"),
    }
    records = [
        tick_record(),
        candle_record([113_005, 112_999, 113_005]),  # row 1: high below open
        candle_record([113_005] * 3, kind="candles:1h:bid"),
        candle_record([113_005] * 3, low=[112_990, -5, 112_990]),  # rejected: positive_price
        candle_record([113_005] * 3, kind="candles:9x:bid"),  # malformed kind
        Rec(b"garbage!"),
    ]
    out = await v.process(records)
    assert [o.topic for o in out] == ["tickpipe.validated-batches"] * 3 + ["tickpipe.failures"] * 3
    assert all(o.key == b"k" and o.headers == [("tp-request_id", b"r")] for o in out[:3])
    ticks, candles, hourly = (decode_batch(o.value or b"") for o in out[:3])
    assert isinstance(ticks, TickBatch) and ticks.meta.quality == {}
    assert isinstance(candles, CandleBatch)
    assert candles.flags is not None and candles.flags.tolist() == [0, CANDLE_HIGH_LOW.mask, 0]
    assert candles.meta.quality == {"candle_high_low": 1}
    assert np.isnan(candles.candles.volume).all()  # volume unit none: NaN is not flagged
    # 1h candles one minute apart are off the hour grid (rows 1, 2).
    assert isinstance(hourly, CandleBatch) and hourly.meta.quality == {"aligned_start": 2}
    assert isinstance(failures.errors[0], RejectedUnitError)
    assert "rule positive_price" in str(failures.errors[0])
    assert "of 3 candles" in str(failures.errors[0])
    assert isinstance(failures.errors[1], KindError)
    assert "9x" in str(failures.errors[1])
    # The provider is prepared once with the tick batches only, and asked for them only.
    assert provider.prepared == [["EURUSD ticks"]]
    assert provider.asked == ["ticks"]
    assert value(RULE_HITS, "candle_high_low", "EURUSD") == before["hl"] + 1
    assert value(CANDLES, "validator") == before["candles"] + 6
    assert value(TICKS, "validator") == before["ticks"] + 3600
    assert value(UNITS, "validator", "passed") == before["passed"] + 3
    assert value(UNITS, "validator", "rejected") == before["rejected"] + 3


async def test_candle_actions_from_settings() -> None:
    settings = Settings(
        validator_actions={"candle_high_low": "drop", "aligned_start": "reject"},
        validator_thresholds={"price_spike": 20},
    )
    failures = Failures()
    v = Validator(settings, failures)
    out = await v.process(
        [
            candle_record([113_005, 112_999, 113_005]),
            candle_record([113_005] * 3, kind="candles:1h:bid"),
        ]
    )
    dropped = decode_batch(out[0].value or b"")
    assert isinstance(dropped, CandleBatch) and dropped.meta.rows == 2
    assert dropped.meta.quality == {"candle_high_low": 1}
    assert out[1].topic == "tickpipe.failures"
    assert "rule aligned_start" in str(failures.errors[0])
    assert {c.rule.name: c.threshold for c in v.rules}["price_spike"] == 20


async def test_default_provider_knows_classes_without_io() -> None:
    v = Validator(Settings(), Failures())
    assert isinstance(v.schedules, StaticSchedules)


async def test_detail_schedule_holiday_reaches_the_gap_rule() -> None:
    # Ticks at 10:00 and 10:30 on a day whose detail closes 10:01–10:29 for a holiday: two
    # minutes of open market, not a gap. The FX default knows no holidays: 30 minutes, a gap.
    ts = [H10, H10 + 30 * M] + [H10 + 30 * M + i * 1000 for i in range(1, 1800)]
    body = {
        "defaultTimezone": "America/New_York",
        "tradeSchedule": [
            {"from": None, "to": None, "sessions": {
                d: [{"start": "17:00", "previousDayStart": True, "end": "17:00"}]
                for d in ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY")
            }}
        ],
        "holidays": [{"from": H10 + M, "till": H10 + 29 * M}],
        "groupCode": "FX_MAJORS",
    }  # fmt: skip

    class Details:
        async def get(self, code: str) -> InstrumentDetail | None:
            return InstrumentDetail.parse(code, body)

    async def no_registry(settings: Settings) -> Any:
        raise AssertionError("a dukascopy-json batch names its code")

    with_detail = Validator(
        Settings(), Failures(), DetailSchedules(Settings(), Details(), no_registry)
    )
    [out] = await with_detail.process([tick_record(ts=ts)])
    assert decode_batch(out.value or b"").meta.quality == {}
    [out] = await Validator(Settings(), Failures()).process([tick_record(ts=ts)])
    vb = decode_batch(out.value or b"")
    assert vb.meta.quality == {"gap": 1}
    assert vb.flags is not None and vb.flags[1] == GAP.mask
