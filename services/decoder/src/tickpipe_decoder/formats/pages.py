"""What the page-array formats (``deriv-ticks-history``, ``polygon-aggs``) have in common.

A unit that took several requests is stored by the fetcher as one JSON array whose elements are
the untouched reply bodies of its pages, in the order fetched (``b"[" + b",".join(pages) +
b"]"``, :class:`~tickpipe_shared.wire.raw.RawPayloadMeta`). Decoding one is: parse the array
(:func:`parse_pages`), read each page's rows, then merge them (:func:`merge_index`): sort by
time, keep one row per timestamp (pages may overlap), keep the rows inside the unit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tickpipe_decoder.errors import DecodeError
from tickpipe_decoder.formats.json_body import load_json

"""Largest payload accepted (the ``raw-payloads`` topic holds far less)."""
MAX_PAGES = 10_000
"""Most pages accepted in one payload (a unit is one page for the common timeframes)."""
MAX_ROWS = 10_000_000
"""Most rows (ticks, candles or bars, all pages together) accepted in one payload."""
MAX_SCALE = 12
"""Most decimals a price scale may have."""
MAX_ABS_POINTS = 2**53
"""Prices must stay below this many points: exact as float64, as the writer computes
``points / 10^scale``."""


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages (``"a string"``, ``"null"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__  # pragma: no cover - json.loads makes nothing else


def shown(value: object, limit: int = 40) -> str:
    """A short ``repr`` of a value for error messages (long strings are cut); a
    :class:`~decimal.Decimal` shows as the number it was parsed from."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_pages(body: bytes, what: str, *, exact: bool) -> list[dict[str, Any]]:
    """The page objects of a page-array payload.

    :param body: the payload (UTF-8 JSON array of JSON objects).
    :param what: the format name that starts every error message.
    :param exact: parse JSON numbers with a fraction or exponent as :class:`~decimal.Decimal`
        (keeps their text exactly, e.g. the trailing zero of ``3481.830``) instead of float.
        Integers are ``int`` either way; ``NaN``/``Infinity`` literals become float.
    :raises DecodeError: empty or oversized body, invalid JSON or text, a top level that is not
        an array, more than :data:`MAX_PAGES` pages, or a page that is not an object.
    """
    if not body:
        raise DecodeError(f"{what}: empty body (0 bytes) is not a JSON array of pages")
    obj = load_json(body, what, Decimal if exact else float)
    if not isinstance(obj, list):
        raise DecodeError(
            f"{what}: top-level JSON value is {json_type(obj)}, expected an array of page bodies"
        )
    if len(obj) > MAX_PAGES:
        raise DecodeError(f"{what}: {len(obj)} pages is more than the limit of {MAX_PAGES}")
    for i, page in enumerate(obj):
        if not isinstance(page, dict):
            raise DecodeError(f"{what}: page {i} is {json_type(page)}, expected a JSON object")
    return obj


def check_row_count(total: int, what: str) -> None:
    """Raise :class:`DecodeError` when a payload holds more than :data:`MAX_ROWS` rows."""
    if total > MAX_ROWS:
        raise DecodeError(f"{what}: {total} rows is more than the limit of {MAX_ROWS}")


def merge_index(ts_ms: NDArray[np.int64], start_ms: int, end_ms: int) -> NDArray[np.intp]:
    """Indices of the rows to keep, in time order: one per timestamp, inside the unit.

    :param ts_ms: int64 ms, shape ``(N,)``, the rows of every page in payload order.
    :param start_ms: unit start (inclusive), ms; ``end_ms``: unit end (exclusive).
    :returns: intp indices into ``ts_ms``, ascending by time. Of rows sharing a timestamp the
        first in payload order (the page fetched first) is kept: when Deriv pages overlap, the
        later page ends at the shared time, where its candle holds only the boundary tick.
    """
    order = np.argsort(ts_ms, kind="stable")
    ts = ts_ms[order]
    first = np.ones(len(ts), dtype=np.bool_)
    first[1:] = ts[1:] != ts[:-1]
    inside = (ts >= start_ms) & (ts < end_ms)
    return order[first & inside]
