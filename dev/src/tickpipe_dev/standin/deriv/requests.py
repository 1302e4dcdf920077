"""What the stand-in checks of a ``ticks_history`` request before answering it (deriv.md §2, §5):
the errors the real server gives for a field of the wrong type or value, or an unknown symbol."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from tickpipe_shared.sources import DERIV_GRANULARITIES

DEFAULT_COUNT = 5000
#: The legacy schema's granularity enumeration as the server's error message spells it.
LEGACY_GRANULARITIES = (0, *DERIV_GRANULARITIES)
_ENUMERATION = "{" + ",".join(str(g) for g in LEGACY_GRANULARITIES) + "}"
_SYMBOL = re.compile(r"^\w{2,30}$")
_INT_FIELDS = ("granularity", "count", "start", "subscribe", "adjust_start_time")


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
