"""Failure records: what a stage sends to the ``failures`` topic about a record it gave up on.

One :class:`FailureRecords` per stage builds them; the stage's processor reports bad input
through it and the :class:`~tickpipe_shared.kafka.runtime.StageRunner` through it reports
records that raised, so both speak with the same stage name and topic.
"""

from __future__ import annotations

import structlog

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.topics import FAILURES
from tickpipe_shared.metrics import ERRORS, FAILURE_RECORDS
from tickpipe_shared.wire.failures import Failure
from tickpipe_shared.wire.headers import decode_headers

log = structlog.get_logger()


class FailureRecords:
    """Builds the failures-topic records of stage ``stage`` (full topic name from ``settings``)."""

    def __init__(self, settings: Settings, stage: str) -> None:
        self.stage = stage
        self.topic = settings.topic(FAILURES)

    def record(
        self,
        record: InRecord,
        error: BaseException,
        attempt: int = 1,
        request_id: str | None = None,
    ) -> OutRecord:
        """A failures-topic record about ``record``, keyed like it; ``request_id`` defaults to
        the record's ``tp-request_id`` header. Counts the error in ``tickpipe_errors_total`` and
        ``tickpipe_failure_records_total``."""
        ERRORS.labels(self.stage, type(error).__name__).inc()
        FAILURE_RECORDS.labels(self.stage, type(error).__name__).inc()
        headers = decode_headers(record.headers)
        key = record.key.decode("utf-8", "replace") if record.key else None
        failure = Failure(
            stage=self.stage,
            reason=str(error) or repr(error),
            error_class=type(error).__name__,
            key=key,
            headers=headers,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            attempt=attempt,
            unit_key=key,
            request_id=request_id or headers.get("request_id"),
        )
        log.error(
            "record failed",
            reason=failure.reason,
            error_class=failure.error_class,
            unit=key,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        return OutRecord(self.topic, record.key, failure.to_json())
