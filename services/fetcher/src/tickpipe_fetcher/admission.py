"""Admission and accounting of every request a unit's download sends to its source host.

One :class:`AttemptRequests` serves one attempt of one unit; it is the
:class:`~tickpipe_fetcher.sources.base.Requests` a source gets. Before each request it

1. waits while the host's circuit breaker is open (or half-open with its probe out), spending
   from the unit's :class:`BreakerBudget` — not an attempt;
2. takes a token from the host's adaptive rate limiter (waiting for one, or for a pause);
3. asks the breaker for a permit (half-open: only the probe goes; the others go back to 1);
4. takes one of the process-wide download slots (``TICKPIPE_FETCH_CONCURRENCY``), held only
   while the request is in flight, so that waiting on a breaker, a limiter or a backoff never
   holds a slot another host could use.

It counts each request (``tickpipe_fetcher_http_requests_total`` by source and status, bytes,
latency), slows the limiter on 429/503, and keeps the breaker permit of the last request until
the source has judged the answer: a source that sends another request accepted the previous
answer; the downloader settles the last one with the attempt's verdict (:meth:`finish`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import aiohttp
import structlog
from tickpipe_shared.logging import scrub

from tickpipe_fetcher.breaker import CircuitBreaker, Permit
from tickpipe_fetcher.http import HttpResponse, Transport, retry_after_seconds
from tickpipe_fetcher.metrics import (
    BREAKER_STATE,
    BREAKER_WAIT,
    FETCH_LATENCY,
    HTTP_REQUESTS,
    RATE_LIMIT_RATE,
    RATE_LIMIT_THROTTLED,
    RATE_LIMIT_WAIT,
    RESPONSE_BYTES,
)
from tickpipe_fetcher.ratelimit import AdaptiveTokenBucket

log = structlog.get_logger()


class Verdict(Enum):
    """What an attempt says about the host's health, for its breaker."""

    OK = "ok"  # the host answered sanely (data, empty, or a final answer such as 403)
    FAIL = "fail"  # network error, timeout, 5xx, not data
    NONE = "none"  # no verdict (429: rate, not health; cancelled)


@dataclass
class BreakerBudget:
    """Seconds a unit may still wait for its host's open breaker, over all its attempts."""

    seconds: float


class AttemptRequests:
    """The requests of one attempt of one unit (see the module docstring).

    ``sent``: requests admitted so far; ``last_url`` (scrubbed) and ``last_status`` (None
    until an answer came, or after a network error): of the latest request.
    """

    def __init__(
        self,
        *,
        source: str,
        transport: Transport,
        limiter: AdaptiveTokenBucket,
        breaker: CircuitBreaker,
        slots: asyncio.Semaphore,
        budget: BreakerBudget,
        monotonic: Callable[[], float],
    ) -> None:
        self.source = source
        self.host = breaker.host
        self._transport = transport
        self._limiter = limiter
        self._breaker = breaker
        self._slots = slots
        self._budget = budget
        self._monotonic = monotonic
        self._permit: Permit | None = None
        self._slot = False
        self._paced_since: float | None = None  # a paced call in flight since (real time)
        self._finished = False
        self.sent = 0
        self.last_url = ""
        self.last_status: int | None = None

    # --- Requests -------------------------------------------------------------------------

    async def get(self, url: str, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """Admit, then GET ``url`` through the transport; network errors propagate."""
        await self._admit()
        self.last_url = scrub(url)
        self.last_status = None
        started = time.monotonic()
        try:
            response = await self._transport.get(url, headers=headers)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            HTTP_REQUESTS.labels(self.source, type(e).__name__).inc()
            raise
        finally:
            self._release_slot()
        FETCH_LATENCY.labels(self.source).observe(time.monotonic() - started)
        HTTP_REQUESTS.labels(self.source, str(response.status)).inc()
        RESPONSE_BYTES.labels(self.source).inc(len(response.body))
        self.last_status = response.status
        if response.status in (429, 503):
            self.throttle(retry_after_seconds(response.headers.get("retry-after")), response.status)
        else:
            self._limiter.answered()
        return response

    async def pace(self) -> None:
        """Admit a call the source sends itself; its slot is held until the next call or the
        end of the attempt."""
        self._end_paced_call("ok")
        await self._admit()
        self._paced_since = time.monotonic()

    # --- the downloader's side ------------------------------------------------------------

    def finish(self, verdict: Verdict, error: str = "", status: str | None = None) -> None:
        """End the attempt: free the slot, settle the last request's permit with ``verdict``
        (``error``: the failure, for the breaker's "last error"). ``status``: the metric label
        of a paced call still open (the exception class that ended the attempt; default
        ``ok``, or ``error`` without a verdict). Idempotent."""
        if self._finished:
            return
        self._finished = True
        self._end_paced_call(status or ("ok" if verdict is Verdict.OK else "error"))
        self._release_slot()
        self._settle(verdict, error)

    # --- internals ------------------------------------------------------------------------

    async def _admit(self) -> None:
        # The source sent another request: it accepted the previous answer.
        self._settle(Verdict.OK)
        self._release_slot()
        breaker, limiter, host = self._breaker, self._limiter, self.host
        while True:
            if not breaker.ready():
                await self._wait_for_breaker()
            RATE_LIMIT_WAIT.labels(host).observe(await limiter.acquire())
            RATE_LIMIT_RATE.labels(host).set(limiter.rate)
            permit = breaker.try_acquire()
            BREAKER_STATE.labels(host).set(int(breaker.state))
            if permit is not None:
                break
        self._permit = permit
        # The token came first: a crowd released by a closing breaker still goes at the rate.
        await self._slots.acquire()
        self._slot = True
        self.sent += 1

    async def _wait_for_breaker(self) -> None:
        """Wait while the breaker blocks, spending from the unit's budget; raises
        :class:`~tickpipe_fetcher.breaker.CircuitOpenError` when the budget is spent."""
        started = self._monotonic()
        try:
            await self._breaker.wait_ready(started + self._budget.seconds)
        finally:
            waited = self._monotonic() - started
            self._budget.seconds = max(0.0, self._budget.seconds - waited)
            BREAKER_WAIT.labels(self.host).observe(waited)

    def _settle(self, verdict: Verdict, error: str = "") -> None:
        permit, self._permit = self._permit, None
        if permit is None:
            return
        if verdict is Verdict.OK:
            self._breaker.success(permit)
        elif verdict is Verdict.FAIL:
            self._breaker.failure(permit, error)
        else:
            self._breaker.release(permit)

    def _release_slot(self) -> None:
        if self._slot:
            self._slot = False
            self._slots.release()

    def _end_paced_call(self, status: str) -> None:
        if self._paced_since is None:
            return
        if status == "ok":
            FETCH_LATENCY.labels(self.source).observe(time.monotonic() - self._paced_since)
        HTTP_REQUESTS.labels(self.source, status).inc()
        self._paced_since = None

    def throttle(
        self, retry_after: float | None, status: int | str, *, force: bool = False
    ) -> None:
        """The host asked us to slow down (429/503, or a source's
        :class:`~tickpipe_fetcher.http.ThrottledFetchError`): halve its limiter's rate and pause
        it for ``retry_after`` seconds. ``status``: for the log."""
        limiter, host = self._limiter, self.host
        limiter.throttled(retry_after, force=force)
        if not (force or limiter.storm()):
            return  # a stray one: only this unit's retry waits (at least the Retry-After)
        RATE_LIMIT_THROTTLED.labels(host).inc()
        RATE_LIMIT_RATE.labels(host).set(limiter.rate)
        if limiter.paused_for() > 0:
            log.warning(
                "host throttled us, pausing",
                host=host,
                status=status,
                pause_s=round(limiter.paused_for(), 2),
                rate=round(limiter.rate, 3),
            )
