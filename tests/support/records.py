"""A consumed Kafka record as the runtime hands it to a processor, for driving a stage's
``process`` without a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Rec:
    """The parts of :class:`aiokafka.ConsumerRecord` processors read."""

    value: bytes
    offset: int
    topic: str = "validated-batches"
    partition: int = 0
    key: bytes = b"k"
    headers: list[Any] = field(default_factory=list)
