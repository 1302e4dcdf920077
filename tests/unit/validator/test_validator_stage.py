"""``tickpipe_validator.stage.Validator``: decoded batch records → validated batches/failures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from tickpipe_shared.columns import Ticks
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import OutRecord
from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import (
    BatchFormatError,
    BatchMeta,
    TickBatch,
    decode_batch,
    encode_batch,
)
from tickpipe_validator.stage import Validator
from tickpipe_validator.validate import ConfigError, RejectedUnitError

T0 = 1_549_238_400_000
HOUR = 3_600_000


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"dukascopy-bi5|EURUSD|ticks|2019-02-04T00:00:00Z"
    topic: str = "tickpipe.decoded-batches"
    partition: int = 0
    offset: int = 0
    headers: list[tuple[str, bytes]] = field(default_factory=lambda: [("tp-request_id", b"r")])


failures: list[tuple[Any, BaseException]] = []


def failure(record: Any, error: BaseException) -> OutRecord:
    failures.append((record, error))
    return OutRecord("tickpipe.failures", record.key, str(error).encode())


@pytest.fixture(autouse=True)
def _clear() -> None:
    failures.clear()


def encoded(bid: list[int], ask: list[int], ts: list[int] | None = None) -> bytes:
    n = len(bid)
    t = Ticks(
        np.array(ts if ts is not None else [T0 + i for i in range(n)], dtype=np.int64),
        np.array(bid, dtype=np.int64),
        np.array(ask, dtype=np.int64),
        np.ones(n),
        np.ones(n),
    )
    meta = BatchMeta(
        Unit("dukascopy-bi5", "EURUSD", "ticks", T0, T0 + HOUR), 0, 1, n, 5, "aa" * 32, "r", T0, T0
    )
    return encode_batch(TickBatch(meta, t))


async def test_good_crossed_and_bad_records() -> None:
    v = Validator(Settings(), failure)
    before = int(time.time() * 1000)
    good = Rec(encoded([100, 102, 100], [101, 101, 101]))
    garbage = Rec(b"garbage!")
    rejected = Rec(encoded([100, 0], [101, 101]))
    out = await v.process([good, garbage, rejected])
    assert [o.topic for o in out] == [
        "tickpipe.validated-batches",
        "tickpipe.failures",
        "tickpipe.failures",
    ]
    assert out[0].key == good.key
    assert out[0].headers == good.headers
    vb = decode_batch(out[0].value)
    assert vb.flags is not None and vb.flags.tolist() == [0, 8, 0]
    assert vb.meta.quality == {"crossed_quote": 1}
    assert vb.meta.validated_at_ms is not None and vb.meta.validated_at_ms >= before
    assert isinstance(failures[0][1], BatchFormatError)
    assert failures[0][0] is garbage
    assert isinstance(failures[1][1], RejectedUnitError)
    assert "rule positive_price" in str(failures[1][1])


async def test_configured_actions_apply() -> None:
    v = Validator(Settings(validator_actions={"crossed_quote": "drop"}), failure)
    [out] = await v.process([Rec(encoded([100, 102, 100], [101, 101, 101]))])
    vb = decode_batch(out.value)
    assert vb.ticks.bid.tolist() == [100, 100]
    assert vb.meta.rows == 2


def test_bad_configuration_fails_at_start() -> None:
    with pytest.raises(ConfigError, match="inside_unit"):
        Validator(Settings(validator_actions={"inside_unit": "flag"}), failure)


async def test_none_value_is_failure() -> None:
    [out] = await Validator(Settings(), failure).process([Rec(None)])
    assert out.topic == "tickpipe.failures"
    assert "shorter than its 8-byte preamble" in str(failures[0][1])
