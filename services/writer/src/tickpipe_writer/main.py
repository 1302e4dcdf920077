"""Writer service entry point: ``validated-batches`` → the database."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe_shared import service
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.runtime import BatchPolicy, StageRunner
from tickpipe_shared.kafka.topics import VALIDATED_BATCHES
from tickpipe_shared.metrics import Health
from tickpipe_shared.wire.batch import TICK_ROW_BYTES

from tickpipe_writer.stage import Writer


async def build(settings: Settings, health: Health) -> Sequence[StageRunner]:
    """The writer runner, batching by rows (as bytes) and time."""
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
    return [runner]


def main() -> None:
    """``tickpipe-writer``."""
    service.main("writer", build)
