"""Which trading schedule the ``gap`` rule uses for each instrument, without I/O per batch.

A :class:`ScheduleProvider` is asked once per polled batch of records to :meth:`prepare` the
instruments it has not seen yet (I/O allowed, bounded in time, never raising), then once per
batch for :meth:`schedule_for` (no I/O). Two providers:

* :class:`StaticSchedules` (the default, and what tests inject): no I/O at all. An instrument
  gets the schedule of :func:`fallback_schedule`, or of a name → schedule function.
* :class:`DetailSchedules` (the validator service): for Dukascopy sources (``meta.unit.source``
  starting with ``dukascopy``), the schedule and holidays of the instrument's JSON API detail
  (``instruments/<CODE>``, ``../shared/docs/dukascopy.md`` §3.4) through the instrument
  catalog (:mod:`tickpipe_shared.instruments.catalog`, cached on disk). The code is
  ``meta.source_code`` for ``dukascopy-json`` and the registry's ``json_code`` for
  ``dukascopy-bi5``. What the schedule is — the detail's, else the catalog's
  :func:`~tickpipe_shared.instruments.catalog.fallback_schedule` (around the clock for
  synthetic indices and crypto, the FX week for currency pairs, ``None``: unknown, the ``gap``
  rule inactive, for anything else) — is the catalog's rule; this module only decides when to
  ask, so that no batch waits on I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.catalog import (
    RETRY_AFTER_S,
    InstrumentDetails,
    RegistryUnavailableError,
    fallback_schedule,
    load_registry,
    trading_schedule,
)
from tickpipe_shared.instruments.details import InstrumentDetail
from tickpipe_shared.instruments.registry import InstrumentRegistry, UnknownInstrumentError
from tickpipe_shared.instruments.schedule import TradingSchedule
from tickpipe_shared.wire.batch import BatchMeta

log = structlog.get_logger()

#: Seconds :meth:`DetailSchedules.prepare` waits for the schedules of new instruments.
DETAIL_TIMEOUT_S = 5.0
#: Shortest interval between two loads of one instrument's schedule.
MIN_REFRESH_S = RETRY_AFTER_S

#: Instrument (canonical name) → schedule, the callable form of a static provider.
NameLookup = Callable[[str], TradingSchedule | None]
#: What loads the instrument registry (``load_registry``, or a fake in tests).
RegistryLoader = Callable[[Settings], Awaitable[InstrumentRegistry]]


def is_dukascopy(meta: BatchMeta) -> bool:
    """True for batches from a Dukascopy source (JSON API or legacy ``.bi5``)."""
    return meta.unit.source.startswith("dukascopy")


@runtime_checkable
class ScheduleProvider(Protocol):
    """Gives the ``gap`` rule each batch's trading schedule."""

    async def prepare(self, metas: Iterable[BatchMeta]) -> None:
        """Get ready to answer :meth:`schedule_for` for these batches. May do I/O; must return
        within a bounded time and never raise."""

    def schedule_for(self, meta: BatchMeta) -> TradingSchedule | None:
        """The schedule of the batch's instrument (``None``: unknown). No I/O."""


class StaticSchedules:
    """A provider without I/O: ``lookup(meta.unit.instrument)`` when given, else
    :func:`fallback_schedule` of the batch's instrument and asset class."""

    def __init__(self, lookup: NameLookup | None = None) -> None:
        self.lookup = lookup

    async def prepare(self, metas: Iterable[BatchMeta]) -> None:
        """Nothing to load."""

    def schedule_for(self, meta: BatchMeta) -> TradingSchedule | None:
        """See the class docstring."""
        if self.lookup is not None:
            return self.lookup(meta.unit.instrument)
        return fallback_schedule(meta.unit.instrument, meta.asset_class)


class DetailSource(Protocol):
    """Where instrument details come from (:class:`InstrumentDetails`, or a fake in tests)."""

    async def get(self, code: str) -> InstrumentDetail | None:
        """The detail of the JSON API ``code`` (``EUR-USD``), or ``None`` when unavailable."""
        ...


@dataclass(slots=True)
class _Entry:
    """One Dukascopy instrument's schedule in force, where it came from, when it was loaded
    (monotonic seconds), and the load in flight (``None``: none)."""

    schedule: TradingSchedule | None
    origin: str
    loaded_at: float
    task: asyncio.Task[tuple[TradingSchedule | None, str]] | None = None


class DetailSchedules:
    """Schedules of Dukascopy instruments from their JSON API details (see the module
    docstring); every other source gets :func:`fallback_schedule`.

    :meth:`prepare` loads each Dukascopy instrument the first time a batch of it is seen, all
    new instruments of a poll concurrently, waiting at most ``timeout_s`` seconds. A load that
    is slower goes on in the background while the instrument uses :func:`fallback_schedule`;
    when it finishes, later batches get its schedule. A load that fails (no detail, instrument
    list unavailable, unknown instrument) also falls back. Each fallback is logged once per
    instrument and reason. Loaded schedules are reloaded in the background after ``refresh_s``
    (default: ``TICKPIPE_INSTRUMENT_CACHE_TTL_S``, at least :data:`MIN_REFRESH_S`), keeping the
    old one meanwhile, so new holidays arrive without a restart.

    ``details``, ``registry_loader`` and ``clock`` (monotonic seconds) are injectable for tests.
    """

    def __init__(
        self,
        settings: Settings,
        details: DetailSource | None = None,
        registry_loader: RegistryLoader = load_registry,
        *,
        timeout_s: float = DETAIL_TIMEOUT_S,
        refresh_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.details: DetailSource = details if details is not None else InstrumentDetails(settings)
        self.timeout_s = timeout_s
        if refresh_s is None:
            refresh_s = max(settings.instrument_cache_ttl_s, MIN_REFRESH_S)
        self.refresh_s = refresh_s
        self._load_registry = registry_loader
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._registry: InstrumentRegistry | None = None
        self._registry_tried_at: float | None = None
        self._registry_lock = asyncio.Lock()
        self._logged: set[tuple[str, str]] = set()

    def schedule_for(self, meta: BatchMeta) -> TradingSchedule | None:
        """The loaded schedule of a Dukascopy instrument (the fallback until it is loaded);
        :func:`fallback_schedule` for other sources. No I/O."""
        entry = self._entries.get(meta.unit.instrument) if is_dukascopy(meta) else None
        if entry is None:
            return fallback_schedule(meta.unit.instrument, meta.asset_class)
        return entry.schedule

    def origin_of(self, instrument: str) -> str | None:
        """Where the schedule in force for a Dukascopy instrument came from (``detail EUR-USD``,
        ``fallback``…), or ``None`` when it was never prepared."""
        entry = self._entries.get(instrument)
        return None if entry is None else entry.origin

    async def prepare(self, metas: Iterable[BatchMeta]) -> None:
        """Load the schedules of Dukascopy instruments seen for the first time (waiting at most
        ``timeout_s``) and start background reloads of old ones. Never raises."""
        now = self._clock()
        new: dict[str, asyncio.Task[tuple[TradingSchedule | None, str]]] = {}
        for meta in metas:
            if not is_dukascopy(meta) or meta.unit.instrument in new:
                continue
            entry = self._entries.get(meta.unit.instrument)
            if entry is None:
                task = self._start(meta)
                fallback = fallback_schedule(meta.unit.instrument, meta.asset_class)
                self._entries[meta.unit.instrument] = _Entry(fallback, "fallback", now, task)
                new[meta.unit.instrument] = task
            elif entry.task is None and now - entry.loaded_at >= self.refresh_s:
                entry.task = self._start(meta)
        if not new:
            return
        done, _ = await asyncio.wait(new.values(), timeout=self.timeout_s)
        for instrument, task in new.items():
            if task in done:
                self._finish(instrument, task)
            else:
                self._log_once(
                    instrument,
                    "timeout",
                    "trading schedule not loaded in time; using the fallback until it is",
                    timeout_s=self.timeout_s,
                )

    def _start(self, meta: BatchMeta) -> asyncio.Task[tuple[TradingSchedule | None, str]]:
        task = asyncio.create_task(self._resolve(meta), name=f"schedule {meta.unit.instrument}")
        task.add_done_callback(lambda t: self._finish(meta.unit.instrument, t))
        return task

    def _finish(
        self, instrument: str, task: asyncio.Task[tuple[TradingSchedule | None, str]]
    ) -> None:
        """Install a finished load's result (once: the done callback and :meth:`prepare` may
        both call this)."""
        entry = self._entries.get(instrument)
        if entry is None or entry.task is not task:
            return
        entry.task = None
        entry.loaded_at = self._clock()
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._log_once(
                instrument,
                f"error {type(error).__name__}",
                "trading schedule could not be loaded; using the fallback",
                error=str(error),
            )
            return
        schedule, origin = task.result()
        if origin != entry.origin:
            log.info("trading schedule in force", instrument=instrument, origin=origin)
        entry.schedule, entry.origin = schedule, origin

    async def _resolve(self, meta: BatchMeta) -> tuple[TradingSchedule | None, str]:
        """The instrument's schedule and its origin (``detail <CODE>`` or ``fallback``)."""
        code, registry_class = await self._code_of(meta)
        detail = await self.details.get(code) if code else None
        detail_class = detail.asset_class if detail is not None else ""
        asset_class = meta.asset_class or detail_class or registry_class
        schedule = trading_schedule(meta.unit.instrument, asset_class, detail)
        if detail is not None and detail.schedule is not None:
            return schedule, f"detail {code}"
        if code:
            why = "no detail" if detail is None else "detail without a usable schedule"
            self._log_once(
                meta.unit.instrument, why, f"instrument {why}; using the fallback", code=code
            )
        return schedule, "fallback"

    async def _code_of(self, meta: BatchMeta) -> tuple[str | None, str]:
        """The instrument's JSON API code (``None``: unknown) and its asset class from the
        registry (``""`` when not looked up)."""
        if meta.unit.source == "dukascopy-json" and meta.source_code:
            return meta.source_code, ""
        registry = await self._registry_now()
        if registry is None:
            return None, ""
        try:
            instrument = registry.get(meta.unit.instrument)
        except UnknownInstrumentError as e:
            self._log_once(meta.unit.instrument, "unknown", "not in the registry", error=str(e))
            return None, ""
        return instrument.json_code, instrument.asset_class

    async def _registry_now(self) -> InstrumentRegistry | None:
        """The instrument registry, loaded at first use and reloaded after ``refresh_s`` (the
        last good one is kept when a reload fails)."""
        async with self._registry_lock:
            now = self._clock()
            tried = self._registry_tried_at
            if tried is None or now - tried >= self.refresh_s:
                self._registry_tried_at = now
                try:
                    self._registry = await self._load_registry(self.settings)
                except (RegistryUnavailableError, OSError) as e:
                    log.warning("instrument registry unavailable for schedules", error=str(e))
            return self._registry

    def _log_once(self, instrument: str, reason: str, event: str, **fields: object) -> None:
        if (instrument, reason) not in self._logged:
            self._logged.add((instrument, reason))
            log.warning(event, instrument=instrument, **fields)
