"""Fast path for JSON objects of number arrays: parse the arrays straight from the bytes.

``json.loads`` turns every element of a delta-encoded column into a Python ``int`` or
``float`` (the float parse alone is ~200 ns each) only for numpy to convert it back. For a
body shaped like the ones the JSON API sends (``../shared/docs/dukascopy.md §3.2``: one flat
object, each column written as ``"name":[n,n,...]`` without spaces) this module instead

* cuts the named arrays out of the body and parses what is left, a small "skeleton" object of
  scalars with empty arrays, with ``json.loads``, which checks the structure and the scalars;
* checks each array's text against the JSON number grammar (RFC 8259 §6) with vectorized
  byte tests, and converts it with numpy: integers exactly, decimals by the exact
  "Clinger fast path" (a mantissa below 2^53 times or divided by a power of ten up to 10^22,
  one correctly rounded float64 operation, so the same value as ``float(text)``).

It is only a fast path. :func:`split_columns` returns ``None`` for anything it does not fully
understand (whitespace, another layout, a token longer than 18 characters, a decimal beyond
the exact range, any grammar error); the caller then decodes with ``json.loads`` as before,
which also produces the error messages. Whatever it accepts, ``json.loads`` would accept too
and give the same numbers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from numpy.typing import NDArray

_INT_CHARS = b"0123456789-,"
_NUMBER_CHARS = _INT_CHARS + b".eE+"
_COMMA, _MINUS, _PLUS, _DOT, _ZERO = (ord(c) for c in ",-+.0")
MAX_TOKEN = 18
"""Longest number text taken (at most 18 digits: the mantissa fits int64 exactly)."""
_TWO53 = 2**53
_MAX_EXACT_POW10 = 22
_POW10 = np.array([10.0**k for k in range(_MAX_EXACT_POW10 + 1)], dtype=np.float64)


def split_columns(
    body: bytes, names: tuple[str, ...], integer: tuple[bool, ...]
) -> tuple[dict[str, Any], list[NDArray[Any]]] | None:
    """The body's object without the named arrays, and those arrays parsed; ``None`` if unsure.

    :param body: a JSON response body.
    :param names: the array fields to parse; each must appear exactly once as
        ``"name":[...]`` and be the body's only arrays.
    :param integer: per name, whether the column holds integers (then only integer literals
        are accepted here: ``int64`` out) or numbers (``float64`` out, as ``json.loads`` then
        ``np.asarray(..., float64)`` would give).
    :returns: ``(skeleton, columns)``: the parsed object, whose named fields are empty lists,
        and one 1-D array per name; or ``None`` when the caller must use ``json.loads``.
        Raises nothing for bad input.
    """
    if body.count(b"[") != len(names):
        return None
    spans: list[tuple[int, int, int]] = []  # (start, end) of each array's text, column index
    for i, name in enumerate(names):
        needle = b'"' + name.encode() + b'":['
        at = body.find(needle)
        if at < 0 or body.find(needle, at + 1) >= 0:
            return None
        start = at + len(needle)
        end = body.find(b"]", start)
        if end < 0:
            return None
        spans.append((start, end, i))
    spans.sort()
    pieces, pos = [], 0
    for start, end, _ in spans:
        pieces.append(body[pos:start])
        pos = end
    pieces.append(body[pos:])
    try:
        skeleton = json.loads(b"".join(pieces))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return None
    if not isinstance(skeleton, dict) or any(skeleton.get(n) != [] for n in names):
        return None
    columns: list[NDArray[Any]] = [np.empty(0)] * len(names)
    for start, end, i in spans:
        col = parse_number_array(body[start:end], integer=integer[i])
        if col is None:
            return None
        columns[i] = col
    return skeleton, columns


def parse_number_array(text: bytes, *, integer: bool) -> NDArray[Any] | None:
    """The numbers of the inside of a JSON array, e.g. ``b"93,-2,0"``; ``None`` if unsure.

    :param text: the bytes between ``[`` and ``]``; no whitespace.
    :param integer: accept integer literals only and return int64; else accept any JSON number
        and return float64 (integer literals such as ``-0`` become ``0.0``, as ``json.loads``
        gives ``int`` for them).
    :returns: a 1-D array with one element per number, or ``None`` for text that is not a
        comma-separated list of JSON numbers, a number longer than :data:`MAX_TOKEN`, or a
        decimal outside the exact fast path (mantissa ≥ 2^53 or a power of ten beyond 10^22).
    """
    dtype = np.int64 if integer else np.float64
    if not text:
        return np.empty(0, dtype=dtype)
    if text.translate(None, _INT_CHARS if integer else _NUMBER_CHARS):
        return None
    c = np.frombuffer(text, dtype=np.uint8)
    n = c.size
    sep = np.flatnonzero(c == _COMMA)
    starts = np.concatenate(([0], sep + 1))
    ends = np.append(sep, n)
    lengths = ends - starts
    if lengths.min() < 1 or lengths.max() > MAX_TOKEN:
        return None
    neg = c[starts] == _MINUS
    first = starts + neg  # first digit of each token (may be == end for a lone "-")
    if (first >= ends).any():
        return None
    padded = np.append(c, _COMMA)  # one past the end reads as a separator
    digit = (padded >= _ZERO) & (padded <= _ZERO + 9)
    if not digit[first].all():
        return None
    if ((padded[first] == _ZERO) & digit[first + 1]).any():
        return None  # leading zero ("01")
    minus = int(np.count_nonzero(c == _MINUS))
    if integer:
        if minus != int(np.count_nonzero(neg)):
            return None
        values = _ints(text, len(starts))
        return None if values is None else np.where(neg, -values, values)
    return _decimals(c, padded, digit, sep, starts, ends, neg, minus)


def _ints(text: bytes, count: int) -> NDArray[np.int64] | None:
    """Unsigned integers of ``text`` (already checked: numbers of ≤ 18 digits, commas, any
    "-" is dropped); ``None`` unless there are ``count``."""
    values = np.fromstring(text.replace(b"-", b""), dtype=np.int64, sep=",")
    return values if len(values) == count else None


def _decimals(
    c: NDArray[np.uint8],
    padded: NDArray[np.uint8],
    digit: NDArray[np.bool_],
    sep: NDArray[np.intp],
    starts: NDArray[np.intp],
    ends: NDArray[np.intp],
    neg: NDArray[np.bool_],
    minus: int,
) -> NDArray[np.float64] | None:
    n_tok = len(starts)
    dots = np.flatnonzero(c == _DOT)
    exps = np.flatnonzero((c | 0x20) == ord("e"))
    dot_tok = np.searchsorted(sep, dots)  # token index of each dot
    exp_tok = np.searchsorted(sep, exps)
    if (np.diff(dot_tok) <= 0).any() or (np.diff(exp_tok) <= 0).any():
        return None  # two dots or two exponents in one token
    # A dot sits between digits; an exponent follows a digit and precedes [sign] digit.
    if not (digit[dots - 1].all() and digit[dots + 1].all() and digit[exps - 1].all()):
        return None
    exp_sign = padded[exps + 1]
    signed = (exp_sign == _MINUS) | (exp_sign == _PLUS)
    exp_digits = exps + 1 + signed
    if not digit[exp_digits].all():
        return None
    if minus != int(np.count_nonzero(neg)) + int(np.count_nonzero(exp_sign == _MINUS)):
        return None  # a minus somewhere else than a token start or an exponent sign
    if int(np.count_nonzero(c == _PLUS)) != int(np.count_nonzero(exp_sign == _PLUS)):
        return None
    exp_at = np.full(n_tok, -1, dtype=np.intp)
    exp_at[exp_tok] = exps
    has_exp = exp_at >= 0
    mantissa_end = np.where(has_exp, exp_at, ends)
    frac = np.zeros(n_tok, dtype=np.int64)
    if dots.size:
        if (dots > mantissa_end[dot_tok]).any():
            return None  # "1e5.5"
        frac[dot_tok] = mantissa_end[dot_tok] - dots - 1
    keep = (c != _DOT) & (c != _MINUS)
    exponent = np.zeros(n_tok, dtype=np.int64)
    if exps.size:
        mark = np.zeros(c.size + 1, dtype=np.int8)
        mark[exps] = 1
        mark[ends[exp_tok]] = -1
        in_exp = np.cumsum(mark[:-1], dtype=np.int8).astype(bool)  # from "e" to the token end
        keep &= ~in_exp
        # The exponents' digits, comma-separated: the commas that end a token with an exponent.
        exp_keep = in_exp & digit[:-1]
        exp_keep[sep[exp_tok[exp_tok < len(sep)]]] = True
        magnitude = _ints(c[exp_keep].tobytes().rstrip(b","), exps.size)
        if magnitude is None:
            return None
        exponent[exp_tok] = np.where(exp_sign == _MINUS, -magnitude, magnitude)
    mantissa = _ints(c[keep].tobytes(), n_tok)
    if mantissa is None or (mantissa >= _TWO53).any():
        return None
    power = exponent - frac
    if (np.abs(power) > _MAX_EXACT_POW10).any():
        return None
    m = mantissa.astype(np.float64)
    up = power >= 0
    values = np.where(up, m * _POW10[np.where(up, power, 0)], m / _POW10[np.where(up, 0, -power)])
    # "-0" is the integer 0 for json.loads (no sign); "-0.0" and "-0e0" are -0.0.
    integral = ~has_exp
    integral[dot_tok] = False
    flip = neg & ~(integral & (mantissa == 0))
    return np.where(flip, -values, values)
