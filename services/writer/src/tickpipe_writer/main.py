"""Writer service entry point: ``validated-batches`` → the database, and ``failures`` → the
ingest log's ``failed`` rows (a second runner, consumer group ``<prefix>writer-failures``)."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe_shared import service
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import FAILURES, VALIDATED_BATCHES
from tickpipe_shared.metrics import Health
from tickpipe_shared.wire.batch import TICK_ROW_BYTES

from tickpipe_writer.failures import STAGE as FAILURES_STAGE
from tickpipe_writer.failures import FailureLedger
from tickpipe_writer.stage import Writer


async def build(settings: Settings, health: Health) -> Sequence[StageRunner]:
    """The writer runner, batching by rows (as bytes) and time, and the failure-ledger runner."""
    runner: StageRunner
    writer = Writer(settings, lambda r, e: runner.failure_record(r, e))
    runner = StageRunner(
        settings,
        "writer",
        VALIDATED_BATCHES,
        writer,
        health,
        policy=BatchPolicy(
            max_records=1000,
            max_bytes=settings.writer_batch_rows * (TICK_ROW_BYTES + 2),
            max_wait_s=settings.writer_batch_seconds,
        ),
    )
    failures = StageRunner(
        settings,
        FAILURES_STAGE,
        FAILURES,
        FailureLedger(settings),
        health,
        policy=BatchPolicy(max_records=500, max_wait_s=0.5),
    )
    return [runner, failures]


def main() -> None:
    """``tickpipe-writer``."""
    service.main("writer", build)
