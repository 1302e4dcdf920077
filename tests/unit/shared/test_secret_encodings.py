"""``support.secrets``: the log scan of the secure-stack test finds a secret however encoded."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest
from support.secrets import encodings, find_secrets

SECRET = "pa$$ word/+é"


@pytest.mark.parametrize(
    "leak",
    [
        SECRET,
        quote(SECRET, safe=""),
        json.dumps({"password": SECRET}),
        SECRET.encode().hex(),
        base64.b64encode(SECRET.encode()).decode(),
        # Inside a longer encoded text, at each of the three alignments.
        *(base64.b64encode(f"{p}:{SECRET}".encode()).decode() for p in ("u", "us", "use")),
        base64.urlsafe_b64encode(f"user:{SECRET}".encode()).decode(),
    ],
)
def test_a_leak_is_found(leak: str) -> None:
    logs = {"svc.log": f'{{"msg": "connecting", "detail": "{leak}"}}\n'}
    assert find_secrets(logs, {"db password": SECRET}), leak


def test_redacted_logs_are_clean() -> None:
    logs = {"a.log": '{"msg": "connect", "dsn": "postgresql://app:***@db/x"}', "b.log": ""}
    assert find_secrets(logs, {"db password": SECRET}) == []


def test_every_encoding_is_named() -> None:
    names = set(encodings(SECRET))
    assert {"raw", "url-quoted", "json", "hex", "base64", "base64url"} <= names
