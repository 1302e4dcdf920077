"""The downloader: fetches each unit of work and publishes the raw payload untouched.

Units of one source host download at most ``TICKPIPE_FETCH_CONCURRENCY_PER_HOST`` at once, and
at most ``TICKPIPE_FETCH_CONCURRENCY`` requests are in flight in the process
(:mod:`tickpipe_fetcher.admission`): a dead or throttling host holds its own slots, never all of
them. Every request first passes the host's circuit breaker (waiting while it is open, without
spending an attempt), then takes a token from the host's adaptive rate limiter, then asks the
breaker for a permit (in half-open only one probe goes). A unit may take several requests
(pages); network errors, 5xx, 429 and answers that are not data fail the attempt, which is
retried whole with exponential backoff and full jitter; after the last attempt the unit becomes
a failure record with the attempt count and the last error.

An empty unit (the source says "no data") is published too: nothing traded is data. When the
unit's trading schedule says the market was open (``FetchUnit.market_open``), an empty answer is
suspect: the attempt counts as failed ("empty answer for an hour the trading schedule has
open"), without blaming the host, and is retried; if the last attempt is still empty, the empty
payload is published with ``suspect_empty=1`` — never a silent hole, not a failure either.

A unit holds its host's slot only while an attempt runs: during the backoff between attempts
the slot serves the host's other units. A unit whose attempts all failed for a *transient*
reason (network errors, 5xx, 429, answers that are not data, an open breaker) is not final
yet: it goes back to ``fetch-units`` for a **delayed retry** (headers ``tp-delayed_round`` and
``tp-not_before_ms``), ``TICKPIPE_FETCH_DELAYED_RETRY_S`` later, doubling each round, at most
``TICKPIPE_FETCH_DELAYED_RETRIES`` rounds, each with the full attempt budget. Only then does
it become a failure record, whose reason names the rounds and the last error. Permanent
answers (404 of a JSON API path, bad records) fail at once. See ``docs/fetcher.md``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import structlog
from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.kafka.topics import FETCH_UNITS, RAW_PAYLOADS
from tickpipe_shared.metrics import BYTES, UNITS
from tickpipe_shared.units import unit_span
from tickpipe_shared.wire.fetch_units import FetchUnit
from tickpipe_shared.wire.headers import Headers, decode_headers, encode_headers
from tickpipe_shared.wire.raw import RawPayloadMeta
from tickpipe_shared.wire.request_events import RequestCancelledError

from tickpipe_fetcher import http
from tickpipe_fetcher.admission import AttemptRequests, BreakerBudget, Verdict
from tickpipe_fetcher.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitOpenError,
    HostBreakers,
)
from tickpipe_fetcher.http import (
    PermanentFetchError,
    RetryableFetchError,
    RetryPolicy,
    ThrottledFetchError,
    Transport,
)
from tickpipe_fetcher.metrics import BREAKER_STATE, BREAKER_TRANSITIONS, RETRIES_TOTAL
from tickpipe_fetcher.ratelimit import HostLimiters, RateLimitConfig
from tickpipe_fetcher.sources.base import Answer, Source

log = structlog.get_logger()

FailureFactory = Callable[[InRecord, BaseException, int], OutRecord]


class DownloadFailedError(Exception):
    """A unit that could not be downloaded; ``attempts`` were made. ``transient``: every
    attempt failed for a reason that may pass (the unit is worth a delayed retry)."""

    def __init__(self, message: str, attempts: int, transient: bool = False) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.transient = transient


@dataclass(frozen=True, slots=True)
class DelayedRetry:
    """Where a unit stands in its delayed retries (record headers ``tp-delayed_round``,
    ``tp-not_before_ms``): ``round`` 0 for a unit fresh from the planner."""

    round: int = 0
    not_before_ms: int = 0

    @classmethod
    def of(cls, headers: Sequence[tuple[str, bytes]] | None) -> DelayedRetry:
        """The state carried by a record's headers (absent or unreadable: a fresh unit)."""
        h = decode_headers(headers)
        try:
            return cls(int(h.get("delayed_round", 0)), int(h.get("not_before_ms", 0)))
        except ValueError:
            return cls()

    def headers(self) -> Headers:
        """The headers that carry this state."""
        return encode_headers({"delayed_round": self.round, "not_before_ms": self.not_before_ms})


class Downloader:
    """Processor for ``fetch-units``: downloads units concurrently, emits raw payloads.

    ``clock`` is wall time (URLs of open periods, ``fetched_at``, "breaker open since");
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
        cancelled: Callable[[str], bool] = lambda request_id: False,
    ) -> None:
        self.sources = sources
        self.cancelled = cancelled
        self.transport = transport
        self.failure = failure
        self.policy = policy or RetryPolicy.from_settings(settings)
        self.topic = settings.topic(RAW_PAYLOADS)
        self.units_topic = settings.topic(FETCH_UNITS)
        self.delayed_retries = settings.fetch_delayed_retries
        self.delayed_retry_s = settings.fetch_delayed_retry_s
        self.clock = clock
        self.monotonic = monotonic
        self.per_host = settings.fetch_concurrency_per_host
        self._slots = asyncio.Semaphore(settings.fetch_concurrency)
        self._host_slots: dict[str, asyncio.Semaphore] = {}
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
        """Raw payload, failure or delayed-retry records, in the order of ``records`` (all of
        them downloaded at once; the service streams units through
        :class:`~tickpipe_fetcher.pipeline.UnitPipeline` instead)."""
        return list(await asyncio.gather(*(self.download(r) for r in records)))

    def host_slots(self, host: str) -> asyncio.Semaphore:
        """The per-host slots of ``host`` (created on first use)."""
        slots = self._host_slots.get(host)
        if slots is None:
            slots = self._host_slots[host] = asyncio.Semaphore(self.per_host)
        return slots

    async def download(self, record: InRecord) -> OutRecord:
        """One unit of ``fetch-units``, start to end: the pipeline's step per unit.

        :returns: the raw payload; or the unit again, to ``fetch-units``, for a delayed retry;
            or a failure record (bad record, permanent answer, delayed retries spent).
        """
        retry = DelayedRetry.of(record.headers)
        try:
            unit = FetchUnit.from_json(record.value or b"")
            if self.cancelled(unit.request_id):
                UNITS.labels("fetcher", "cancelled").inc()
                cancelled = RequestCancelledError(
                    f"request {unit.request_id} was cancelled: unit not downloaded"
                )
                return self.failure(record, cancelled, 0)
            source = self.sources.get(unit.unit.source)
            if source is None:
                raise PermanentFetchError(
                    f"source {unit.unit.source!r} is not configured on this fetcher"
                )
            await self._wait_until(retry.not_before_ms)
            # The unit is about to download.
            return await self._download(unit, source)
        except DownloadFailedError as e:
            if e.transient and retry.round < self.delayed_retries:
                return self._requeue(record, retry, e)
            UNITS.labels("fetcher", "failed").inc()
            if retry.round:
                e = DownloadFailedError(f"{e} (after {retry.round} delayed retries)", e.attempts)
            return self.failure(record, e, e.attempts)
        except (ValueError, PermanentFetchError) as e:
            UNITS.labels("fetcher", "failed").inc()
            return self.failure(record, e, 1)

    async def _wait_until(self, not_before_ms: int) -> None:
        wait_s = not_before_ms / 1000 - self.clock()
        if wait_s > 0:
            await http.sleep(wait_s)

    def _requeue(self, record: InRecord, retry: DelayedRetry, error: Exception) -> OutRecord:
        """The unit back to ``fetch-units`` for delayed retry number ``retry.round + 1``."""
        delay_s = self.delayed_retry_s * 2**retry.round
        after = DelayedRetry(retry.round + 1, int((self.clock() + delay_s) * 1000))
        UNITS.labels("fetcher", "delayed-retry").inc()
        log.warning(
            "unit failed for a transient reason, delayed retry",
            unit=record.key.decode("utf-8", "replace") if record.key else None,
            round=after.round,
            of=self.delayed_retries,
            retry_in_s=round(delay_s, 1),
            error=str(error),
        )
        kept = [(k, v) for k, v in record.headers or () if k not in _DELAYED_HEADERS]
        return OutRecord(self.units_topic, record.key, record.value or b"", kept + after.headers())

    def _requests(self, source: Source, budget: BreakerBudget) -> AttemptRequests:
        return AttemptRequests(
            source=source.name,
            transport=self.transport,
            limiter=self.limiters.for_host(source.host),
            breaker=self.breakers.for_host(source.host),
            slots=self._slots,
            budget=budget,
            monotonic=self.monotonic,
        )

    async def _download(self, unit: FetchUnit, source: Source) -> OutRecord:
        key = unit.unit.key
        max_wait = self.breakers.config.max_wait_s
        budget = BreakerBudget(max_wait)  # breaker wait left for this unit, over all attempts
        last_error = ""
        for attempt in range(1, self.policy.attempts + 1):
            requests = self._requests(source, budget)
            retry_after: float | None = None
            # Per attempt: a period that was open at the first attempt may have closed. This is
            # also the payload's fetched_at: taken before any admission wait, it never claims
            # data newer than what was asked for (an open unit must not look closed, an open
            # candle must not look complete, because a rate limiter held the request back).
            asked_ms = int(self.clock() * 1000)
            try:
                # The host's slot is held for the attempt only, not for the backoff after it.
                async with self.host_slots(source.host):
                    answer = await source.fetch(unit, asked_ms, requests)
            except CircuitOpenError as e:
                made = attempt if requests.sent else attempt - 1
                raise DownloadFailedError(
                    f"{key}: {e} (gave up waiting after {max_wait:g} s; {made} attempts made)",
                    made,
                    transient=True,
                ) from None
            except PermanentFetchError as e:
                # The host is up; the answer is final.
                requests.finish(Verdict.OK, status=type(e).__name__)
                raise DownloadFailedError(f"{key}: {e}", attempt) from None
            except RetryableFetchError as e:
                last_error, retry_after = str(e), e.retry_after
                if isinstance(e, ThrottledFetchError):
                    requests.throttle(e.retry_after, type(e).__name__, force=True)
                # "Too many requests" is about the rate, not the host's health.
                throttled = requests.last_status == 429 or isinstance(e, ThrottledFetchError)
                verdict = Verdict.NONE if throttled else Verdict.FAIL
                requests.finish(verdict, last_error, type(e).__name__)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last_error = f"{type(e).__name__} from {requests.last_url}: {e}"
                requests.finish(Verdict.FAIL, last_error, type(e).__name__)
            else:
                requests.finish(Verdict.OK)
                if not (answer.empty and unit.market_open):
                    return self._payload(unit, answer, attempt, suspect=False, asked_ms=asked_ms)
                last_error = (
                    f"empty answer for {_span_phrase(unit.unit.kind)} the trading schedule has "
                    f"open: {answer.url}"
                )
                if attempt == self.policy.attempts:
                    return self._payload(unit, answer, attempt, suspect=True, asked_ms=asked_ms)
            finally:
                requests.finish(Verdict.NONE)  # cancelled or a bug: no verdict on the host
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
            transient=True,
        )

    def _payload(
        self, unit: FetchUnit, answer: Answer, attempts: int, suspect: bool, asked_ms: int
    ) -> OutRecord:
        key = unit.unit.key
        body = answer.body
        outcome = "suspect-empty" if suspect else "empty" if answer.empty else "downloaded"
        BYTES.labels("fetcher", "in").inc(len(body))
        UNITS.labels("fetcher", outcome).inc()
        (log.warning if suspect else log.info)(
            "unit downloaded",
            unit=key,
            outcome=outcome,
            bytes=len(body),
            attempts=attempts,
            requests=answer.requests,
            status=answer.status,
        )
        meta = RawPayloadMeta(
            unit=unit.unit,
            format=answer.format,
            url=answer.url,
            sha256=hashlib.sha256(body).hexdigest(),
            fetched_at_ms=asked_ms,
            price_scale=unit.price_scale,
            request_id=unit.request_id,
            http_status=answer.status,
            content_type=answer.content_type,
            attempts=attempts,
            source_code=unit.source_code,
            asset_class=unit.asset_class,
            suspect_empty=int(suspect),
        )
        return OutRecord(self.topic, key.encode(), body, meta.to_headers())


_DELAYED_HEADERS = frozenset(k for k, _ in DelayedRetry().headers())


def _span_phrase(kind: str) -> str:
    """``an hour``, ``a day``, ``a month`` or ``a year``: the span of one unit of ``kind``."""
    span = unit_span(kind)
    return f"an {span}" if span == "hour" else f"a {span}"


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
