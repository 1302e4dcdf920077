"""The downloader: fetches each unit of work and publishes the raw payload untouched.

Up to ``TICKPIPE_FETCH_CONCURRENCY`` downloads run at once. Network errors, 5xx, 429 and
answers that are not data are retried with exponential backoff and full jitter; after the last
attempt the unit becomes a failure record with the attempt count and the last error. An empty
unit (closed market) is published as a 0-byte payload: it is data too ("nothing traded").
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence

import aiohttp
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.topics import RAW_PAYLOADS
from tickpipe_shared.metrics import BYTES, UNITS
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.raw import RawPayloadMeta

from tickpipe_fetcher import http
from tickpipe_fetcher.http import (
    PermanentFetchError,
    RetryableFetchError,
    RetryPolicy,
    Transport,
)
from tickpipe_fetcher.metrics import FETCH_LATENCY, HTTP_REQUESTS, RETRIES_TOTAL
from tickpipe_fetcher.sources.base import Outcome, Source

log = structlog.get_logger()

FailureFactory = Callable[[InRecord, BaseException, int], OutRecord]


class DownloadFailedError(Exception):
    """A unit that could not be downloaded; ``attempts`` were made."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class Downloader:
    """Processor for ``fetch-units``: downloads units concurrently, emits raw payloads."""

    def __init__(
        self,
        settings: Settings,
        sources: Mapping[str, Source],
        transport: Transport,
        failure: FailureFactory,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = sources
        self.transport = transport
        self.failure = failure
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.topic = settings.topic(RAW_PAYLOADS)
        self.clock = clock
        self._semaphore = asyncio.Semaphore(settings.fetch_concurrency)

    async def process(self, records: Sequence[InRecord]) -> list[OutRecord]:
        """Raw payload or failure records, in the order of ``records``."""
        return list(await asyncio.gather(*(self._one(r) for r in records)))

    async def _one(self, record: InRecord) -> OutRecord:
        try:
            unit = FetchUnit.from_json(record.value or b"")
            source = self.sources.get(unit.source)
            if source is None:
                raise PermanentFetchError(
                    f"source {unit.source!r} is not configured on this fetcher"
                )
            async with self._semaphore:
                return await self._download(record, unit, source)
        except DownloadFailedError as e:
            UNITS.labels("fetcher", "failed").inc()
            return self.failure(record, e, e.attempts)
        except (ValueError, PermanentFetchError) as e:
            UNITS.labels("fetcher", "failed").inc()
            return self.failure(record, e, 1)

    async def _download(self, record: InRecord, unit: FetchUnit, source: Source) -> OutRecord:
        url = source.url_for(unit, now_ms=int(self.clock() * 1000))
        key = unit.unit.key
        last_error = ""
        for attempt in range(1, self.policy.attempts + 1):
            started = time.monotonic()
            retry_after: float | None = None
            try:
                response = await self.transport.get(url)
                HTTP_REQUESTS.labels(source.name, str(response.status)).inc()
                outcome = source.classify(url, response)
            except PermanentFetchError as e:
                raise DownloadFailedError(f"{key}: {e}", attempt) from None
            except RetryableFetchError as e:
                last_error, retry_after = str(e), e.retry_after
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                HTTP_REQUESTS.labels(source.name, type(e).__name__).inc()
                last_error = f"{type(e).__name__} from {url}: {e}"
            else:
                FETCH_LATENCY.labels(source.name).observe(time.monotonic() - started)
                body = response.body if outcome is Outcome.DATA else b""
                BYTES.labels("fetcher", "in").inc(len(body))
                UNITS.labels("fetcher", "downloaded" if body else "empty").inc()
                log.info(
                    "unit downloaded",
                    unit=key,
                    bytes=len(body),
                    attempts=attempt,
                    status=response.status,
                )
                meta = RawPayloadMeta(
                    source=unit.source,
                    format=source.format,
                    instrument=unit.instrument,
                    kind=unit.kind,
                    unit_start_ms=unit.start_ms,
                    unit_end_ms=unit.end_ms,
                    url=url,
                    sha256=hashlib.sha256(body).hexdigest(),
                    fetched_at_ms=int(self.clock() * 1000),
                    price_scale=unit.price_scale,
                    request_id=unit.request_id,
                    http_status=response.status,
                    content_type=response.content_type,
                    attempts=attempt,
                )
                return OutRecord(self.topic, key.encode(), body, meta.to_headers())
            if attempt < self.policy.attempts:
                RETRIES_TOTAL.labels(source.name).inc()
                delay = self.policy.delay(attempt, retry_after)
                log.warning(
                    "download failed, retrying",
                    unit=key,
                    attempt=attempt,
                    error=last_error,
                    retry_in_s=round(delay, 2),
                )
                await http.sleep(delay)
        raise DownloadFailedError(
            f"{key}: gave up after {self.policy.attempts} attempts; last error: {last_error}",
            self.policy.attempts,
        )
