"""Loads the instrument registry from the Dukascopy JSON API, with an on-disk cache.

The cache (``TICKPIPE_INSTRUMENT_CACHE_DIR``) is refreshed after
``TICKPIPE_INSTRUMENT_CACHE_TTL_S`` seconds; when the source is unreachable a stale cache is
used rather than stopping the pipeline.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.fetch import get_json
from tickpipe_shared.instruments.registry import InstrumentRegistry

log = structlog.get_logger()


class RegistryUnavailableError(RuntimeError):
    """Instrument metadata could be neither downloaded nor read from the cache."""


def _cache_file(settings: Settings) -> Path:
    return Path(settings.instrument_cache_dir) / "dukascopy-instruments.json"


async def load_registry(
    settings: Settings, session: aiohttp.ClientSession | None = None
) -> InstrumentRegistry:
    """The registry from ``{TICKPIPE_DUKASCOPY_JSON_URL}/instruments``, cached on disk.

    Raises :class:`RegistryUnavailableError` when the URL is not configured or unreachable and
    no cached copy exists.
    """
    cache = _cache_file(settings)
    fresh = cache.exists() and time.time() - cache.stat().st_mtime < settings.instrument_cache_ttl_s
    if not fresh and settings.dukascopy_json_url:
        url = settings.dukascopy_json_url.rstrip("/") + "/instruments"
        try:
            data = await _download(url, session)
            # Parse before caching: an unusable answer must not replace a good cached copy.
            registry = InstrumentRegistry.from_instruments_response(
                data, settings.bi5_scale_overrides
            )
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data))
            tmp.replace(cache)
            return registry
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            log.warning("instrument metadata download failed", url=url, error=str(e))
    if cache.exists():
        try:
            return InstrumentRegistry.from_instruments_response(
                json.loads(cache.read_text()), settings.bi5_scale_overrides
            )
        except ValueError as e:
            log.warning("instrument metadata cache unusable", path=str(cache), error=str(e))
    raise RegistryUnavailableError(
        "no instrument metadata: set TICKPIPE_DUKASCOPY_JSON_URL to the JSON API "
        f"(…/v1) so it can be downloaded, or provide {cache}"
    )


async def _download(url: str, session: aiohttp.ClientSession | None) -> dict[str, Any]:
    return await get_json(url, session, timeout_s=60)
