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

Modules: :mod:`.series` (synthetic data), :mod:`.captures` (recorded replies),
:mod:`.requests` (request checks and their errors), :mod:`.faults` (faults and stats),
:mod:`.server` (the WebSocket server and its routes).
"""

from tickpipe_dev.standin.deriv.captures import Capture, load_captures
from tickpipe_dev.standin.deriv.faults import DerivFaults, DerivStats
from tickpipe_dev.standin.deriv.requests import (
    DEFAULT_COUNT,
    LEGACY_GRANULARITIES,
    check_history_request,
)
from tickpipe_dev.standin.deriv.series import (
    DAY_S,
    HISTORY_START_S,
    SYMBOLS,
    SymbolSpec,
    SyntheticSeries,
)
from tickpipe_dev.standin.deriv.server import (
    LEGACY_PATH,
    PUBLIC_PATH,
    STANDIN_KEY,
    DerivStandin,
    DerivStandinServer,
    add_deriv_routes,
    start_deriv_standin,
)

__all__ = [
    "DAY_S",
    "DEFAULT_COUNT",
    "HISTORY_START_S",
    "LEGACY_GRANULARITIES",
    "LEGACY_PATH",
    "PUBLIC_PATH",
    "STANDIN_KEY",
    "SYMBOLS",
    "Capture",
    "DerivFaults",
    "DerivStandin",
    "DerivStandinServer",
    "DerivStats",
    "SymbolSpec",
    "SyntheticSeries",
    "add_deriv_routes",
    "check_history_request",
    "load_captures",
    "start_deriv_standin",
]
