"""``tickpipe topics``: create tickpipe's Kafka topics (the setup Job, compose's one-shot)."""

from __future__ import annotations

import asyncio

import typer
from aiokafka.errors import KafkaError
from tickpipe_shared.config import get_settings
from tickpipe_shared.kafka.topics import TOPICS, ensure_topics

from tickpipe_cli.output import console, err

app = typer.Typer(help="Kafka topics.")


@app.command("create")
def create() -> None:
    """Create the missing tickpipe topics; existing ones are left untouched (idempotent).

    Partitions and replication come from TICKPIPE_TOPIC_PARTITIONS / TICKPIPE_TOPIC_REPLICATION,
    names from TICKPIPE_TOPIC_PREFIX. Exits 1 when Kafka cannot be reached or refuses.
    """
    settings = get_settings()
    try:
        created = asyncio.run(ensure_topics(settings))
    except KafkaError as exc:
        err.print(f"[red]cannot create topics on {settings.kafka_bootstrap}: {exc!r}[/red]")
        raise typer.Exit(1) from exc
    existing = len(TOPICS) - len(created)
    console.print(
        f"created: {', '.join(created) or 'none'}; already there: {existing} "
        f"({settings.topic_partitions} partitions, replication {settings.topic_replication})"
    )
