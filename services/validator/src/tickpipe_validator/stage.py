"""The validator stage: ``decoded-batches`` → ``validated-batches`` (or failures)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.topics import VALIDATED_BATCHES
from tickpipe_shared.kinds import KindError
from tickpipe_shared.metrics import CANDLES, TICKS, UNITS
from tickpipe_shared.wire.batch import (
    Batch,
    BatchFormatError,
    TickBatch,
    decode_batch,
    encode_batch,
)

from tickpipe_validator.metrics import RULE_HITS
from tickpipe_validator.schedules import NameLookup, ScheduleProvider, StaticSchedules
from tickpipe_validator.validate import RejectedUnitError, configure, validate

FailureFactory = Callable[[InRecord, BaseException], OutRecord]

__all__ = ["FailureFactory", "ScheduleProvider", "Validator"]


class Validator:
    """Processor validating each decoded batch, ticks or candles, with the configured rules.

    ``schedules`` gives the ``gap`` rule each tick batch's trading schedule: a
    :class:`~tickpipe_validator.schedules.ScheduleProvider` (the service uses
    :class:`~tickpipe_validator.schedules.DetailSchedules`), or a function instrument → schedule.
    The default, :class:`~tickpipe_validator.schedules.StaticSchedules`, does no I/O: FX week
    for currency pairs, 24/7 for synthetic indices and crypto.

    Raises :class:`~tickpipe_validator.validate.ConfigError` for bad rule actions or thresholds.
    """

    def __init__(
        self,
        settings: Settings,
        failure: FailureFactory,
        schedules: ScheduleProvider | NameLookup | None = None,
    ) -> None:
        self.topic = settings.topic(VALIDATED_BATCHES)
        self.rules = configure(settings.validator_actions, thresholds=settings.validator_thresholds)
        self.failure = failure
        if schedules is None:
            schedules = StaticSchedules()
        elif not isinstance(schedules, ScheduleProvider):
            schedules = StaticSchedules(schedules)
        self.schedules: ScheduleProvider = schedules

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """One validated batch or failure record per input record, in input order."""
        now = int(time.time() * 1000)
        decoded: list[Batch | BatchFormatError] = []
        for record in records:
            try:
                decoded.append(decode_batch(record.value or b""))
            except BatchFormatError as e:
                decoded.append(e)
        # Schedules of instruments seen for the first time load here, once, before validating.
        await self.schedules.prepare([b.meta for b in decoded if isinstance(b, TickBatch)])
        out: list[OutRecord] = []
        for record, batch in zip(records, decoded, strict=True):
            if isinstance(batch, BatchFormatError):
                out.append(self._rejected(record, batch))
                continue
            try:
                if isinstance(batch, TickBatch):
                    schedule = self.schedules.schedule_for(batch.meta)
                    validated: Batch = validate(batch, self.rules, now, schedule)
                else:
                    validated = validate(batch, self.rules, now)
            except (KindError, RejectedUnitError) as e:
                out.append(self._rejected(record, e))
                continue
            meta = validated.meta
            for rule, count in meta.quality.items():
                RULE_HITS.labels(rule, meta.unit.instrument).inc(count)
            if isinstance(validated, TickBatch):
                TICKS.labels("validator").inc(len(validated.ticks))
            else:
                CANDLES.labels("validator").inc(len(validated.candles))
            if meta.part == meta.part_count - 1:
                UNITS.labels("validator", "passed").inc()
            out.append(
                OutRecord(
                    self.topic, record.key, encode_batch(validated), list(record.headers or [])
                )
            )
        return out

    def _rejected(self, record: InRecord, error: BaseException) -> OutRecord:
        UNITS.labels("validator", "rejected").inc()
        return self.failure(record, error)
