"""Reading a JSON payload body: one place for the size limit and the error messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tickpipe_decoder.errors import DecodeError

#: Largest JSON body decoded (a busy hour of ticks is a few MB; anything near this is garbage).
MAX_BODY_BYTES = 512 * 1024 * 1024


def load_json(body: bytes, what: str, parse_float: Callable[[str], Any] = float) -> Any:
    """The parsed JSON value of ``body`` (``parse_float`` as in :func:`json.loads`).

    :raises DecodeError: an empty body, one over :data:`MAX_BODY_BYTES`, text that is not UTF-8,
        invalid or truncated JSON, nesting too deep, or a value Python cannot convert (an
        integer literal thousands of digits long); the message starts with ``what``.
    """
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError(f"{what}: body of {len(body)} bytes exceeds the limit {MAX_BODY_BYTES}")
    try:
        return json.loads(body, parse_float=parse_float)
    except json.JSONDecodeError as exc:
        raise DecodeError(
            f"{what}: truncated or invalid JSON at char {exc.pos}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise DecodeError(
            f"{what}: body is not UTF-8 text: bad byte at offset {exc.start}"
        ) from None
    except RecursionError:
        raise DecodeError(f"{what}: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python converts
        raise DecodeError(f"{what}: JSON value not readable: {exc}") from None
