"""A stand-in for Deriv's WebSocket API (``ticks_history``, ``ping``, ``authorize``).

Spec: ``../shared/docs/deriv.md`` (§1 endpoints, §2 request, §3 replies, §5 errors, §7 what a
stand-in must reproduce). :func:`add_deriv_routes` mounts it on an aiohttp app:

===================================  ==========================================================
path                                 what
===================================  ==========================================================
``/websockets/v3?app_id=<digits>``   legacy API; without a numeric ``app_id`` every call is
                                     answered with an ``InvalidAppID`` error
``/trading/v1/options/ws/public``    new public API (no ``app_id``, any integer granularity)
``GET|DELETE /_deriv/stats``         calls seen / reset them (:class:`DerivStats`)
``GET|POST /_deriv/control``         faults / change them (:class:`DerivFaults`, JSON object)
===================================  ==========================================================

Answers, on either path, one JSON text frame per request with ``req_id`` and ``echo_req``:

* ``ping`` → ``{"echo_req": …, "ping": "pong", "msg_type": "ping"}`` (capture ``ping_pong.json``);
* ``authorize`` → a virtual account (the token is not echoed), or ``InvalidToken`` when
  ``tokens`` is given and does not hold it;
* ``ticks_history`` → the *newest* ``count`` items in ``[start, end]`` (``history`` for ticks,
  ``candles`` for candles), or an error with ``msg_type: "ticks_history"`` (§5): a field of the
  wrong JSON type or value → ``InputValidationFailed`` naming it, like the recorded capture; an
  unknown symbol → ``InvalidSymbol``. ``subscribe`` is accepted and ignored (nothing streams).

Data: a request matching a recorded capture's symbol, style, granularity and window (the
recorded ``start``/``end``, or the span of the data when it was recorded with ``end:
"latest"``) with a ``count`` that holds it is answered with the recorded reply, values
untouched; only ``echo_req`` and ``req_id`` are the request's. Anything else comes from
:class:`SyntheticSeries`, a deterministic seeded random walk per symbol and UTC day (ticks every
2 s, every 1 s for ``1HZ*``; prices rounded to the symbol's ``pip_size``; ``frx*`` closed on
Saturdays and Sundays; nothing before 2015 or after the server's clock); candles are aggregated
from those ticks.

Faults (:class:`DerivFaults`) apply to ``ticks_history`` only: a reply delay, ``RateLimit``
error replies, and connections dropped (closed without a close frame) instead of answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import math
import random
import re
import time
import zlib
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType, web
from tickpipe_shared.sources import DERIV_GRANULARITIES

from tickpipe_dev.standin.control import updated

LEGACY_PATH = "/websockets/v3"
PUBLIC_PATH = "/trading/v1/options/ws/public"
DAY_S = 86_400
#: Nothing is served before this epoch (2015-01-01T00:00:00Z): "before history" is empty.
HISTORY_START_S = 1_420_070_400
DEFAULT_COUNT = 5000
#: The legacy schema's granularity enumeration as the server's error message spells it.
LEGACY_GRANULARITIES = (0, *DERIV_GRANULARITIES)
_ENUMERATION = "{" + ",".join(str(g) for g in LEGACY_GRANULARITIES) + "}"
_SYMBOL = re.compile(r"^\w{2,30}$")
_INT_FIELDS = ("granularity", "count", "start", "subscribe", "adjust_start_time")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """How a synthetic symbol behaves: decimals of its prices, level, seconds between ticks,
    and whether it trades on weekdays only (forex)."""

    pip_size: int
    base: float
    interval_s: int = 2
    weekdays_only: bool = False


SYMBOLS: dict[str, SymbolSpec] = {
    "R_10": SymbolSpec(3, 6000.0),
    "R_25": SymbolSpec(3, 3000.0),
    "R_50": SymbolSpec(4, 200.0),
    "R_75": SymbolSpec(4, 50000.0),
    "R_100": SymbolSpec(2, 1000.0),
    "1HZ10V": SymbolSpec(2, 9000.0, 1),
    "1HZ25V": SymbolSpec(2, 600000.0, 1),
    "1HZ50V": SymbolSpec(2, 200.0, 1),
    "1HZ75V": SymbolSpec(2, 4000.0, 1),
    "1HZ100V": SymbolSpec(2, 1000.0, 1),
    "frxEURUSD": SymbolSpec(5, 1.1, 2, True),
    "frxGBPUSD": SymbolSpec(5, 1.3, 2, True),
    "frxUSDJPY": SymbolSpec(3, 110.0, 2, True),
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# --- synthetic data ---------------------------------------------------------------------------


class SyntheticSeries:
    """Deterministic ticks for every symbol of :data:`SYMBOLS`, and candles built from them.

    Per UTC day: a random walk (step σ = 10⁻⁴ × the symbol's level) seeded by ``(seed, symbol,
    day)`` from a level that drifts slowly over the year, rounded to ``pip_size`` decimals. The
    same seed always gives the same prices; days are generated lazily and the last
    ``cache_days`` are kept.
    """

    def __init__(
        self, seed: int = 0, history_start_s: int = HISTORY_START_S, cache_days: int = 64
    ) -> None:
        self.seed = seed
        self.history_start_s = history_start_s
        self._cache: OrderedDict[tuple[str, int], tuple[IntArray, FloatArray]] = OrderedDict()
        self._cache_days = cache_days

    def day(self, symbol: str, day: int) -> tuple[IntArray, FloatArray]:
        """Ticks of UTC day number ``day`` (days since 1970-01-01): epochs (s, int64, ascending)
        and prices (float64). Empty before the history start, on closed days, for unknown
        symbols."""
        key = (symbol, day)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        out = self._generate(symbol, day)
        self._cache[key] = out
        if len(self._cache) > self._cache_days:
            self._cache.popitem(last=False)
        return out

    def _generate(self, symbol: str, day: int) -> tuple[IntArray, FloatArray]:
        spec = SYMBOLS.get(symbol)
        start = day * DAY_S
        closed = spec is None or start + DAY_S <= self.history_start_s or day < 0
        if not closed and spec is not None and spec.weekdays_only:
            closed = datetime.fromtimestamp(start, tz=UTC).weekday() >= 5
        if closed or spec is None:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        n = DAY_S // spec.interval_s
        times = start + np.arange(n, dtype=np.int64) * spec.interval_s
        rng = np.random.default_rng([self.seed, zlib.crc32(symbol.encode()), day])
        level = spec.base * (
            1 + 0.1 * math.sin(2 * math.pi * day / 365.25) + 0.02 * rng.standard_normal()
        )
        walk = np.cumsum(rng.standard_normal(n) * spec.base * 1e-4)
        prices = np.round(level + walk, spec.pip_size)
        keep = times >= self.history_start_s
        return times[keep], prices[keep]

    def _days_back(self, start: int, end: int) -> range:
        first = max(start, self.history_start_s) // DAY_S
        return range(end // DAY_S, first - 1, -1)

    def ticks(self, symbol: str, start: int, end: int, count: int) -> tuple[list[int], list[float]]:
        """The newest ``count`` ticks with ``start <= epoch <= end`` (s): epochs and prices,
        ascending."""
        times: list[IntArray] = []
        prices: list[FloatArray] = []
        total = 0
        if end >= start:
            for day in self._days_back(start, end):
                t, p = self.day(symbol, day)
                lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
                if hi > lo:
                    times.append(t[lo:hi])
                    prices.append(p[lo:hi])
                    total += int(hi - lo)
                if total >= count:
                    break
        if not times:
            return [], []
        all_t = np.concatenate(times[::-1])[-count:]
        all_p = np.concatenate(prices[::-1])[-count:]
        return [int(x) for x in all_t], [float(x) for x in all_p]

    def candles(
        self, symbol: str, granularity: int, start: int, end: int, count: int
    ) -> list[dict[str, Any]]:
        """The newest ``count`` candles of ``granularity`` seconds whose bucket start ``epoch``
        is in ``[start, end]``, built from the ticks in ``[start, end]`` (so a bucket cut by
        ``end`` is partial, as the real server's), ascending: ``{close, epoch, high, low,
        open}``."""
        buckets: dict[int, list[float]] = {}  # epoch → [open, high, low, close]
        if end >= start:
            for day in self._days_back(start, end):
                t, p = self.day(symbol, day)
                lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
                if hi > lo:
                    _merge_day(buckets, t[lo:hi], p[lo:hi], granularity)
                # Buckets starting on or after this day's start have all their ticks now.
                done = sum(1 for e in buckets if e >= day * DAY_S and e >= start)
                if done >= count:
                    break
        epochs = sorted(e for e in buckets if e >= start)[-count:]
        return [
            {"close": buckets[e][3], "epoch": e, "high": buckets[e][1], "low": buckets[e][2],
             "open": buckets[e][0]}
            for e in epochs
        ]  # fmt: skip


def _merge_day(
    buckets: dict[int, list[float]], t: IntArray, p: FloatArray, granularity: int
) -> None:
    """Fold one day's ticks (ascending) into ``buckets``, which hold only later ticks."""
    epochs = t - t % granularity
    first = np.flatnonzero(np.r_[True, epochs[1:] != epochs[:-1]])
    last = np.r_[first[1:], len(t)] - 1
    highs = np.maximum.reduceat(p, first)
    lows = np.minimum.reduceat(p, first)
    for i, j, high, low in zip(first.tolist(), last.tolist(), highs.tolist(), lows.tolist(),
                               strict=True):  # fmt: skip
        epoch = int(epochs[i])
        later = buckets.get(epoch)
        if later is None:
            buckets[epoch] = [float(p[i]), high, low, float(p[j])]
        else:
            later[0] = float(p[i])
            later[1] = max(later[1], high)
            later[2] = min(later[2], low)


# --- captures ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capture:
    """A recorded ``ticks_history`` reply and the request window it answers (epochs, s)."""

    file: str
    symbol: str
    style: str
    granularity: int | None
    start: int
    end: int
    items: int
    reply: Mapping[str, Any]

    def matches(self, symbol: str, style: str, granularity: int | None, start: int | None,
                end: int, count: int) -> bool:  # fmt: skip
        """Whether a request for this window, style and granularity gets this reply."""
        return (
            (symbol, style, granularity, start, end) ==
            (self.symbol, self.style, self.granularity, self.start, self.end)
            and count >= self.items
        )  # fmt: skip


def _item_epochs(reply: Mapping[str, Any]) -> list[int]:
    if reply.get("msg_type") == "history":
        return [int(t) for t in reply["history"]["times"]]
    return [int(c["epoch"]) for c in reply["candles"]]


def load_captures(root: Path) -> list[Capture]:
    """The ``ticks_history`` data replies listed in ``root/MANIFEST.csv`` (error captures are
    reproduced by the request checks instead). Raises :class:`ValueError` naming a file whose
    manifest row or body cannot be read."""
    manifest = root / "MANIFEST.csv"
    if not manifest.is_file():
        return []
    out: list[Capture] = []
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        name = row.get("file") or ""
        try:
            request = json.loads(row.get("request") or "{}")
            if not isinstance(request, dict) or "ticks_history" not in request:
                continue
            reply = json.loads((root / name).read_text())
            if reply.get("msg_type") not in ("history", "candles"):
                continue
            epochs = _item_epochs(reply)
            style = str(request.get("style", "ticks"))
            granularity = int(request.get("granularity", 60)) if style == "candles" else None
            if request.get("end") == "latest":
                if not epochs:
                    continue
                start, end = min(epochs), max(epochs)
            else:
                start, end = int(request["start"]), int(request["end"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"deriv capture {name!r} in {manifest}: {exc}") from None
        out.append(Capture(name, str(request["ticks_history"]), style, granularity, start, end,
                           len(epochs), reply))  # fmt: skip
    return out


# --- request checks ---------------------------------------------------------------------------


def _type_name(value: object) -> str:
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


def check_history_request(request: Mapping[str, Any], legacy: bool) -> tuple[str, str] | None:
    """The first invalid field of a ``ticks_history`` request and why, or ``None`` when valid
    (deriv.md §2). ``legacy``: granularity must be in the legacy enumeration."""
    symbol = request.get("ticks_history")
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        return "ticks_history", "String does not match '^\\w{2,30}$'"
    for name in _INT_FIELDS:
        if name not in request:
            continue
        value = request[name]
        if name == "granularity" and legacy and value not in LEGACY_GRANULARITIES:
            return name, f"does not have a value in the enumeration {_ENUMERATION}"
        if not isinstance(value, int) or isinstance(value, bool):
            return name, f"Expected integer - got {_type_name(value)}."
        if name == "count" and value < 1:
            return name, "Integer is less than 1"
        if name == "start" and not 0 <= value <= 9_999_999_999:
            return name, "Integer is out of range"
        if name == "granularity" and value < 0:
            return name, "Integer is less than 0"
        if name in ("subscribe", "adjust_start_time") and value not in ((1,) if legacy else (0, 1)):
            return name, "does not have a value in the enumeration " + (
                "{1}" if legacy else "{0,1}"
            )
    end = request.get("end")
    # 2018 servers accepted an integer end (see the captures' echo_req); the schema says string.
    if isinstance(end, bool) or not (
        end == "latest"
        or (isinstance(end, int) and 0 <= end <= 9_999_999_999)
        or (isinstance(end, str) and end.isdigit() and 1 <= len(end) <= 10)
    ):
        return "end", "String does not match '^(latest|[0-9]{1,10})$'"
    if request.get("style", "ticks") not in ("ticks", "candles"):
        return "style", "does not have a value in the enumeration {candles,ticks}"
    if "req_id" in request and (
        not isinstance(request["req_id"], int) or isinstance(request["req_id"], bool)
    ):
        return "req_id", f"Expected integer - got {_type_name(request['req_id'])}."
    return None


# --- faults and stats -------------------------------------------------------------------------


@dataclass
class DerivFaults:
    """Faults on ``ticks_history`` calls. Per call, in order: wait ``delay_ms`` (+ uniform
    ``jitter_ms``); then drop the connection without answering (``drop_next`` > 0 counts down,
    else with probability ``p_drop``), or answer ``RateLimit`` (``rate_limit_next`` > 0 counts
    down, else with probability ``p_rate_limit``). Random draws use a RNG seeded with
    ``seed``."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    p_rate_limit: float = 0.0
    p_drop: float = 0.0
    rate_limit_next: int = 0
    drop_next: int = 0
    seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ValueError` for an out-of-range setting."""
        for name in ("p_rate_limit", "p_drop"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name in ("delay_ms", "jitter_ms", "rate_limit_next", "drop_next"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def updated(self, changes: Mapping[str, Any]) -> DerivFaults:
        """A copy with ``changes`` applied; unknown keys or wrong types raise ValueError."""
        return updated(self, changes)


@dataclass
class DerivStats:
    """What the stand-in saw. ``calls``: count per call name (``ticks_history``, ``ping``,
    ``authorize``, ``unknown``); ``history``: one entry per ``ticks_history`` call (``t``: wall
    time s, ``symbol``, ``style``, ``granularity``, ``start``, ``end``, ``count``, ``outcome``:
    ``synthetic``, ``capture:<file>``, ``error:<code>`` or ``dropped``; ``items``)."""

    started: float = field(default_factory=time.time)
    connections: int = 0
    open_connections: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    history: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def reset(self) -> None:
        """Forget everything seen (open connections stay counted as open)."""
        self.started = time.time()
        self.connections = 0
        self.calls.clear()
        self.history.clear()
        self.max_in_flight = self.in_flight

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready snapshot."""
        return {
            "since": self.started,
            "connections": self.connections,
            "open_connections": self.open_connections,
            "calls": dict(self.calls),
            "max_in_flight": self.max_in_flight,
            "history": self.history,
        }


# --- the server -------------------------------------------------------------------------------


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
            reply, entry["outcome"] = self._history_reply(request, legacy)
            if "error" not in reply:
                entry["items"] = len(_item_epochs(reply))
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
