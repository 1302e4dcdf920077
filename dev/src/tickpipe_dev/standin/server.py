"""An aiohttp server standing in for Dukascopy's legacy datafeed and JSON API hosts, Polygon's
aggregates endpoint and Deriv's WebSocket API.

It serves a directory laid out like ``../shared/data/dukascopy/`` (``bi5/``, ``json/``,
``meta/``; see ``../shared/docs/dukascopy.md §2.1, §3.1`` for the URL schemes it mirrors), the
Polygon captures of ``../shared/data/polygon/`` (:mod:`tickpipe_dev.standin.polygon`), and the
Deriv WebSocket API over ``../shared/data/deriv/`` (:mod:`tickpipe_dev.standin.deriv`, with its
own stats and faults under ``/_deriv/``):

================================================  ===============================================
request                                           answer
================================================  ===============================================
``GET /datafeed/<SYMBOL>/<path>``                 ``<root>/bi5/<SYMBOL>/<path>``
                                                  (``application/octet-stream``). Missing: a tick
                                                  file (``*_ticks.bi5``) → 200 with a 0-byte body
                                                  (how the datafeed answered for closed hours;
                                                  ``missing_bi5="404"`` to change), else 404.
``GET /v1/instruments``                           ``<root>/meta/raw-meta-data-2026-07-13.json``
``GET /v1/instruments/<CODE>``                    ``<root>/json/instruments/<CODE>.json`` or 404
``GET /v1/<path>``                                ``<root>/json/<path>.json``; with ``?from=<ms>``
                                                  ``<root>/json/<path>.from-<ms>.json``. Missing:
                                                  404, or with ``missing_json="empty"`` the
                                                  empty-bucket shape of §3.3 (below).
``GET /v2/aggs/ticker/<T>/range/<…>``             the Polygon capture recorded for the request,
                                                  else 200 ``OK`` without ``results``; 401
                                                  without the configured ``polygon_api_key``
``/websockets/v3``, ``/trading/v1/options/ws/…``  the Deriv stand-in (WebSocket)
``GET /healthz``                                  200 ``ok``
``GET /_stats`` / ``DELETE /_stats``              request log and counts / reset them
``GET /_control`` / ``POST /_control``            current faults / change them (JSON object)
================================================  ===============================================

Empty buckets (``missing_json="empty"``) are built only for the URL shapes of §3.1: ``timestamp``
is the requested bucket's start (or the ``from`` value), ``multiplier`` is ``10^-priceScale`` of
the instrument in the ``instruments`` list (1 when ``priceScale`` is null); an instrument code
that is not in the list, or any other path, stays 404.

Fault injection (:class:`Faults`) applies to ``/datafeed``, ``/v1`` and ``/v2`` requests only,
in this order: a delay of ``latency_ms`` (+ uniform ``jitter_ms``); then one draw of a seeded
RNG picks at most one of 500, 503, 429 (with ``Retry-After``) or an HTML error page (status
``html_status``, default 200 — the nasty case); otherwise the real answer is sent, and with
probability ``p_truncate`` (non-empty 200 bodies only) it is truncated to half: ``"abort"`` declares
the full ``Content-Length`` and drops the connection mid-body (the HTTP client must notice),
``"short"`` sends half the bytes with a matching length (the decoder must notice).
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from tickpipe_dev.standin.control import updated
from tickpipe_dev.standin.deriv import LEGACY_PATH, PUBLIC_PATH, add_deriv_routes
from tickpipe_dev.standin.polygon import (
    AGGS_PATH,
    PAGE_STATUSES,
    PolygonCaptures,
    default_polygon_root,
)

INSTRUMENTS_FILE = "meta/raw-meta-data-2026-07-13.json"
BI5_TYPE = "application/octet-stream"
JSON_TYPE = "application/json"
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Error</title></head>"
    b"<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>"
)
_SHIFT_MS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


@dataclass
class Faults:
    """Fault injection settings; probabilities are per request, in [0, 1]."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    p_500: float = 0.0
    p_503: float = 0.0
    p_429: float = 0.0
    retry_after_s: float = 1.0
    p_html: float = 0.0
    html_status: int = 200
    p_truncate: float = 0.0
    truncate_mode: Literal["abort", "short"] = "abort"
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ValueError` for an out-of-range setting."""
        probs = {"p_500": self.p_500, "p_503": self.p_503, "p_429": self.p_429,
                 "p_html": self.p_html, "p_truncate": self.p_truncate}  # fmt: skip
        for name, p in probs.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if self.p_500 + self.p_503 + self.p_429 + self.p_html > 1.0:
            raise ValueError("p_500 + p_503 + p_429 + p_html must not exceed 1")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.retry_after_s < 0:
            raise ValueError("latency_ms, jitter_ms and retry_after_s must be >= 0")
        if self.truncate_mode not in ("abort", "short"):
            raise ValueError(
                f"truncate_mode must be 'abort' or 'short', got {self.truncate_mode!r}"
            )
        if not 100 <= self.html_status <= 599:
            raise ValueError(f"html_status must be an HTTP status, got {self.html_status}")

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` applied; unknown keys or wrong types raise ValueError."""
        return updated(self, changes)


@dataclass
class Missing:
    """What to answer for a file that is not in the tree."""

    bi5: Literal["empty", "404"] = "empty"
    json: Literal["404", "empty"] = "404"

    def validate(self) -> None:
        if self.bi5 not in ("empty", "404"):
            raise ValueError(f"missing bi5 must be 'empty' or '404', got {self.bi5!r}")
        if self.json not in ("empty", "404"):
            raise ValueError(f"missing json must be 'empty' or '404', got {self.json!r}")


@dataclass
class Stats:
    """Requests seen on ``/datafeed`` and ``/v1`` (and unknown paths)."""

    started: float = field(default_factory=time.time)
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        self.started = time.time()
        self.requests.clear()
        self.max_in_flight = self.in_flight

    def as_json(self) -> dict[str, Any]:
        by_path: dict[str, Counter[str]] = defaultdict(Counter)
        for r in self.requests:
            by_path[r["path"]][str(r["status"])] += 1
        return {
            "since": self.started,
            "total": len(self.requests),
            "by_status": dict(Counter(str(r["status"]) for r in self.requests)),
            "by_path": {p: dict(c) for p, c in by_path.items()},
            "max_in_flight": self.max_in_flight,
            "requests": self.requests,
        }


class StandinServer:
    """A running stand-in server (see the module docstring). Create with :func:`start_standin`.

    ``url`` is ``http://host:port``; point the fetcher's ``dukascopy_bi5_url`` at
    ``datafeed_url``, ``dukascopy_json_url`` at ``json_url`` and ``polygon_url`` at
    ``polygon_url``. ``polygon_root``: the Polygon captures (default: ``polygon/`` beside
    ``root``, when it exists); ``polygon_api_key``: the key Polygon requests must carry (None:
    any). ``faults``, ``missing``, ``polygon_api_key`` and ``stats`` may be read and replaced
    in-process as well as through ``/_control``.
    """

    def __init__(
        self,
        root: Path,
        faults: Faults | None = None,
        missing: Missing | None = None,
        polygon_root: Path | None = None,
        polygon_api_key: str | None = None,
        deriv_root: Path | None = None,
    ):
        self.root = root.resolve()
        polygon_root = polygon_root or default_polygon_root(self.root)
        self.polygon = PolygonCaptures(polygon_root) if polygon_root is not None else None
        self.polygon_api_key = polygon_api_key
        self.polygon_status = "OK"
        deriv_root = deriv_root or self.root.parent / "deriv"
        self.deriv_root = deriv_root if deriv_root.is_dir() else None
        self.faults = faults or Faults()
        self.faults.validate()
        self.missing = missing or Missing()
        self.missing.validate()
        self.stats = Stats()
        self.rng = random.Random(self.faults.seed)
        self.host = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._cache: dict[Path, bytes] = {}
        self._scales: dict[str, int | None] | None = None
        self.app = self._make_app()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def datafeed_url(self) -> str:
        return f"{self.url}/datafeed"

    @property
    def json_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def polygon_url(self) -> str:
        return self.url

    @property
    def deriv_url(self) -> str:
        """The legacy Deriv endpoint without ``app_id`` (what ``TICKPIPE_DERIV_URL`` takes)."""
        return f"ws://{self.host}:{self.port}{LEGACY_PATH}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self.host = host
        self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> StandinServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings and reseed the RNG with ``faults.seed``."""
        faults.validate()
        self.faults = faults
        self.rng = random.Random(faults.seed)

    # --- app ------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/_stats", self._get_stats)
        app.router.add_delete("/_stats", self._reset_stats)
        app.router.add_get("/_control", self._get_control)
        app.router.add_post("/_control", self._post_control)
        app.router.add_get("/datafeed/{symbol}/{tail:.+}", self._datafeed)
        app.router.add_get("/v1/instruments", self._instruments)
        app.router.add_get("/v1/instruments/{code}", self._instrument)
        app.router.add_get("/v1/{tail:.+}", self._v1)
        app.router.add_get(AGGS_PATH, self._polygon_aggs)
        add_deriv_routes(app, self.deriv_root)
        return app

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Deriv sockets live long and keep their own stats (/_deriv/stats).
        if request.path in ("/healthz", LEGACY_PATH, PUBLIC_PATH) or request.path.startswith("/_"):
            return await handler(request)
        t = time.time()
        stats = self.stats
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        status = 599
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            stats.in_flight -= 1
            stats.requests.append({"t": t, "path": request.path_qs, "status": status})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_json())

    async def _reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.as_json())

    def _control_state(self) -> dict[str, Any]:
        # Whether a Polygon key is required, never the key itself.
        return {"faults": asdict(self.faults), "missing": asdict(self.missing),
                "polygon_auth": bool(self.polygon_api_key),
                "polygon_status": self.polygon_status}  # fmt: skip

    async def _get_control(self, request: web.Request) -> web.Response:
        return web.json_response(self._control_state())

    async def _post_control(self, request: web.Request) -> web.Response:
        """Body: fault settings to change, plus optional ``missing: {bi5, json}``,
        ``polygon_api_key`` (a string, or null for none), ``polygon_status`` (``OK`` or
        ``DELAYED``: what pages that would say ``OK`` say), ``reset`` (true: all faults back to
        defaults first) and ``reset_stats`` (true: clear stats)."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            body = dict(body)
            missing = body.pop("missing", None)
            reset_stats = body.pop("reset_stats", False)
            key = body.pop("polygon_api_key", self.polygon_api_key)
            if key is not None and not isinstance(key, str):
                raise ValueError("polygon_api_key must be a string or null")
            page_status = body.pop("polygon_status", self.polygon_status)
            if page_status not in PAGE_STATUSES:
                raise ValueError(f"polygon_status must be one of {sorted(PAGE_STATUSES)}, "
                                 f"got {page_status!r}")  # fmt: skip
            base = Faults() if body.pop("reset", False) else self.faults
            faults = base.updated(body)
            new_missing = self.missing
            if missing is not None:
                if not isinstance(missing, dict):
                    raise ValueError("missing must be an object {bi5, json}")
                new_missing = Missing(**{**asdict(self.missing), **missing})
                new_missing.validate()
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.set_faults(faults)
        self.missing = new_missing
        self.polygon_api_key = key or None
        self.polygon_status = page_status
        if reset_stats:
            self.stats.reset()
        return web.json_response(self._control_state())

    # --- files ----------------------------------------------------------------------------

    def _file(self, rel: str) -> Path | None:
        """``root/rel`` if it is a file inside its top folder (``bi5/``, ``json/``…), else None.

        Segments ``..``/``.``/empty (e.g. from ``%2F`` in the URL) are refused, and so is
        anything that resolves outside the folder (symlinks).
        """
        parts = rel.split("/")
        if any(p in ("", ".", "..") or "\\" in p for p in parts):
            return None
        path = (self.root / rel).resolve()
        if not path.is_relative_to((self.root / parts[0]).resolve()) or not path.is_file():
            return None
        return path

    async def _read(self, path: Path) -> bytes:
        data = self._cache.get(path)
        if data is None:
            data = await asyncio.to_thread(path.read_bytes)
            self._cache[path] = data
        return data

    # --- faults ---------------------------------------------------------------------------

    async def _injected(self) -> web.Response | None:
        f = self.faults
        delay = f.latency_ms + (self.rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0)
        if delay > 0:
            await asyncio.sleep(delay / 1000)
        r = self.rng.random()
        if r < f.p_500:
            return web.Response(status=500, text="500 Internal Server Error")
        r -= f.p_500
        if r < f.p_503:
            return web.Response(status=503, text="503 Service Unavailable")
        r -= f.p_503
        if r < f.p_429:
            headers = {"Retry-After": f"{f.retry_after_s:g}"}
            return web.Response(status=429, text="429 Too Many Requests", headers=headers)
        r -= f.p_429
        if r < f.p_html:
            return web.Response(status=f.html_status, body=HTML_PAGE, content_type="text/html")
        return None

    async def _send(
        self, request: web.Request, body: bytes, content_type: str, status: int = 200
    ) -> web.StreamResponse:
        if status != 200:
            return web.Response(status=status, body=body, content_type=content_type)
        if body and self.faults.p_truncate and self.rng.random() < self.faults.p_truncate:
            half = body[: len(body) // 2]
            if self.faults.truncate_mode == "short":
                return web.Response(body=half, content_type=content_type)
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(half)
            if request.transport is not None:
                request.transport.close()
            return resp
        return web.Response(body=body, content_type=content_type)

    # --- handlers -------------------------------------------------------------------------

    async def _datafeed(self, request: web.Request) -> web.StreamResponse:
        injected = await self._injected()
        if injected is not None:
            return injected
        rel = f"bi5/{request.match_info['symbol']}/{request.match_info['tail']}"
        path = self._file(rel)
        if path is not None:
            return await self._send(request, await self._read(path), BI5_TYPE)
        if rel.endswith("_ticks.bi5") and self.missing.bi5 == "empty":
            return web.Response(body=b"", content_type=BI5_TYPE)
        raise web.HTTPNotFound(text="404 Not Found")

    async def _instruments(self, request: web.Request) -> web.StreamResponse:
        injected = await self._injected()
        if injected is not None:
            return injected
        path = self._file(INSTRUMENTS_FILE)
        if path is None:
            raise web.HTTPNotFound(text="404 Not Found")
        return await self._send(request, await self._read(path), JSON_TYPE)

    async def _instrument(self, request: web.Request) -> web.StreamResponse:
        injected = await self._injected()
        if injected is not None:
            return injected
        path = self._file(f"json/instruments/{request.match_info['code']}.json")
        if path is None:
            raise web.HTTPNotFound(text="404 Not Found")
        return await self._send(request, await self._read(path), JSON_TYPE)

    async def _v1(self, request: web.Request) -> web.StreamResponse:
        injected = await self._injected()
        if injected is not None:
            return injected
        tail = request.match_info["tail"]
        frm = request.query.get("from")
        rel = f"json/{tail}.from-{frm}.json" if frm is not None else f"json/{tail}.json"
        path = self._file(rel)
        if path is not None:
            return await self._send(request, await self._read(path), JSON_TYPE)
        if self.missing.json == "empty":
            body = await self._empty_bucket(tail, frm)
            if body is not None:
                return web.json_response(body)
        raise web.HTTPNotFound(text="404 Not Found")

    async def _polygon_aggs(self, request: web.Request) -> web.StreamResponse:
        injected = await self._injected()
        if injected is not None:
            return injected
        if self.polygon is None:
            raise web.HTTPNotFound(text="404 Not Found: no Polygon captures configured")
        reply = await asyncio.to_thread(
            self.polygon.reply,
            dict(request.match_info),
            dict(request.query),
            request.headers.get("Authorization"),
            f"{request.scheme}://{request.host}",
            self.polygon_api_key,
            self.polygon_status,
        )
        return await self._send(request, reply.body, JSON_TYPE, reply.status)

    # --- empty buckets --------------------------------------------------------------------

    async def _price_scales(self) -> dict[str, int | None]:
        if self._scales is None:
            scales: dict[str, int | None] = {}
            path = self._file(INSTRUMENTS_FILE)
            if path is not None:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    meta = json.loads(await self._read(path))
                    for inst in meta["instruments"]:
                        scales[str(inst["code"])] = inst.get("priceScale")
            self._scales = scales
        return self._scales

    async def _empty_bucket(self, tail: str, frm: str | None) -> dict[str, Any] | None:
        """The §3.3 empty response for a ticks/candles URL, or None for anything else."""
        parts = tail.split("/")
        try:
            if parts[0] == "ticks" and len(parts) >= 2:
                code, nums, kind, shift = parts[1], parts[2:], "ticks", None
                if frm is None and len(nums) != 4:
                    return None
            elif parts[0] == "candles" and len(parts) >= 4 and parts[1] in _SHIFT_MS:
                code, nums, kind = parts[2], parts[4:], "candles"
                shift = _SHIFT_MS[parts[1]]
                expected = {"minute": 3, "hour": 2, "day": 1}[parts[1]]
                if parts[3] not in ("BID", "ASK") or (frm is None and len(nums) != expected):
                    return None
            else:
                return None
            if frm is not None:
                if nums:
                    return None
                timestamp = int(frm)
            else:
                y, m, d, h = ([int(n) for n in nums] + [1, 1, 0][len(nums) - 1 :])[:4]
                timestamp = calendar.timegm(datetime(y, m, d, h, tzinfo=UTC).timetuple()) * 1000
        except ValueError:
            return None
        scales = await self._price_scales()
        if code not in scales:
            return None
        scale = scales[code] or 0
        head: dict[str, Any] = {"timestamp": timestamp, "multiplier": 10.0**-scale}
        bases: tuple[str, ...]
        columns: tuple[str, ...]
        if kind == "ticks":
            bases, columns = ("ask", "bid"), ("times", "asks", "bids", "askVolumes", "bidVolumes")
        else:
            head["shift"] = shift
            bases = ("open", "high", "low", "close")
            columns = ("times", "opens", "highs", "lows", "closes", "volumes")
        return {**head, **dict.fromkeys(bases), **{c: [] for c in columns}}


async def start_standin(
    root: Path,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: Faults | None = None,
    missing: Missing | None = None,
    polygon_root: Path | None = None,
    polygon_api_key: str | None = None,
    deriv_root: Path | None = None,
) -> StandinServer:
    """Start a stand-in server on ``host:port`` (port 0: an ephemeral port) serving ``root``.

    ``root`` is laid out like ``../shared/data/dukascopy`` (``bi5/``, ``json/``, ``meta/``);
    ``polygon_root`` like ``../shared/data/polygon`` and ``deriv_root`` like
    ``../shared/data/deriv`` (default: beside ``root``; without captures Deriv answers with its
    synthetic series only).
    Returns the running :class:`StandinServer`; call ``await server.stop()`` (or use it as an
    async context manager) to shut it down.
    """
    server = StandinServer(root, faults=faults, missing=missing, polygon_root=polygon_root,
                           polygon_api_key=polygon_api_key, deriv_root=deriv_root)  # fmt: skip
    await server.start(host, port)
    return server
