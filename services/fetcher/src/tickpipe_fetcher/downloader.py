"""The downloader: fetches each unit of work and publishes the raw payload untouched.

Up to ``TICKPIPE_FETCH_CONCURRENCY`` downloads run at once. Every attempt first passes the
source host's circuit breaker (waiting while it is open, without spending an attempt), then
takes a token from the host's adaptive rate limiter, then asks the breaker for a permit (in
half-open only one probe goes). Network errors, 5xx, 429 and answers that are not data are
retried with exponential backoff and full jitter; after the last attempt the unit becomes a
failure record with the attempt count and the last error. An empty unit (closed market) is
published as a 0-byte payload: it is data too ("nothing traded").
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
from tickpipe_fetcher.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    HostBreakers,
)
from tickpipe_fetcher.http import (
    HttpResponse,
    PermanentFetchError,
    RetryableFetchError,
    RetryPolicy,
    Transport,
    retry_after_seconds,
)
from tickpipe_fetcher.metrics import (
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    BREAKER_WAIT,
    FETCH_LATENCY,
    HTTP_REQUESTS,
    RATE_LIMIT_RATE,
    RATE_LIMIT_THROTTLED,
    RATE_LIMIT_WAIT,
    RESPONSE_BYTES,
    RETRIES_TOTAL,
)
from tickpipe_fetcher.ratelimit import AdaptiveTokenBucket, HostLimiters, RateLimitConfig, host_of
from tickpipe_fetcher.sources.base import Outcome, Source

log = structlog.get_logger()

FailureFactory = Callable[[InRecord, BaseException, int], OutRecord]


class DownloadFailedError(Exception):
    """A unit that could not be downloaded; ``attempts`` were made."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class Downloader:
    """Processor for ``fetch-units``: downloads units concurrently, emits raw payloads.

    ``clock`` is wall time (URLs of open hours, ``fetched_at``, "breaker open since");
    ``monotonic`` drives the rate limiters and breakers. Every wait (backoff, rate limiter,
    breaker) goes through :func:`tickpipe_fetcher.http.sleep`, so tests can patch time away.
    """

    def __init__(
        self,
        settings: Settings,
        sources: Mapping[str, Source],
        transport: Transport,
        failure: FailureFactory,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources = sources
        self.transport = transport
        self.failure = failure
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.topic = settings.topic(RAW_PAYLOADS)
        self.clock = clock
        self.monotonic = monotonic
        self._semaphore = asyncio.Semaphore(settings.fetch_concurrency)
        self.limiters = HostLimiters(
            RateLimitConfig.per_replica(
                settings.fetch_rate_per_host,
                settings.fetch_rate_burst,
                settings.fetch_replicas,
                settings.fetch_rate_recovery_s,
            ),
            monotonic=monotonic,
            sleep=_sleep,
        )
        self.breakers = HostBreakers(
            BreakerConfig(
                failures=settings.fetch_breaker_failures,
                failure_ratio=settings.fetch_breaker_failure_ratio,
                window=settings.fetch_breaker_window,
                cooldown_s=settings.fetch_breaker_cooldown_s,
                max_wait_s=settings.fetch_breaker_max_wait_s,
            ),
            monotonic=monotonic,
            wall=clock,
            sleep=_sleep,
            on_change=_breaker_changed,
        )

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

    async def _wait_for_breaker(self, breaker: CircuitBreaker, budget: list[float]) -> None:
        """Wait while ``breaker`` blocks, spending from the unit's ``budget[0]`` seconds."""
        started = self.monotonic()
        try:
            await breaker.wait_ready(started + budget[0])
        finally:
            waited = self.monotonic() - started
            budget[0] = max(0.0, budget[0] - waited)
            BREAKER_WAIT.labels(breaker.host).observe(waited)

    async def _download(self, record: InRecord, unit: FetchUnit, source: Source) -> OutRecord:
        url = source.url_for(unit, now_ms=int(self.clock() * 1000))
        key = unit.unit.key
        host = host_of(url)
        limiter = self.limiters.for_host(host)
        breaker = self.breakers.for_host(host)
        budget = [breaker.config.max_wait_s]  # breaker wait left for this unit
        last_error = ""
        attempt = 0
        while attempt < self.policy.attempts:
            # Admission: breaker (wait while open), then a token, then the breaker's permit.
            try:
                while True:
                    if not breaker.ready():
                        await self._wait_for_breaker(breaker, budget)
                    RATE_LIMIT_WAIT.labels(host).observe(await limiter.acquire())
                    RATE_LIMIT_RATE.labels(host).set(limiter.rate)
                    permit = breaker.try_acquire()
                    BREAKER_STATE.labels(host).set(int(breaker.state))
                    if permit is not None:
                        break
            except CircuitOpenError as e:
                raise DownloadFailedError(
                    f"{key}: {e} (gave up waiting after {breaker.config.max_wait_s:g} s; "
                    f"{attempt} attempts made)",
                    attempt,
                ) from None
            attempt += 1
            # Per attempt: an hour that was open at the first attempt may have closed since.
            url = source.url_for(unit, now_ms=int(self.clock() * 1000))
            started = time.monotonic()
            retry_after: float | None = None
            status: int | None = None
            verdict = "none"  # for the breaker: "ok", "fail" or "none" (no verdict)
            try:
                response = await self.transport.get(url)
                status = response.status
                HTTP_REQUESTS.labels(source.name, str(response.status)).inc()
                RESPONSE_BYTES.labels(source.name).inc(len(response.body))
                if response.status in (429, 503):
                    self._throttled(host, limiter, response)
                outcome = source.classify(url, response)
            except PermanentFetchError as e:
                verdict = "ok"  # the host is up; the answer is final
                raise DownloadFailedError(f"{key}: {e}", attempt) from None
            except RetryableFetchError as e:
                last_error, retry_after = str(e), e.retry_after
                verdict = "none" if status == 429 else "fail"
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                HTTP_REQUESTS.labels(source.name, type(e).__name__).inc()
                last_error = f"{type(e).__name__} from {url}: {e}"
                verdict = "fail"
            else:
                verdict = "ok"
                FETCH_LATENCY.labels(source.name).observe(time.monotonic() - started)
                return self._payload(unit, source, url, response, outcome, attempt)
            finally:
                if verdict == "ok":
                    breaker.success(permit)
                elif verdict == "fail":
                    breaker.failure(permit, last_error)
                else:
                    breaker.release(permit)
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

    @staticmethod
    def _throttled(host: str, limiter: AdaptiveTokenBucket, response: HttpResponse) -> None:
        """A 429/503 slows the host's limiter down (and pauses it for ``Retry-After``)."""
        limiter.throttled(retry_after_seconds(response.headers.get("retry-after")))
        RATE_LIMIT_THROTTLED.labels(host).inc()
        RATE_LIMIT_RATE.labels(host).set(limiter.rate)
        if limiter.paused_for() > 0:
            log.warning(
                "host throttled us, pausing",
                host=host,
                status=response.status,
                pause_s=round(limiter.paused_for(), 2),
                rate=round(limiter.rate, 3),
            )

    def _payload(
        self,
        unit: FetchUnit,
        source: Source,
        url: str,
        response: HttpResponse,
        outcome: Outcome,
        attempt: int,
    ) -> OutRecord:
        key = unit.unit.key
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


async def _sleep(seconds: float) -> None:
    """Late-bound :func:`tickpipe_fetcher.http.sleep` (so patching it reaches every wait)."""
    await http.sleep(seconds)


def _breaker_changed(host: str, state: BreakerState) -> None:
    BREAKER_STATE.labels(host).set(int(state))
    BREAKER_TRANSITIONS.labels(host, state.name.lower()).inc()
    if state is not BreakerState.CLOSED:
        log.warning("circuit breaker changed", host=host, state=state.name.lower())
    else:
        log.info("circuit breaker changed", host=host, state="closed")
