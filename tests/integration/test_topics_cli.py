"""``tickpipe topics create`` (what the Kubernetes setup Job and compose's ``topics`` one-shot
run) against the local Kafka: creates every topic once, then is a no-op."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from tickpipe_cli import main as cli_main
from tickpipe_shared.config import Settings, get_settings
from tickpipe_shared.kafka.topics import TOPICS
from typer.testing import CliRunner


async def partitions_under_prefix(settings: Settings) -> dict[str, int]:
    """Partition count of each topic whose name starts with the settings' topic prefix (the
    topic configs ensure_topics applies are checked in test_local_stack.py)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(settings.topic_prefix)]
        described = await admin.describe_topics(names)
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


def test_topics_create_is_idempotent(infra: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"tc{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("TICKPIPE_KAFKA_BOOTSTRAP", infra.kafka_bootstrap)
    monkeypatch.setenv("TICKPIPE_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("TICKPIPE_TOPIC_PARTITIONS", "3")
    monkeypatch.setenv("TICKPIPE_TOPIC_REPLICATION", "1")
    get_settings.cache_clear()
    try:
        first = CliRunner().invoke(cli_main.app, ["topics", "create"])
        assert first.exit_code == 0, first.output
        assert "already there: 0" in first.output
        settings = get_settings()
        partitions = asyncio.run(partitions_under_prefix(settings))
        assert partitions == {settings.topic(t.name): 3 for t in TOPICS}

        again = CliRunner().invoke(cli_main.app, ["topics", "create"])
        assert again.exit_code == 0, again.output
        assert "created: none" in again.output
        assert f"already there: {len(TOPICS)}" in again.output
    finally:
        get_settings.cache_clear()


def test_topics_create_fails_clearly_without_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_main.app, ["topics", "create"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot create topics on 127.0.0.1:1" in result.output
