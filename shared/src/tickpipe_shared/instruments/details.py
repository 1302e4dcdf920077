"""Instrument details from the Dukascopy JSON API (``instruments/<CODE>``), cached on disk.

The detail gives what the instrument list does not: the trading schedule and holidays
(:meth:`~tickpipe_shared.instruments.schedule.TradingSchedule.from_instrument_detail`), the
first available timestamp per period (``histories``), the group (→ asset class).
Spec: ``../shared/docs/dukascopy.md`` §3.4; sample: ``../shared/data/dukascopy/json/instruments/``.

Details are cached in ``TICKPIPE_INSTRUMENT_CACHE_DIR/details/<CODE>.json`` for
``TICKPIPE_INSTRUMENT_CACHE_TTL_S`` seconds; when the API is unreachable a stale copy is used,
and without any copy the caller gets ``None`` and falls back to defaults (a missing schedule
must not stop ingestion).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog

from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.fetch import get_json
from tickpipe_shared.instruments.schedule import ScheduleFormatError, TradingSchedule

log = structlog.get_logger()

#: ``histories[].period`` per unit kind family (ticks, and candles by timeframe unit).
HISTORY_PERIODS = {"ticks": "TICK", "m": "MINUTE", "h": "HOUR", "d": "DAY"}

#: Dukascopy group codes (prefixes) → asset class; ``VCCY`` is "virtual currency".
_GROUP_CLASSES = (
    ("FX_METALS", "metal"),
    ("CMD_METALS", "metal"),
    ("FX", "fx"),
    ("VCCY", "crypto"),
    ("CRYPTO", "crypto"),
    ("IDX", "index"),
    ("CMD", "commodity"),
    ("ETF", "etf"),
    ("BND", "bond"),
    ("STCK", "stock"),
)


@dataclass(frozen=True, slots=True)
class InstrumentDetail:
    """The parts of an instrument detail the pipeline uses.

    ``schedule``: trading schedule with holidays (``None`` when the detail has none or one this
    project cannot parse — logged). ``history_start_ms``: period (``TICK``, ``MINUTE``,
    ``HOUR``, ``DAY``) → first available timestamp, ms since the epoch (UTC). ``group_code``:
    Dukascopy's group (``FX_MAJORS``, ``CRYPTO``…), ``asset_class`` derived from it.
    """

    code: str
    schedule: TradingSchedule | None
    history_start_ms: Mapping[str, int]
    group_code: str
    asset_class: str

    @classmethod
    def parse(cls, code: str, data: Mapping[str, Any]) -> InstrumentDetail:
        """Build from a parsed ``instruments/<CODE>`` body. Never raises for odd content: an
        unparseable schedule becomes ``None`` (logged), odd ``histories`` entries are skipped."""
        schedule: TradingSchedule | None = None
        if data.get("tradeSchedule"):
            try:
                schedule = TradingSchedule.from_instrument_detail(data)
            except ScheduleFormatError as e:
                log.warning("instrument schedule not understood", code=code, error=str(e))
        starts: dict[str, int] = {}
        for h in data.get("histories") or []:
            if isinstance(h, dict) and isinstance(h.get("period"), str):
                t = h.get("from")
                if isinstance(t, int | float) and not isinstance(t, bool):
                    starts[h["period"]] = int(t)
        group = str(data.get("groupCode") or "")
        return cls(code, schedule, starts, group, asset_class_of_group(group))

    def history_start(self, kind: str) -> int | None:
        """First available ms of ``kind`` data (``ticks`` or ``candles:<tf>:<side>``), if known."""
        if kind == "ticks":
            period = HISTORY_PERIODS["ticks"]
        else:
            tf = kind.split(":")[1] if kind.count(":") == 2 else ""
            unit = tf.lstrip("0123456789")
            period = HISTORY_PERIODS.get(unit, "")
        return self.history_start_ms.get(period)


def asset_class_of_group(group_code: str) -> str:
    """``FX_MAJORS`` → ``fx``, ``FX_METALS`` → ``metal``, ``VCCY`` → ``crypto``,
    ``STCK_CFD`` → ``stock``…; ``""`` when the group is unknown."""
    g = group_code.upper()
    for prefix, cls in _GROUP_CLASSES:
        if g.startswith(prefix):
            return cls
    return ""


class InstrumentDetails:
    """Loads and caches instrument details per JSON API code (``EUR-USD``).

    :meth:`get` downloads a detail at most once per TTL (concurrent calls for the same code
    share nothing but the cache file; a duplicate download is harmless). ``session``: an
    optional shared :class:`aiohttp.ClientSession` (tests pass one to a local server).
    """

    def __init__(self, settings: Settings, session: aiohttp.ClientSession | None = None):
        self.settings = settings
        self._session = session
        self._memory: dict[str, tuple[float, InstrumentDetail | None]] = {}

    def _cache_file(self, code: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in code)
        return Path(self.settings.instrument_cache_dir) / "details" / f"{safe}.json"

    async def get(self, code: str) -> InstrumentDetail | None:
        """The detail of ``code`` (download, then cache), or ``None`` when neither the API nor
        the cache has it."""
        now = time.time()
        ttl = self.settings.instrument_cache_ttl_s
        hit = self._memory.get(code)
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        detail = await self._load(code)
        self._memory[code] = (now, detail)
        return detail

    async def _load(self, code: str) -> InstrumentDetail | None:
        cache = self._cache_file(code)
        ttl = self.settings.instrument_cache_ttl_s
        fresh = cache.exists() and time.time() - cache.stat().st_mtime < ttl
        base = self.settings.dukascopy_json_url
        if not fresh and base:
            url = f"{base.rstrip('/')}/instruments/{quote(code, safe='')}"
            try:
                data = await self._download(url)
                detail = InstrumentDetail.parse(code, data)
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(data))
                tmp.replace(cache)
                return detail
            except (aiohttp.ClientError, TimeoutError, ValueError) as e:
                log.warning("instrument detail download failed", code=code, error=str(e))
        if cache.exists():
            try:
                return InstrumentDetail.parse(code, json.loads(cache.read_text()))
            except (ValueError, AttributeError) as e:
                log.warning("instrument detail cache unusable", path=str(cache), error=str(e))
        return None

    async def _download(self, url: str) -> dict[str, Any]:
        return await get_json(url, self._session, timeout_s=30)
