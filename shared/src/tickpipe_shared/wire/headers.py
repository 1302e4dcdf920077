"""Kafka record headers: ``tp-`` prefixed, UTF-8 values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Headers = list[tuple[str, bytes]]


def encode_headers(values: Mapping[str, str | int | None]) -> Headers:
    """``{"source": "x"}`` → ``[("tp-source", b"x")]``; ``None`` values are left out."""
    return [(f"tp-{k}", str(v).encode()) for k, v in values.items() if v is not None]


def decode_headers(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Kafka headers → ``{"source": "x"}`` for the ``tp-`` ones (undecodable bytes replaced)."""
    out: dict[str, str] = {}
    for k, v in headers or ():
        if k.startswith("tp-"):
            out[k[3:]] = v.decode("utf-8", "replace") if v is not None else ""
    return out
