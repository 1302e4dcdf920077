"""The validator stage: ``decoded-batches`` → ``validated-batches`` (or failures)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.schedule import TradingSchedule, default_schedule_for
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.topics import VALIDATED_BATCHES
from tickpipe_shared.metrics import TICKS, UNITS
from tickpipe_shared.wire.batch import BatchFormatError, decode_batch, encode_batch

from tickpipe_validator.metrics import RULE_HITS
from tickpipe_validator.validate import RejectedUnitError, configure, validate

FailureFactory = Callable[[InRecord, BaseException], OutRecord]
#: Instrument (canonical name) → its trading schedule, or ``None`` when unknown. Called once per
#: batch, so it must be cheap and do no I/O (load schedules before, cache them inside).
ScheduleProvider = Callable[[str], TradingSchedule | None]


class Validator:
    """Processor validating each decoded batch with the configured rules.

    ``schedules`` gives the ``gap`` rule each instrument's trading schedule; the default knows
    only the generic FX week for currency pairs (:func:`default_schedule_for`).
    """

    def __init__(
        self,
        settings: Settings,
        failure: FailureFactory,
        schedules: ScheduleProvider = default_schedule_for,
    ) -> None:
        self.topic = settings.topic(VALIDATED_BATCHES)
        self.rules = configure(settings.validator_actions, thresholds=settings.validator_thresholds)
        self.failure = failure
        self.schedules = schedules

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """One validated batch or failure record per input record."""
        out: list[OutRecord] = []
        now = int(time.time() * 1000)
        for record in records:
            try:
                batch = decode_batch(record.value or b"")
                schedule = self.schedules(batch.meta.instrument)
                validated = validate(batch, self.rules, now, schedule)
            except (BatchFormatError, RejectedUnitError) as e:
                UNITS.labels("validator", "rejected").inc()
                out.append(self.failure(record, e))
                continue
            for rule, count in validated.meta.quality.items():
                RULE_HITS.labels(rule, validated.meta.instrument).inc(count)
            TICKS.labels("validator").inc(len(validated.ticks))
            if validated.meta.part == validated.meta.part_count - 1:
                UNITS.labels("validator", "passed").inc()
            out.append(
                OutRecord(
                    self.topic, record.key, encode_batch(validated), list(record.headers or [])
                )
            )
        return out
