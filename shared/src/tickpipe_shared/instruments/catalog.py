"""The instrument catalog: what an instrument is and when it trades, from the sources' metadata.

The one place that downloads instrument metadata (Dukascopy's JSON API: the instrument list
``instruments`` and each instrument's detail ``instruments/<CODE>``, ``../shared/docs/
dukascopy.md`` §3.4) and decides an instrument's trading schedule. The fetcher's planner and the
validator both ask here.

**One cache** (``TICKPIPE_INSTRUMENT_CACHE_DIR``: ``dukascopy-instruments.json`` and
``details/<CODE>.json``): a copy younger than ``TICKPIPE_INSTRUMENT_CACHE_TTL_S`` is used
without asking the API; an older one is refreshed, and kept when the API is unreachable or
answers something unusable (an answer is parsed before it replaces a cached copy, and written
through a temporary file so a reader never sees half of it).

**One retry policy**: a download that fails falls back to the cache; what neither has is asked
again no sooner than :data:`RETRY_AFTER_S` later by the long-lived readers
(:class:`InstrumentDetails`, and the planner and validator for a slow detail or registry).

**When it trades** (:func:`trading_schedule`): the schedule and holidays of the instrument's
detail when it has a usable one, else :func:`fallback_schedule`: around the clock
(:data:`~tickpipe_shared.instruments.schedule.ALWAYS_OPEN`) for the
:data:`~tickpipe_shared.instruments.classes.ALWAYS_OPEN_CLASSES`, the FX week for currency pairs
(:func:`~tickpipe_shared.instruments.schedule.default_schedule_for`), unknown (``None``)
otherwise.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import structlog

from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.classes import ALWAYS_OPEN_CLASSES
from tickpipe_shared.instruments.details import InstrumentDetail
from tickpipe_shared.instruments.registry import InstrumentRegistry
from tickpipe_shared.instruments.schedule import ALWAYS_OPEN, TradingSchedule, default_schedule_for

log = structlog.get_logger()

T = TypeVar("T")

#: Shortest wait, seconds, before metadata that could not be had is asked for again.
RETRY_AFTER_S = 300.0
#: Total timeout of one download of the instrument list / of one detail, seconds.
REGISTRY_TIMEOUT_S = 60.0
DETAIL_TIMEOUT_S = 30.0


class RegistryUnavailableError(RuntimeError):
    """Instrument metadata could be neither downloaded nor read from the cache."""


# --- when it trades ---------------------------------------------------------------------------


def fallback_schedule(instrument: str, asset_class: str) -> TradingSchedule | None:
    """The schedule to assume without an instrument detail: :data:`ALWAYS_OPEN` for the
    :data:`ALWAYS_OPEN_CLASSES`, else :func:`default_schedule_for` (FX week for currency pairs,
    ``None`` otherwise)."""
    if asset_class in ALWAYS_OPEN_CLASSES:
        return ALWAYS_OPEN
    return default_schedule_for(instrument)


def trading_schedule(
    instrument: str, asset_class: str, detail: InstrumentDetail | None = None
) -> TradingSchedule | None:
    """The trading schedule of ``instrument`` (canonical name) of ``asset_class``: its
    ``detail``'s when that has a usable one, else :func:`fallback_schedule`."""
    if detail is not None and detail.schedule is not None:
        return detail.schedule
    return fallback_schedule(instrument, asset_class)


# --- downloads through the cache --------------------------------------------------------------


async def _download(
    url: str, session: aiohttp.ClientSession | None, timeout_s: float = REGISTRY_TIMEOUT_S
) -> dict[str, Any]:
    """The JSON object at ``url``, through ``session`` (or a new one with a ``timeout_s`` total
    timeout). Raises :class:`ValueError` for a non-200 status or a body that is not a JSON
    object, :class:`aiohttp.ClientError` / :class:`TimeoutError` for network failures."""
    own = session is None
    s = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        async with s.get(url) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} from {url}")
            data = await resp.json(content_type=None)
            if not isinstance(data, dict):
                raise ValueError(f"{url} did not return a JSON object")
            return data
    finally:
        if own:
            await s.close()


def _is_fresh(cache: Path, ttl_s: float) -> bool:
    return cache.exists() and time.time() - cache.stat().st_mtime < ttl_s


def _write_cache(cache: Path, data: Any) -> None:
    """Replace the cached copy atomically (through a temporary file in the same directory)."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    tmp.replace(cache)


def _read_cache(cache: Path) -> Any:
    """The cached JSON, or None when there is no copy. Raises :class:`ValueError` for one that
    is not JSON."""
    return json.loads(cache.read_text()) if cache.exists() else None


async def _through_cache(
    what: str,
    url: str | None,
    cache: Path,
    ttl_s: float,
    parse: Callable[[Any], T],
    download: Callable[[str], Any],
) -> T | None:
    """``parse`` of the cached copy when it is fresh; else of a new download (then cached),
    falling back to the stale copy; ``None`` when neither is usable. ``what`` names it in logs."""
    if url and not _is_fresh(cache, ttl_s):
        try:
            data = await download(url)
            # Parse before caching: an unusable answer must not replace a good cached copy.
            value = parse(data)
            _write_cache(cache, data)
            return value
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning(f"{what} download failed", url=url, error=str(e))
    try:
        cached = _read_cache(cache)
        return None if cached is None else parse(cached)
    except (ValueError, AttributeError) as e:
        log.warning(f"{what} cache unusable", path=str(cache), error=str(e))
    return None


# --- what it is: the instrument list ----------------------------------------------------------


def registry_cache_file(settings: Settings) -> Path:
    """Where the instrument list is cached."""
    return Path(settings.instrument_cache_dir) / "dukascopy-instruments.json"


async def load_registry(
    settings: Settings, session: aiohttp.ClientSession | None = None
) -> InstrumentRegistry:
    """The registry from ``{TICKPIPE_DUKASCOPY_JSON_URL}/instruments``, through the cache.

    Raises :class:`RegistryUnavailableError` when the URL is not configured or unreachable and
    no cached copy exists.
    """
    cache = registry_cache_file(settings)
    base = settings.dukascopy_json_url
    registry = await _through_cache(
        "instrument metadata",
        base.rstrip("/") + "/instruments" if base else None,
        cache,
        settings.instrument_cache_ttl_s,
        lambda data: InstrumentRegistry.from_instruments_response(
            data, settings.bi5_scale_overrides
        ),
        lambda url: _download(url, session),
    )
    if registry is None:
        raise RegistryUnavailableError(
            "no instrument metadata: set TICKPIPE_DUKASCOPY_JSON_URL to the JSON API "
            f"(…/v1) so it can be downloaded, or provide {cache}"
        )
    return registry


async def probe_registry(settings: Settings, timeout_s: float = 15.0) -> int:
    """Download the instrument list from ``{TICKPIPE_DUKASCOPY_JSON_URL}/instruments`` now,
    bypassing the cache, within ``timeout_s`` seconds in total; the number of instruments.

    Raises :class:`RegistryUnavailableError` with a one-line reason (host not resolved,
    refused, timed out, HTTP status, unusable answer) when it cannot.
    """
    base = settings.dukascopy_json_url
    if not base:
        raise RegistryUnavailableError("the Dukascopy JSON API is disabled (empty URL)")
    url = base.rstrip("/") + "/instruments"
    try:
        data = await _download(url, None, timeout_s)
        registry = InstrumentRegistry.from_instruments_response(data, settings.bi5_scale_overrides)
    except TimeoutError:
        raise RegistryUnavailableError(f"no answer from {url} within {timeout_s:g} s") from None
    except (aiohttp.ClientError, ValueError, AttributeError, KeyError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise RegistryUnavailableError(f"cannot reach {url}: {reason}") from None
    return len(registry)


# --- what it is and when it trades: instrument details ----------------------------------------


class InstrumentDetails:
    """Loads instrument details per JSON API code (``EUR-USD``), through the cache.

    :meth:`get` asks the cache (and the API) at most once per TTL for a code; a detail it could
    not get is asked again after a backoff (``instrument_detail_retry_s``, doubling per failure
    up to ``instrument_detail_retry_max_s``). Concurrent calls for the same code share nothing
    but the cache file; a duplicate download is harmless. ``session``: an optional shared
    :class:`aiohttp.ClientSession` (tests pass one to a local server).
    """

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None):
        self.settings = settings
        self._session = session
        self._memory: dict[str, tuple[float, InstrumentDetail | None]] = {}
        #: Per code without a detail: consecutive failed lookups (the retry backoff doubles).
        self._failures: dict[str, int] = {}

    def _cache_file(self, code: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in code)
        return Path(self.settings.instrument_cache_dir) / "details" / f"{safe}.json"

    async def get(self, code: str) -> InstrumentDetail | None:
        """The detail of ``code`` (download, then cache), or ``None`` when neither the API nor
        the cache has it."""
        now = time.time()
        ttl = self.settings.instrument_cache_ttl_s
        hit = self._memory.get(code)
        if hit is not None and now - hit[0] < self._keep_s(code, hit[1], ttl):
            return hit[1]
        base = self.settings.dukascopy_json_url
        detail = await _through_cache(
            "instrument detail",
            f"{base.rstrip('/')}/instruments/{quote(code, safe='')}" if base else None,
            self._cache_file(code),
            ttl,
            lambda data: InstrumentDetail.parse(code, data),
            lambda url: _download(url, self._session, DETAIL_TIMEOUT_S),
        )
        self._memory[code] = (now, detail)
        if detail is None:
            self._failures[code] = self._failures.get(code, 0) + 1
            log.warning(
                "instrument detail unavailable; asked again later",
                code=code,
                retry_in_s=self._keep_s(code, None, ttl),
            )
        else:
            self._failures.pop(code, None)
        return detail

    def _keep_s(self, code: str, detail: InstrumentDetail | None, ttl: float) -> float:
        """How long a remembered answer is used: the TTL for a detail; for none, the retry
        backoff (``instrument_detail_retry_s`` doubling per failure, capped by
        ``instrument_detail_retry_max_s`` and the TTL)."""
        if detail is not None:
            return ttl
        failures = max(1, self._failures.get(code, 1))
        backoff = self.settings.instrument_detail_retry_s * 2.0 ** (failures - 1)
        return float(min(backoff, self.settings.instrument_detail_retry_max_s, ttl))
