"""The WebSocket server: the two endpoints, the control and stats routes, and a runnable server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from tickpipe_dev.standin.deriv.captures import Capture, item_epochs, load_captures
from tickpipe_dev.standin.deriv.faults import DerivFaults, DerivStats
from tickpipe_dev.standin.deriv.requests import DEFAULT_COUNT, check_history_request
from tickpipe_dev.standin.deriv.series import DAY_S, SYMBOLS, SyntheticSeries

LEGACY_PATH = "/websockets/v3"
PUBLIC_PATH = "/trading/v1/options/ws/public"


def _error(call: str, request: Mapping[str, Any] | None, code: str, message: str,
           details: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """An error reply (deriv.md §5): ``echo_req``, ``error``, ``msg_type`` = the call's name."""
    error: dict[str, Any] = {}
    if details:
        error["details"] = dict(details)
    error.update(message=message, code=code)
    reply: dict[str, Any] = {"echo_req": dict(request or {}), "error": error, "msg_type": call}
    if request is not None and isinstance(request.get("req_id"), int):
        reply["req_id"] = request["req_id"]
    return reply


class DerivStandin:
    """The stand-in's state and WebSocket handler (see the module docstring).

    ``root``: ``../shared/data/deriv`` (its captures are served) or ``None`` (synthetic data
    only). ``tokens``: the API tokens ``authorize`` accepts (``None``: any non-empty one).
    ``clock``: wall time in seconds, the newest data served. ``faults`` and ``stats`` may be
    read and replaced in-process as well as through ``/_deriv/control`` and ``/_deriv/stats``.
    """

    def __init__(
        self,
        root: Path | None,
        faults: DerivFaults | None = None,
        *,
        seed: int = 0,
        tokens: frozenset[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.captures = load_captures(root) if root is not None else []
        self.series = SyntheticSeries(seed)
        self.faults = faults or DerivFaults()
        self.faults.validate()
        self.rng = random.Random(self.faults.seed)
        self.stats = DerivStats()
        self.tokens = tokens
        self.clock = clock
        self._sockets: set[web.WebSocketResponse] = set()

    def set_faults(self, faults: DerivFaults) -> None:
        """Replace the fault settings and reseed the RNG with ``faults.seed``."""
        faults.validate()
        self.faults = faults
        self.rng = random.Random(faults.seed)

    # --- HTTP control ---------------------------------------------------------------------

    async def get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats.as_json())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.as_json())

    async def get_control(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": asdict(self.faults)})

    async def post_control(self, request: web.Request) -> web.Response:
        """Body: fault settings to change, plus ``reset`` (true: defaults first) and
        ``reset_stats`` (true: clear stats)."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            body = dict(body)
            reset_stats = body.pop("reset_stats", False)
            base = DerivFaults() if body.pop("reset", False) else self.faults
            faults = base.updated(body)
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.set_faults(faults)
        if reset_stats:
            self.stats.reset()
        return web.json_response({"faults": asdict(self.faults)})

    async def close_all(self, app: web.Application | None = None) -> None:
        """Close every open WebSocket (on application shutdown)."""
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutdown")

    # --- WebSocket --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """One WebSocket connection: answer its frames until it closes."""
        legacy = request.path.rstrip("/") == LEGACY_PATH
        app_ok = not legacy or request.query.get("app_id", "").isdigit()
        ws = web.WebSocketResponse(autoping=True, max_msg_size=4 * 1024 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.stats.connections += 1
        self.stats.open_connections += 1
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                task = asyncio.create_task(self._answer(ws, request, str(msg.data), legacy, app_ok))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            self.stats.open_connections -= 1
            self._sockets.discard(ws)
            for task in list(tasks):
                task.cancel()
        return ws

    async def _answer(self, ws: web.WebSocketResponse, request: web.Request, text: str,
                      legacy: bool, app_ok: bool) -> None:  # fmt: skip
        reply = await self._reply(request, text, legacy, app_ok)
        if reply is not None and not ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps(reply))

    async def _reply(self, http: web.Request, text: str, legacy: bool,
                     app_ok: bool) -> dict[str, Any] | None:  # fmt: skip
        """The reply to one frame, or ``None`` when the connection was dropped instead."""
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            request = None
        if not isinstance(request, dict):
            self.stats.calls["unknown"] += 1
            return _error("error", None, "InputValidationFailed",
                          "Input validation failed: the request is not a JSON object")  # fmt: skip
        call = next((c for c in ("ticks_history", "ping", "authorize") if c in request), "")
        self.stats.calls[call or "unknown"] += 1
        if not call:
            return _error("error", request, "UnrecognisedRequest", "Unrecognised request.")
        if not app_ok:
            return _error(call, request, "InvalidAppID", "Your app_id is invalid.")
        if call == "ping":
            reply: dict[str, Any] = {"echo_req": request, "ping": "pong", "msg_type": "ping"}
            if isinstance(request.get("req_id"), int):
                reply["req_id"] = request["req_id"]
            return reply
        if call == "authorize":
            return self._authorize(request)
        return await self._history(http, request, legacy)

    def _authorize(self, request: Mapping[str, Any]) -> dict[str, Any]:
        token = request.get("authorize")
        # The real server never echoes the token either.
        echo = {**request, "authorize": "<not shown>"}
        if (
            not isinstance(token, str)
            or not token
            or (self.tokens is not None and token not in self.tokens)
        ):
            return _error("authorize", echo, "InvalidToken", "The token is invalid.")
        reply: dict[str, Any] = {
            "authorize": {"loginid": "VRTC0000001", "is_virtual": 1, "scopes": ["read"]},
            "echo_req": echo,
            "msg_type": "authorize",
        }
        if isinstance(request.get("req_id"), int):
            reply["req_id"] = request["req_id"]
        return reply

    async def _history(self, http: web.Request, request: Mapping[str, Any],
                       legacy: bool) -> dict[str, Any] | None:  # fmt: skip
        entry: dict[str, Any] = {
            "t": time.time(),
            **{k: request.get(k) for k in ("style", "granularity", "start", "end", "count")},
            "symbol": request.get("ticks_history"),
        }
        self.stats.history.append(entry)
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            f = self.faults
            delay = f.delay_ms + (self.rng.uniform(0, f.jitter_ms) if f.jitter_ms else 0.0)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if f.drop_next > 0 or (f.p_drop and self.rng.random() < f.p_drop):
                f.drop_next = max(0, f.drop_next - 1)
                entry["outcome"] = "dropped"
                if http.transport is not None:
                    http.transport.close()
                return None
            if f.rate_limit_next > 0 or (f.p_rate_limit and self.rng.random() < f.p_rate_limit):
                f.rate_limit_next = max(0, f.rate_limit_next - 1)
                entry["outcome"] = "error:RateLimit"
                return _error("ticks_history", request, "RateLimit",
                              "You have reached the rate limit for ticks_history.")  # fmt: skip
            if f.market_closed_next > 0:
                f.market_closed_next -= 1
                entry["outcome"] = "error:MarketIsClosed"
                return _error("ticks_history", request, "MarketIsClosed",
                              "This market is presently closed.")  # fmt: skip
            reply, entry["outcome"] = self._history_reply(request, legacy)
            if "error" not in reply:
                entry["items"] = len(item_epochs(reply))
            return reply
        finally:
            self.stats.in_flight -= 1

    def history_reply(self, request: Mapping[str, Any], legacy: bool = True) -> dict[str, Any]:
        """The reply to a ``ticks_history`` request (no faults): data or an error object."""
        return self._history_reply(request, legacy)[0]

    def _history_reply(
        self, request: Mapping[str, Any], legacy: bool
    ) -> tuple[dict[str, Any], str]:
        """The reply and where it came from (``synthetic``, ``capture:<file>``,
        ``error:<code>``)."""
        bad = check_history_request(request, legacy)
        if bad is not None:
            name, why = bad
            reply = _error("ticks_history", request, "InputValidationFailed",
                           f"Input validation failed: {name}", {name: why})  # fmt: skip
            return reply, "error:InputValidationFailed"
        symbol = str(request["ticks_history"])
        style = str(request.get("style", "ticks"))
        granularity = int(request.get("granularity", 60)) if style == "candles" else None
        count = int(request.get("count", DEFAULT_COUNT))
        now = int(self.clock())
        end = now if request["end"] == "latest" else int(request["end"])
        start_value = request.get("start")
        for capture in self.captures:
            if capture.matches(symbol, style, granularity, start_value, end, count):
                return self._from_capture(capture, request), f"capture:{capture.file}"
        if symbol not in SYMBOLS:
            reply = _error("ticks_history", request, "InvalidSymbol", f"Symbol {symbol} invalid.")
            return reply, "error:InvalidSymbol"
        if granularity is not None and granularity <= 0:
            reply = _error("ticks_history", request, "InputValidationFailed",
                           "Input validation failed: granularity",
                           {"granularity": "candles need a granularity > 0"})  # fmt: skip
            return reply, "error:InputValidationFailed"
        if start_value is None:
            # §2: one day back, except for candles asked by count or granularity.
            explicit = "count" in request or "granularity" in request
            start = 0 if style == "candles" and explicit else now - DAY_S
        else:
            start = int(start_value)
        end = min(end, now)
        if granularity is None:
            times, prices = self.series.ticks(symbol, start, end, count)
            reply = {"echo_req": dict(request), "history": {"prices": prices, "times": times},
                     "msg_type": "history"}  # fmt: skip
        else:
            candles = self.series.candles(symbol, granularity, start, end, count)
            reply = {"candles": candles, "echo_req": dict(request), "msg_type": "candles"}
        reply["pip_size"] = SYMBOLS[symbol].pip_size
        if "req_id" in request:
            reply["req_id"] = request["req_id"]
        return reply, "synthetic"

    def _from_capture(self, capture: Capture, request: Mapping[str, Any]) -> dict[str, Any]:
        reply = dict(capture.reply)
        reply["echo_req"] = dict(request)
        reply.pop("req_id", None)
        if "req_id" in request:
            reply["req_id"] = request["req_id"]
        return reply


STANDIN_KEY = web.AppKey("tickpipe_deriv_standin", DerivStandin)


def add_deriv_routes(
    app: web.Application, root: Path | None, *, standin: DerivStandin | None = None
) -> None:
    """Mount the Deriv stand-in on ``app``: the two WebSocket paths and ``/_deriv/…`` control
    (module docstring). ``root``: ``../shared/data/deriv`` or ``None``; ``standin``: an
    existing state to serve instead of a new one. The state is ``app[STANDIN_KEY]``; its
    sockets are closed on application shutdown."""
    state = standin if standin is not None else DerivStandin(root)
    app[STANDIN_KEY] = state
    app.router.add_get(LEGACY_PATH, state.handle)
    app.router.add_get(PUBLIC_PATH, state.handle)
    app.router.add_get("/_deriv/stats", state.get_stats)
    app.router.add_delete("/_deriv/stats", state.reset_stats)
    app.router.add_get("/_deriv/control", state.get_control)
    app.router.add_post("/_deriv/control", state.post_control)
    app.on_shutdown.append(state.close_all)


class DerivStandinServer:
    """A running stand-alone Deriv stand-in (:func:`start_deriv_standin`). ``url`` is the legacy
    endpoint without ``app_id`` (what ``TICKPIPE_DERIV_URL`` takes), ``public_url`` the new
    one, ``http_url`` the control base."""

    def __init__(self, standin: DerivStandin, runner: web.AppRunner, host: str, port: int):
        self.standin = standin
        self._runner: web.AppRunner | None = runner
        self.host = host
        self.port = port

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{LEGACY_PATH}"

    @property
    def public_url(self) -> str:
        return f"ws://{self.host}:{self.port}{PUBLIC_PATH}"

    @property
    def stats(self) -> DerivStats:
        return self.standin.stats

    async def stop(self) -> None:
        """Close open sockets and stop listening."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> DerivStandinServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_deriv_standin(
    root: Path | None,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: DerivFaults | None = None,
    *,
    seed: int = 0,
    tokens: frozenset[str] | None = None,
    clock: Callable[[], float] = time.time,
) -> DerivStandinServer:
    """Start a Deriv stand-in alone on ``host:port`` (port 0: an ephemeral port).

    ``root``: ``../shared/data/deriv`` or ``None``. Stop it with ``await server.stop()`` (or use
    it as an async context manager).
    """
    standin = DerivStandin(root, faults, seed=seed, tokens=tokens, clock=clock)
    app = web.Application()
    add_deriv_routes(app, root, standin=standin)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return DerivStandinServer(standin, runner, host, int(runner.addresses[0][1]))
