"""The answer cache: serialized answers of closed, fully stored ranges, in process.

An entry is keyed by the answer's strong ETag, which is derived from the query, the format and
the ingest-log state of every unit the range covers (:func:`etag_of`). Rewriting any of those
units changes its ledger row (``written_at``, ``payload_sha256``…), so the ETag changes and the
old entry is never found again (it ages out). Bounded by entry count and entry size, entries
live ``ttl`` seconds (``TICKPIPE_API_CACHE_*``). Open ranges are never cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cachetools import TTLCache


def etag_of(query: str, fmt: str, ledger_digest: str) -> str:
    """A strong ETag (quoted) for ``query`` answered in ``fmt`` over units in ``ledger_digest``."""
    h = hashlib.sha256(f"{query}\n{fmt}\n{ledger_digest}".encode()).hexdigest()[:32]
    return f'"{h}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """True when an ``If-None-Match`` header names ``etag`` (or is ``*``)."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A serialized answer: body, media type, extra headers and the rows it holds."""

    body: bytes
    media_type: str
    headers: tuple[tuple[str, str], ...]
    rows: int


class AnswerCache:
    """TTL + max-entries cache of :class:`CachedAnswer` by ETag."""

    def __init__(self, max_entries: int, ttl_s: float, max_entry_bytes: int) -> None:
        self.max_entry_bytes = max_entry_bytes
        self.enabled = max_entries > 0 and ttl_s > 0
        self._entries: TTLCache[str, CachedAnswer] = TTLCache(max(1, max_entries), max(ttl_s, 1e-9))

    def get(self, etag: str) -> CachedAnswer | None:
        """The answer cached under ``etag``."""
        return self._entries.get(etag) if self.enabled else None

    def put(self, etag: str, answer: CachedAnswer) -> bool:
        """Cache ``answer`` unless the cache is off or the answer too large; True if cached."""
        if not self.enabled or len(answer.body) > self.max_entry_bytes:
            return False
        self._entries[etag] = answer
        return True

    def __len__(self) -> int:
        return len(self._entries)
