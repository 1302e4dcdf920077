"""Validator service entry point: ``decoded-batches`` → ``validated-batches``."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe_shared import service
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.failure_records import FailureRecords
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import DECODED_BATCHES
from tickpipe_shared.metrics import Health

from tickpipe_validator.schedules import DetailSchedules
from tickpipe_validator.stage import Validator


async def build(settings: Settings, health: Health) -> Sequence[StageRunner]:
    """The validator runner (configuration errors in rule actions stop start-up). Trading
    schedules come from the Dukascopy instrument details, loaded per instrument at first sight
    (:class:`~tickpipe_validator.schedules.DetailSchedules`)."""
    failures = FailureRecords(settings, "validator")
    runner = StageRunner(
        settings,
        failures.stage,
        DECODED_BATCHES,
        Validator(settings, failures.record, DetailSchedules(settings)),
        health,
        policy=BatchPolicy(max_records=128, max_wait_s=0.05),
        failures=failures,
    )
    return [runner]


def main() -> None:
    """``tickpipe-validator``."""
    service.main("validator", build)
