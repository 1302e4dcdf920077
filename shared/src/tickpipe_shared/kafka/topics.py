"""The topics of tickpipe and how they are created.

Contracts (key, headers, value encoding) are documented in ``docs/topics/``. Every record about
one unit of work is keyed by ``source|instrument|kind|unit start`` (:attr:`Unit.key`) so it
stays in one partition, in order, through every stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tickpipe_shared.config import Settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic tickpipe owns: logical name, and configs applied when it is created."""

    name: str
    configs: dict[str, str] = field(default_factory=dict)
    doc: str = ""


FETCH_REQUESTS = "fetch-requests"
FETCH_UNITS = "fetch-units"
RAW_PAYLOADS = "raw-payloads"
DECODED_BATCHES = "decoded-batches"
VALIDATED_BATCHES = "validated-batches"
FAILURES = "failures"
PROGRESS = "progress"
REQUEST_EVENTS = "request-events"
REQUEST_CANCELLATIONS = "request-cancellations"

#: Placeholder configs filled from the settings when a topic is created (:func:`topic_configs`).
MAX_MESSAGE = "max.message.bytes"
RETENTION = "retention.ms"
_SIZED = {MAX_MESSAGE: "setting:topic_max_message_bytes"}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(FETCH_REQUESTS, {RETENTION: str(7 * 86_400_000)}, "fetch requests (JSON)"),
    TopicSpec(FETCH_UNITS, {RETENTION: str(7 * 86_400_000)}, "units of work to download"),
    # Raw payloads are kept forever so the downstream stages can be replayed without downloading.
    TopicSpec(RAW_PAYLOADS, {RETENTION: "-1", **_SIZED}, "raw payloads as downloaded"),
    TopicSpec(
        DECODED_BATCHES,
        {RETENTION: "setting:topic_batch_retention_ms", **_SIZED},
        "decoded",
    ),
    TopicSpec(
        VALIDATED_BATCHES,
        {RETENTION: "setting:topic_batch_retention_ms", **_SIZED},
        "validated",
    ),
    TopicSpec(FAILURES, {RETENTION: str(30 * 86_400_000)}, "failures of every stage (JSON)"),
    TopicSpec(PROGRESS, {RETENTION: str(7 * 86_400_000)}, "request progress events (JSON)"),
    TopicSpec(REQUEST_EVENTS, {RETENTION: str(30 * 86_400_000)}, "request progress and completion"),
    TopicSpec(
        REQUEST_CANCELLATIONS,
        {RETENTION: str(7 * 86_400_000)},
        "cancelled requests (JSON), read by the planner and downloader",
    ),
)


def topic_configs(spec: TopicSpec, settings: Settings) -> dict[str, str]:
    """The configs ``spec``'s topic is created with: its fixed ones, and those naming a setting
    (``setting:topic_batch_retention_ms``) taken from ``settings``."""
    return {
        k: str(getattr(settings, v.removeprefix("setting:"))) if v.startswith("setting:") else v
        for k, v in spec.configs.items()
    }


def spec_of(name: str) -> TopicSpec:
    """The :class:`TopicSpec` of logical topic ``name``. Raises :class:`KeyError`."""
    for t in TOPICS:
        if t.name == name:
            return t
    raise KeyError(name)


async def ensure_topics(settings: Settings) -> list[str]:
    """Create every missing tickpipe topic; existing topics are left untouched.

    Returns the full names of the topics that were created. Raises
    :class:`aiokafka.errors.KafkaError` when the cluster cannot be reached.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from tickpipe_shared.kafka.security import kafka_client_kwargs

    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=settings.topic(t.name),
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication,
                topic_configs=topic_configs(t, settings),
            )
            for t in TOPICS
            if settings.topic(t.name) not in existing
        ]
        if wanted:
            await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()
