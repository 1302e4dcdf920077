"""The planner: turns fetch requests into units of work on the ``fetch-units`` topic.

A bad request (bad JSON, unknown source or instrument, inverted or absurd range) becomes one
failure record with the reason, and the partition moves on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import InstrumentRegistry, UnknownInstrumentError
from tickpipe_shared.instruments.loader import RegistryUnavailableError
from tickpipe_shared.kafka.records import InRecord, OutRecord, RetryableError
from tickpipe_shared.kafka.topics import FETCH_UNITS, PROGRESS
from tickpipe_shared.metrics import UNITS
from tickpipe_shared.units import dt_to_ms, hour_units
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.headers import encode_headers
from tickpipe_shared.wire.progress import RequestPlanned, encode_progress
from tickpipe_shared.wire.requests import FetchRequest, RequestError, parse_request

log = structlog.get_logger()

FailureFactory = Callable[[InRecord, BaseException, str | None], OutRecord]


def _request_id(value: bytes | None) -> str | None:
    """Best effort: the ``request_id`` of a request too broken to parse, for its failure."""
    try:
        data = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError):
        return None
    rid = data.get("request_id") if isinstance(data, dict) else None
    return rid if isinstance(rid, str) else None


class Planner:
    """Processor for ``fetch-requests``: validates each request and emits its units.

    ``sources`` are the names of the configured sources; ``load_registry`` gives the instrument
    registry (loaded on first use; while it is unavailable requests wait, uncommitted).
    """

    def __init__(
        self,
        settings: Settings,
        load_registry: Callable[[], Awaitable[InstrumentRegistry]],
        sources: set[str],
        failure: FailureFactory,
    ) -> None:
        self.settings = settings
        self._load_registry = load_registry
        self.registry: InstrumentRegistry | None = None
        self.sources = sources
        self.failure = failure
        self.topic = settings.topic(FETCH_UNITS)
        self.progress_topic = settings.topic(PROGRESS)

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """One failure record per bad request, one fetch-unit record per unit otherwise."""
        if self.registry is None:
            try:
                self.registry = await self._load_registry()
            except RegistryUnavailableError as e:
                raise RetryableError(str(e)) from e
        out: list[OutRecord] = []
        for record in records:
            try:
                request = parse_request(record.value)
                out += self.plan(request)
            except (RequestError, UnknownInstrumentError) as e:
                UNITS.labels("fetcher-planner", "rejected").inc()
                out.append(self.failure(record, e, _request_id(record.value)))
        return out

    def plan(self, request: FetchRequest) -> list[OutRecord]:
        """A ``planned`` progress event, then fetch-unit records for every hour of the request.

        Raises :class:`RequestError` for a source that is not configured and
        :class:`UnknownInstrumentError` for an instrument the source does not list.
        """
        if request.source not in self.sources:
            configured = ", ".join(sorted(self.sources)) or "none"
            raise RequestError(
                f"source {request.source!r} is not configured on this fetcher "
                f"(configured: {configured})"
            )
        assert self.registry is not None, "process() loads the registry first"
        instrument = self.registry.get(request.instrument)
        code = instrument.bi5_symbol if request.source == "dukascopy-bi5" else instrument.json_code
        # Hours that have not started yet have no data: the range ends now at the latest (the
        # current, still open hour is fetched as such and refetched by a later request).
        to_ms = min(dt_to_ms(request.to), int(time.time() * 1000))
        units = hour_units(request.source, instrument.name, dt_to_ms(request.from_), to_ms)
        log.info(
            "request planned",
            request_id=request.request_id,
            instrument=instrument.name,
            source=request.source,
            units=len(units),
        )
        UNITS.labels("fetcher-planner", "planned").inc(len(units))
        planned = RequestPlanned(
            request_id=request.request_id,
            source=request.source,
            instrument=instrument.name,
            kind=request.kind,
            units=len(units),
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
                        source=u.source,
                        instrument=u.instrument,
                        kind=u.kind,
                        start_ms=u.start_ms,
                        end_ms=u.end_ms,
                        source_code=code,
                        price_scale=instrument.scale_for(request.source),
                    ).to_json(),
                    headers,
                )
                for u in units
            ),
        ]
