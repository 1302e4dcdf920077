"""Decoder service entry point: ``raw-payloads`` → ``decoded-batches``."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe_shared import service
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.failure_records import FailureRecords
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import RAW_PAYLOADS
from tickpipe_shared.metrics import Health

from tickpipe_decoder.stage import Decoder


async def build(settings: Settings, health: Health) -> Sequence[StageRunner]:
    """The decoder runner."""
    failures = FailureRecords(settings, "decoder")
    runner = StageRunner(
        settings,
        failures.stage,
        RAW_PAYLOADS,
        Decoder(settings, failures.record),
        health,
        policy=BatchPolicy(max_records=64, max_bytes=16 * 1024 * 1024, max_wait_s=0.05),
        failures=failures,
    )
    return [runner]


def main() -> None:
    """``tickpipe-decoder``."""
    service.main("decoder", build)
