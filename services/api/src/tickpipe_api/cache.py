"""The answer cache: serialized answers of closed, fully stored ranges, in process.

An entry is keyed by the answer's strong ETag, which is derived from the query, the format and
the ingest-log state of every unit the range covers (:func:`etag_of`). Rewriting any of those
units changes its ledger row (``written_at``, ``payload_sha256``…), so the ETag changes and the
old entry is never found again (it ages out). Bounded by entry count and entry size, entries
live ``ttl`` seconds (``TICKPIPE_API_CACHE_*``). Open ranges are never cached.

Known answers: the cache also remembers which request (:func:`request_key`) got which cached
answer, with the instrument and window it covers. While the ledger watch listens
(:mod:`tickpipe_api.ledger_watch`), a repeated request is answered from there without reading
the ledger state again (:mod:`tickpipe_api.serve_cached`); a notification about a unit in the
window forgets the request (:meth:`AnswerCache.forget`), so the next one derives the ETag anew.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cachetools import TTLCache
from starlette.types import Scope

from tickpipe_api.ledger_watch import LedgerChange


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


def request_key(scope: Scope) -> str:
    """What makes two GET requests the same question: scheme, host, path, query string and the
    ``Accept`` header (it may choose the format); never the API key (answers do not depend on
    who asks)."""
    host = accept = b""
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value
        elif name == b"accept":
            accept = value
    return (
        f"{scope.get('scheme', 'http')}://{host.decode('latin-1')}{scope.get('path', '')}"
        f"?{scope.get('query_string', b'').decode('latin-1')}|{accept.decode('latin-1')}"
    )


@dataclass(frozen=True, slots=True)
class KnownAnswer:
    """Which cached answer a request got: its ETag, every header of the 200 answer (lower-case
    names, content type and length included), the ``route`` and ``fmt`` it is counted under, and
    what it covers: ``instrument`` over ``[lo_ms, hi_ms)`` (epoch ms UTC)."""

    etag: str
    headers: tuple[tuple[bytes, bytes], ...]
    route: str
    fmt: str
    instrument: str
    lo_ms: int
    hi_ms: int


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
        self._known: TTLCache[str, KnownAnswer] = TTLCache(max(1, max_entries), max(ttl_s, 1e-9))

    def get(self, etag: str) -> CachedAnswer | None:
        """The answer cached under ``etag``."""
        return self._entries.get(etag) if self.enabled else None

    def put(self, etag: str, answer: CachedAnswer) -> bool:
        """Cache ``answer`` unless the cache is off or the answer too large; True if cached."""
        if not self.enabled or len(answer.body) > self.max_entry_bytes:
            return False
        self._entries[etag] = answer
        return True

    def remember(self, request: str, known: KnownAnswer) -> None:
        """Remember that ``request`` is answered by the cached answer ``known.etag``. Call it
        only while nothing changed since the answer's ledger state was read
        (:meth:`tickpipe_api.ledger_watch.LedgerWatch.current`)."""
        if self.enabled and known.etag in self._entries:
            self._known[request] = known

    def known(self, request: str) -> tuple[KnownAnswer, CachedAnswer] | None:
        """The answer remembered for ``request`` and its body, while both are still cached."""
        if not self.enabled:
            return None
        known = self._known.get(request)
        if known is None:
            return None
        answer = self._entries.get(known.etag)
        if answer is None:
            self._known.pop(request, None)
            return None
        return known, answer

    def forget(self, change: LedgerChange) -> int:
        """Forget every remembered request whose answer ``change`` may alter; how many.
        (The answers themselves stay, under their ETags: a request whose ledger state turns out
        unchanged finds them again.)"""
        if change.instrument is None:
            n = len(self._known)
            self._known.clear()
            return n
        gone = [r for r, k in self._known.items() if change.touches(k.instrument, k.lo_ms, k.hi_ms)]
        for r in gone:
            self._known.pop(r, None)
        return len(gone)

    def __len__(self) -> int:
        return len(self._entries)
