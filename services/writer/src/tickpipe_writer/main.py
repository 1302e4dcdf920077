"""Writer service entry point: ``validated-batches`` → the database, and ``failures`` → the
ingest log's ``failed`` rows (a second runner, consumer group ``<prefix>writer-failures``)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tickpipe_shared import service
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.failure_records import FailureRecords
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import FAILURES, VALIDATED_BATCHES
from tickpipe_shared.metrics import Health
from tickpipe_shared.wire.batch import VALIDATED_ROW_BYTES

from tickpipe_writer.failures import STAGE as FAILURES_STAGE
from tickpipe_writer.failures import FailureLedger
from tickpipe_writer.stage import Writer

_background: set[asyncio.Task[None]] = set()


async def build(settings: Settings, health: Health) -> Sequence[StageRunner]:
    """The writer runner, batching by rows (as bytes) and time, and the failure-ledger runner."""
    failures = FailureRecords(settings, "writer")
    writer = Writer(settings, failures.record)
    # Kept referenced by the loop until done; it starts the background OHLCV refresh.
    _background.add(asyncio.get_running_loop().create_task(writer.warm_up()))
    runner = StageRunner(
        settings,
        failures.stage,
        VALIDATED_BATCHES,
        writer,
        health,
        policy=BatchPolicy(
            max_records=1000,
            # Validated ticks are the writer's input: their row size bounds a batch's bytes.
            max_bytes=settings.writer_batch_rows * VALIDATED_ROW_BYTES,
            max_wait_s=settings.writer_batch_seconds,
        ),
        failures=failures,
    )
    ledger = StageRunner(
        settings,
        FAILURES_STAGE,
        FAILURES,
        FailureLedger(settings),
        health,
        policy=BatchPolicy(max_records=500, max_wait_s=0.5),
    )
    return [runner, ledger]


def main() -> None:
    """``tickpipe-writer``."""
    service.main("writer", build)
