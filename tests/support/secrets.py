"""Finding secrets in logs: a value and the obvious ways it gets encoded on its way there."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from urllib.parse import quote, quote_plus


def _base64_inside(value: bytes) -> set[str]:
    # A value base64-encoded inside a longer text (e.g. "user:password" in a Basic header) shows
    # up at one of three alignments; keep the characters that depend on the value alone.
    found = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value).decode().rstrip("=")
        start = (shift * 4 + 2) // 3  # characters still touched by the padding bytes
        inner = encoded[start:-2] if len(encoded) - start > 8 else ""
        if inner:
            found |= {inner, inner.replace("+", "-").replace("/", "_")}
    return found


def encodings(value: str) -> dict[str, str]:
    """``value`` as it could appear in a log, by encoding name: raw, URL-quoted, JSON-escaped,
    hex, base64 (standard and URL-safe, whole and embedded in a longer text)."""
    raw = value.encode()
    out = {
        "raw": value,
        "url-quoted": quote(value, safe=""),
        "form-quoted": quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "hex": raw.hex(),
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }
    for i, inner in enumerate(sorted(_base64_inside(raw))):
        out[f"base64 embedded #{i}"] = inner
    return out


def find_secrets(logs: Mapping[str, str], secrets: Mapping[str, str]) -> list[str]:
    """Every (secret, encoding, log) where an encoding of a secret occurs in a log's text, as
    ``"<secret name> (<encoding>) in <log name>"``; empty when no secret leaked."""
    hits = []
    for secret_name, value in secrets.items():
        for encoding, text in encodings(value).items():
            hits += [
                f"{secret_name} ({encoding}) in {log_name}"
                for log_name, log in logs.items()
                if text in log
            ]
    return hits
