"""The stage with the depth rules: thresholds from Settings, the schedule provider, metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.schedule import FX_DEFAULT_SCHEDULE, TradingSchedule
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta, TickBatch, decode_batch, encode_batch
from tickpipe_validator.metrics import RULE_HITS
from tickpipe_validator.stage import Validator
from tickpipe_validator.validate import ConfigError

T0 = 1_549_238_400_000  # Monday 2019-02-04 00:00 UTC
HOUR = 3_600_000


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"k"
    topic: str = "tickpipe.decoded-batches"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def failure(record: Any, error: BaseException) -> OutRecord:
    raise AssertionError(f"unexpected failure: {error}")


def encoded(instrument: str, ts: list[int], bid: list[int]) -> bytes:
    n = len(ts)
    t = Ticks(
        np.array(ts, dtype=np.int64),
        np.array(bid, dtype=np.int64),
        np.array(bid, dtype=np.int64) + 2,
        np.ones(n),
        np.ones(n),
    )
    meta = BatchMeta(
        Unit("dukascopy-bi5", instrument, "ticks", T0, T0 + HOUR),
        0,
        1,
        n,
        5,
        "aa" * 32,
        "r",
        T0,
        T0,
    )
    return encode_batch(TickBatch(meta, t))


def hits(rule: str, instrument: str) -> float:
    return RULE_HITS.labels(rule, instrument)._value.get()  # type: ignore[no-any-return]


# Ticks at 0 s, 1 s, 401 s (a 400 s silence), then a copy of the last one (a duplicate).
TS = [T0, T0 + 1000, T0 + 401_000, T0 + 401_000]
BID = [100_000, 100_001, 100_001, 100_001]


async def test_default_provider_fx_pair_gets_gap_rule_and_metrics() -> None:
    before_gap, before_dup = hits("gap", "EURUSD"), hits("duplicate", "EURUSD")
    [out] = await Validator(Settings(), failure).process([Rec(encoded("EURUSD", TS, BID))])
    vb = decode_batch(out.value)
    assert vb.meta.quality == {"duplicate": 1, "gap": 1}
    assert vb.ticks.ts_ms.tolist() == TS[:3]
    assert vb.flags is not None and vb.flags.tolist() == [0, 0, 1 << 9]
    assert hits("gap", "EURUSD") == before_gap + 1
    assert hits("duplicate", "EURUSD") == before_dup + 1


async def test_default_provider_non_fx_has_no_gap_rule() -> None:
    [out] = await Validator(Settings(), failure).process([Rec(encoded("BTCUSD", TS, BID))])
    assert decode_batch(out.value).meta.quality == {"duplicate": 1}


async def test_custom_provider_and_thresholds() -> None:
    asked: list[str] = []

    def provider(instrument: str) -> TradingSchedule | None:
        asked.append(instrument)
        return FX_DEFAULT_SCHEDULE

    settings = Settings(validator_thresholds={"gap": 600}, validator_actions={"duplicate": "flag"})
    v = Validator(settings, failure, provider)
    [out] = await v.process([Rec(encoded("XAUUSD", TS, BID))])
    assert asked == ["XAUUSD"]
    assert decode_batch(out.value).meta.quality == {"duplicate": 1}


def test_bad_thresholds_fail_at_start() -> None:
    with pytest.raises(ConfigError, match="rule 'duplicate' has no threshold"):
        Validator(Settings(validator_thresholds={"duplicate": 1}), failure)
    with pytest.raises(ConfigError, match="threshold of rule 'gap' must be"):
        Validator(Settings(validator_thresholds={"gap": -5}), failure)


def test_thresholds_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_VALIDATOR_THRESHOLDS", '{"spread_outlier": 80, "stale_run": 50}')
    s = Settings()
    assert s.validator_thresholds == {"spread_outlier": 80.0, "stale_run": 50.0}
    v = Validator(s, failure)
    got = {c.rule.name: c.threshold for c in v.rules}
    assert got["spread_outlier"] == 80 and got["stale_run"] == 50
