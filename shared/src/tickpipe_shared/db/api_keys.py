"""API keys of the Market Data API (table ``api_keys``, migration 0005).

A key is ``tp_<key_id>_<secret>``: ``key_id`` 16 hex characters (64 random bits, public: it
finds the row and may be shown in listings), ``secret`` 32 URL-safe characters (192 random
bits). Only ``sha256(key)`` is stored; :func:`verify` looks the row up by ``key_id`` and compares
the hashes with :func:`hmac.compare_digest` (constant time). The key itself is returned once by
:func:`create_key` and never stored or logged.

Scopes: ``read`` (ticks, candles, coverage, instruments, request status), ``request`` (publish
fetch requests), ``admin`` (everything).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

SCOPES = ("read", "request", "admin")
_KEY = re.compile(r"^tp_([0-9a-f]{16})_([A-Za-z0-9_-]{32,})$")


class ApiKeyError(ValueError):
    """A key name, scope or rate limit that cannot be stored; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key (without the key itself): id, name, scopes, per-key rate limit
    (requests per second; ``None`` = the API's default), created / last-used / revoked times."""

    key_id: str
    name: str
    scopes: tuple[str, ...]
    rate_limit: float | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """True when the key has ``scope`` (``admin`` has every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (times ISO-8601 UTC)."""

        def iso(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat().replace("+00:00", "Z")

        return {
            "key_id": self.key_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "rate_limit": self.rate_limit,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
        }


def hash_key(key: str) -> str:
    """sha256 of ``key`` (UTF-8), hex: what ``api_keys.key_hash`` holds."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(key: str) -> str | None:
    """The ``key_id`` part of a well-formed key, else ``None``."""
    m = _KEY.match(key)
    return m.group(1) if m else None


def new_key() -> tuple[str, str]:
    """A fresh random ``(key_id, key)``."""
    key_id = secrets.token_hex(8)
    return key_id, f"tp_{key_id}_{secrets.token_urlsafe(24)}"


def _row(r: asyncpg.Record) -> ApiKey:
    return ApiKey(
        key_id=r["key_id"],
        name=r["name"],
        scopes=tuple(r["scopes"]),
        rate_limit=r["rate_limit"],
        created_at=r["created_at"],
        last_used_at=r["last_used_at"],
        revoked_at=r["revoked_at"],
    )


_COLUMNS = "key_id, name, scopes, rate_limit, created_at, last_used_at, revoked_at"


async def create_key(
    conn: asyncpg.Connection,
    name: str,
    scopes: Sequence[str],
    rate_limit: float | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key named ``name`` with ``scopes``; returns the stored row and the key (to
    be shown once). Raises :class:`ApiKeyError` for an empty name, no or an unknown scope, or a
    non-positive rate limit."""
    if not name.strip():
        raise ApiKeyError("the key needs a name")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ApiKeyError(f"scopes must be some of {', '.join(SCOPES)}; got {list(scopes)}")
    if rate_limit is not None and rate_limit <= 0:
        raise ApiKeyError(f"rate limit must be > 0 requests/s, got {rate_limit}")
    key_id, key = new_key()
    row = await conn.fetchrow(
        f"""INSERT INTO api_keys (key_id, key_hash, name, scopes, rate_limit)
            VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
        key_id,
        hash_key(key),
        name.strip(),
        list(dict.fromkeys(scopes)),
        rate_limit,
    )
    return _row(row), key


async def list_keys(conn: asyncpg.Connection, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first (revoked ones too unless ``include_revoked`` is false)."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY created_at",
        include_revoked,
    )
    return [_row(r) for r in rows]


async def revoke_key(conn: asyncpg.Connection, key_id_or_name: str) -> list[ApiKey]:
    """Revoke the active key(s) with this ``key_id`` or name; returns those revoked (empty when
    none matched)."""
    rows = await conn.fetch(
        f"""UPDATE api_keys SET revoked_at = now()
            WHERE (key_id = $1 OR name = $1) AND revoked_at IS NULL RETURNING {_COLUMNS}""",
        key_id_or_name,
    )
    return [_row(r) for r in rows]


async def verify(conn: asyncpg.Connection | asyncpg.Pool, key: str) -> ApiKey | None:
    """The stored row of ``key`` when it is well formed and its hash matches (compared in
    constant time), revoked or not (check :attr:`ApiKey.active`); ``None`` otherwise."""
    key_id = key_id_of(key)
    if key_id is None:
        return None
    r = await conn.fetchrow(f"SELECT key_hash, {_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)
    if r is None or not hmac.compare_digest(str(r["key_hash"]), hash_key(key)):
        return None
    return _row(r)


async def touch(conn: asyncpg.Connection | asyncpg.Pool, key_id: str) -> None:
    """Set ``last_used_at`` of ``key_id`` to now."""
    await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE key_id = $1", key_id)
