"""Replay: rewind a stage's consumer group so it reprocesses records already in Kafka.

Raw payloads are retained forever, so after a fix in the decoder (or the validator, or the
writer) the data can be rebuilt without downloading anything: stop the stage's replicas, rewind
its consumer group to the earliest offset (or to a time), start them again. The writer replaces
whole units, so a replay never duplicates rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.security import kafka_client_kwargs
from tickpipe_shared.kafka.topics import DECODED_BATCHES, RAW_PAYLOADS, VALIDATED_BATCHES
from tickpipe_shared.units import dt_to_ms

#: Stage → the topic it consumes. Its consumer group is ``Settings.group(stage)``.
STAGE_INPUTS = {
    "decoder": RAW_PAYLOADS,
    "validator": DECODED_BATCHES,
    "writer": VALIDATED_BATCHES,
}


class ReplayError(RuntimeError):
    """A replay that cannot be done safely; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Rewind:
    """Where one partition's committed offset moved."""

    partition: int
    old: int | None
    new: int


async def _inspect(settings: Settings, group: str, topic: str) -> tuple[int, list[int]]:
    """Active members of ``group`` and the partitions of ``topic``."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        groups = await admin.describe_consumer_groups([group])
        # Each described group is (error_code, group, state, protocol_type, protocol, members).
        members = sum(len(g[5]) for response in groups for g in response.groups)
        described = await admin.describe_topics([topic])
        partitions = [
            p["partition"] for t in described if t["error_code"] == 0 for p in t["partitions"]
        ]
        return members, sorted(partitions)
    finally:
        await admin.close()


async def rewind(settings: Settings, stage: str, since: datetime | None) -> list[Rewind]:
    """Rewind ``stage``'s consumer group on its input topic to the first record at or after
    ``since`` (UTC), or to the earliest retained record when ``since`` is None.

    Raises :class:`ReplayError` for an unknown stage, for a ``since`` older than what the input
    topic still holds (records before its oldest were deleted by retention), or while the group
    has active members
    (Kafka only accepts offsets for a group nobody consumes in; it would also be overwritten
    by the running replicas' next commit).
    """
    if stage not in STAGE_INPUTS:
        raise ReplayError(f"unknown stage {stage!r}; one of: {', '.join(STAGE_INPUTS)}")
    group, topic = settings.group(stage), settings.topic(STAGE_INPUTS[stage])
    members, partitions = await _inspect(settings, group, topic)
    if members:
        raise ReplayError(
            f"consumer group {group!r} has {members} active member(s): stop every {stage} "
            f"replica first (local stack: kill the {stage} process or 'tickpipe-stack down "
            f"--keep-infra'; Kubernetes: kubectl scale deployment/tickpipe-{stage} --replicas=0)"
        )
    if not partitions:
        raise ReplayError(f"topic {topic!r} does not exist")
    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        if since is None:
            targets = await consumer.beginning_offsets(tps)
        else:
            await _refuse_if_expired(consumer, tps, STAGE_INPUTS[stage], stage, since, settings)
            ends = await consumer.end_offsets(tps)
            found = await consumer.offsets_for_times({tp: dt_to_ms(since) for tp in tps})
            targets = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
        old = {tp: await consumer.committed(tp) for tp in tps}
        await consumer.commit(dict(targets))
        return [Rewind(tp.partition, old[tp], targets[tp]) for tp in tps]
    finally:
        await consumer.stop()


async def _refuse_if_expired(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    name: str,
    stage: str,
    since: datetime,
    settings: Settings,
) -> None:
    """Raise :class:`ReplayError` when a partition of the input topic has lost records (its log
    start offset is above 0) and its oldest retained record is younger than ``since``: a
    replay from ``since`` would silently skip the deleted ones."""
    beginning = await consumer.beginning_offsets(tps)
    oldest = await consumer.offsets_for_times({tp: 0 for tp in tps})
    for tp in tps:
        first = oldest.get(tp)
        if beginning[tp] == 0 or first is None or first.timestamp <= dt_to_ms(since):
            continue
        held = datetime.fromtimestamp(first.timestamp / 1000, UTC)
        retention = (
            "retention.ms -1" if name == RAW_PAYLOADS else
            f"TICKPIPE_TOPIC_BATCH_RETENTION_MS={settings.topic_batch_retention_ms} when created"
        )  # fmt: skip
        instead = (
            "request the range again to download it (tickpipe request … --skip-existing does "
            "not skip failed or missing units)"
            if stage == "decoder"
            else f"replay the decoder instead (tickpipe replay decoder --since "
            f"{since:%Y-%m-%dT%H:%MZ}): it rebuilds from raw-payloads, which are kept forever"
        )
        raise ReplayError(
            f"cannot replay {stage} from {since:%Y-%m-%dT%H:%M:%SZ}: {name} partition "
            f"{tp.partition} holds records only from {held:%Y-%m-%dT%H:%M:%SZ} ({retention}); "
            f"{instead}"
        )
