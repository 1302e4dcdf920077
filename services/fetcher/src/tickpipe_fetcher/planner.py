"""The planner: turns fetch requests into units of work on the ``fetch-units`` topic.

Per request (``docs/fetcher.md``, "Planning"):

* **Units** of the request's kind (:func:`tickpipe_shared.units.plan_units`: ticks per UTC hour;
  candles per hour, day, month or year by timeframe) overlapping ``[from, min(to, now))``.
* **Dukascopy**: the instrument comes from the registry (codes, price scale, asset class); its
  detail (:class:`~tickpipe_shared.instruments.catalog.InstrumentDetails`, cached; a slow or
  failed download falls back to defaults after :data:`DETAILS_TIMEOUT_S`) clamps ``from`` to
  the history start of the kind.
* **Synthetic**: the instrument as given, on the FX week, with the synthetic price scale
  (:func:`~tickpipe_shared.synthetic.ticks.price_scale_of`).
* **Deriv, Polygon**: no registry; the instrument is the symbol or ticker as given, the price
  scale unknown (-1), the asset class from its prefix
  (:func:`~tickpipe_shared.instruments.classes.asset_class_of`).
* The trading schedule is the catalog's
  (:func:`~tickpipe_shared.instruments.catalog.trading_schedule`): the detail's, else around
  the clock for synthetic indices and crypto, the FX week for currency pairs, else unknown.
* ``market_open`` per unit: True when the schedule has open time in ``[start, min(end, now))``,
  None without a schedule.
* ``skip_existing``: units the ingest log has as done (:mod:`tickpipe_fetcher.ledger`) are left
  out and counted in ``RequestPlanned.skipped``.

A bad request (bad JSON, unknown source or instrument, inverted or absurd range) becomes one
failure record with the reason, and the partition moves on. An unavailable instrument registry
or ingest log raises :class:`~tickpipe_shared.kafka.records.RetryableError`: the batch waits,
uncommitted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import InstrumentRegistry, UnknownInstrumentError
from tickpipe_shared.instruments.catalog import (
    RETRY_AFTER_S,
    InstrumentDetails,
    RegistryUnavailableError,
    trading_schedule,
)
from tickpipe_shared.instruments.classes import asset_class_of
from tickpipe_shared.instruments.details import InstrumentDetail
from tickpipe_shared.instruments.schedule import FX_DEFAULT_SCHEDULE, TradingSchedule
from tickpipe_shared.kafka.records import InRecord, OutRecord, RetryableError
from tickpipe_shared.kafka.topics import FETCH_UNITS, PROGRESS
from tickpipe_shared.metrics import UNITS
from tickpipe_shared.synthetic.ticks import price_scale_of
from tickpipe_shared.units import Unit, dt_to_ms, ms_to_iso, plan_units
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.headers import encode_headers
from tickpipe_shared.wire.progress import RequestPlanned, encode_progress
from tickpipe_shared.wire.requests import FetchRequest, RequestError, parse_request

from tickpipe_fetcher.ledger import IngestLedger, LedgerReader

log = structlog.get_logger()

FailureFactory = Callable[[InRecord, BaseException, str | None], OutRecord]
DetailLookup = Callable[[str], Awaitable[InstrumentDetail | None]]

DUKASCOPY = frozenset({"dukascopy-json", "dukascopy-bi5"})
#: Longest the planner waits for one instrument detail before planning with defaults.
DETAILS_TIMEOUT_S = 10.0
#: After a timed-out detail download, the instrument is planned with defaults this long.
DETAILS_RETRY_S = RETRY_AFTER_S


def _request_id(value: bytes | None) -> str | None:
    """Best effort: the ``request_id`` of a request too broken to parse, for its failure."""
    try:
        data = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    rid = data.get("request_id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) else None


@dataclass(frozen=True, slots=True)
class Target:
    """What the planner knows about a request's instrument at its source.

    ``name``: stored instrument name; ``source_code``: the source's code; ``price_scale``: -1
    when unknown; ``schedule``: None when unknown; ``history_start_ms``: first available ms of
    the kind, None when unknown.
    """

    name: str
    source_code: str
    price_scale: int
    asset_class: str
    schedule: TradingSchedule | None = None
    history_start_ms: int | None = None
    #: What the target had to do without (see :attr:`RequestPlanned.notes`).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    """A request planned: its unit ``kind``, :class:`Target`, the ``units`` to fetch,
    ``skipped`` units the ingest log already has (``skip_existing``), and per unit whether the
    market is open in it (``None``: no schedule known)."""

    kind: str
    target: Target
    units: list[Unit]
    skipped: int
    market_open: list[bool | None]


class Planner:
    """Processor for ``fetch-requests``: validates each request and emits its units.

    ``sources``: names of the configured sources; ``load_registry`` gives the Dukascopy
    instrument registry (loaded when a Dukascopy request first needs it); ``details`` looks up
    an instrument detail by JSON API code (default: :class:`InstrumentDetails`); ``ledger``
    answers ``skip_existing`` (default: :class:`~tickpipe_fetcher.ledger.IngestLedger`);
    ``clock``: wall time in seconds; ``cancelled`` tells a cancelled request id (default: none;
    :class:`~tickpipe_fetcher.cancellations.CancellationRegistry` in the service).
    """

    def __init__(
        self,
        settings: Settings,
        load_registry: Callable[[], Awaitable[InstrumentRegistry]],
        sources: set[str],
        failure: FailureFactory,
        *,
        details: DetailLookup | None = None,
        ledger: LedgerReader | None = None,
        clock: Callable[[], float] = time.time,
        details_timeout_s: float = DETAILS_TIMEOUT_S,
        cancelled: Callable[[str], bool] = lambda request_id: False,
    ) -> None:
        self.cancelled = cancelled
        self.settings = settings
        self._load_registry = load_registry
        self.registry: InstrumentRegistry | None = None
        self.sources = sources
        self.failure = failure
        self._details = details or InstrumentDetails(settings).get
        self.ledger = ledger or IngestLedger(settings)
        self.clock = clock
        self.details_timeout_s = details_timeout_s
        self._details_skipped_until: dict[str, float] = {}
        self.topic = settings.topic(FETCH_UNITS)
        self.progress_topic = settings.topic(PROGRESS)

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """One failure record per bad request; a ``planned`` event and fetch-unit records per
        good one. Raises :class:`RetryableError` while the registry or ledger is unavailable."""
        out: list[OutRecord] = []
        for record in records:
            try:
                request = parse_request(record.value)
                out += await self.plan(request)
            except (RequestError, UnknownInstrumentError) as e:
                UNITS.labels("fetcher-planner", "rejected").inc()
                out.append(self.failure(record, e, _request_id(record.value)))
        return out

    async def preview(self, request: FetchRequest) -> Plan:
        """What :meth:`plan` would publish for ``request``, without publishing: the target,
        the units (``skip_existing`` ones left out and counted), ``market_open`` per unit.

        Raises :class:`RequestError` for a source that is not configured,
        :class:`UnknownInstrumentError` for an instrument Dukascopy does not list and
        :class:`RetryableError` while the registry or (``skip_existing``) the ledger is down.
        """
        if request.source not in self.sources:
            configured = ", ".join(sorted(self.sources)) or "none"
            raise RequestError(
                f"source {request.source!r} is not configured on this fetcher "
                f"(configured: {configured})"
            )
        kind = str(request.unit_kind)
        now_ms = int(self.clock() * 1000)
        target = await self._target(request, kind)
        from_ms = dt_to_ms(request.from_)
        if target.history_start_ms is not None and from_ms < target.history_start_ms:
            log.info(
                "request starts before the instrument's history: clamped",
                request_id=request.request_id,
                history_start=ms_to_iso(target.history_start_ms),
            )
            from_ms = target.history_start_ms
        # Periods that have not started have no data: the range ends now at the latest. The
        # unit containing now is fetched as open and refetched by any later request.
        to_ms = min(dt_to_ms(request.to), now_ms)
        units = (
            plan_units(request.source, target.name, kind, from_ms, to_ms) if from_ms < to_ms else []
        )
        skipped = 0
        if request.skip_existing and units:
            done = await self.ledger.done_units(
                target.name, kind, units[0].start_ms, units[-1].end_ms
            )
            kept = [u for u in units if u.start_ms not in done]
            skipped, units = len(units) - len(kept), kept
        return Plan(kind, target, units, skipped, _market_open(target, units, now_ms))

    async def plan(self, request: FetchRequest) -> list[OutRecord]:
        """A ``planned`` progress event, then a fetch-unit record per unit of the request.

        Raises what :meth:`preview` raises.
        """
        if self.cancelled(request.request_id):
            raise RequestError(f"request {request.request_id} was cancelled before it was planned")
        plan = await self.preview(request)
        target, units, skipped, market_open = (
            plan.target, plan.units, plan.skipped, plan.market_open
        )  # fmt: skip
        kind = plan.kind
        log.info(
            "request planned",
            request_id=request.request_id,
            instrument=target.name,
            source=request.source,
            kind=kind,
            units=len(units),
            skipped=skipped,
        )
        UNITS.labels("fetcher-planner", "planned").inc(len(units))
        if skipped:
            UNITS.labels("fetcher-planner", "skipped").inc(skipped)
        planned = RequestPlanned(
            request_id=request.request_id,
            source=request.source,
            instrument=target.name,
            kind=kind,
            units=len(units),
            skipped=skipped,
            notes=list(target.notes),
        )
        headers = encode_headers({"request_id": request.request_id})
        # The planned event goes first: the tracker then knows how many units to expect.
        return [
            OutRecord(self.progress_topic, request.request_id.encode(), encode_progress(planned)),
            *(
                OutRecord(
                    self.topic,
                    u.key.encode(),
                    FetchUnit(
                        request_id=request.request_id,
                        unit=u,
                        source_code=target.source_code,
                        price_scale=target.price_scale,
                        asset_class=target.asset_class,
                        market_open=is_open,
                    ).to_json(),
                    headers,
                )
                for u, is_open in zip(units, market_open, strict=True)
            ),
        ]

    async def _target(self, request: FetchRequest, kind: str) -> Target:
        if request.source == "synthetic":
            return Target(
                name=request.instrument,
                source_code=request.instrument,
                price_scale=price_scale_of(request.instrument),
                asset_class="fx",
                schedule=FX_DEFAULT_SCHEDULE,
            )
        if request.source not in DUKASCOPY:
            asset_class = asset_class_of(request.source, request.instrument)
            return Target(
                name=request.instrument,
                source_code=request.instrument,
                price_scale=-1,
                asset_class=asset_class,
                schedule=trading_schedule(request.instrument, asset_class),
            )
        registry = await self._registry()
        instrument = registry.get(request.instrument)
        detail = await self._detail(instrument.json_code)
        asset_class = instrument.asset_class or (detail.asset_class if detail else "")
        notes = () if detail is not None else (
            f"planned without the instrument detail of {instrument.json_code} (download "
            "failed or too slow; asked again later): default trading schedule, no history "
            "start clamp",
        )  # fmt: skip
        return Target(
            name=instrument.name,
            source_code=instrument.code_for(request.source),
            price_scale=instrument.scale_for(request.source),
            asset_class=asset_class,
            schedule=trading_schedule(instrument.name, asset_class, detail),
            history_start_ms=detail.history_start(kind) if detail is not None else None,
            notes=notes,
        )

    async def _registry(self) -> InstrumentRegistry:
        if self.registry is None:
            try:
                self.registry = await self._load_registry()
            except RegistryUnavailableError as e:
                raise RetryableError(str(e)) from e
        return self.registry

    async def _detail(self, code: str) -> InstrumentDetail | None:
        """The instrument detail, or None when unknown or too slow to come (then not asked
        again for :data:`DETAILS_RETRY_S`): a detail only refines the plan."""
        now = time.monotonic()
        if now < self._details_skipped_until.get(code, 0.0):
            return None
        try:
            return await asyncio.wait_for(self._details(code), self.details_timeout_s)
        except TimeoutError:
            log.warning(
                "instrument detail download too slow: planning with default schedule and "
                "no history clamp",
                code=code,
                timeout_s=self.details_timeout_s,
            )
            self._details_skipped_until[code] = now + DETAILS_RETRY_S
            return None


def _market_open(target: Target, units: Sequence[Unit], now_ms: int) -> list[bool | None]:
    """Per unit: whether the market is open at some time in ``[start, min(end, now))``."""
    if target.schedule is None or not units:
        return [None] * len(units)
    starts = np.array([u.start_ms for u in units], dtype=np.int64)
    ends = np.minimum(np.array([u.end_ms for u in units], dtype=np.int64), now_ms)
    return [bool(ms > 0) for ms in target.schedule.open_ms_between(starts, ends)]
