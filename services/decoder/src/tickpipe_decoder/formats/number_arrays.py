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
_COMMA, _MINUS, _PLUS, _DOT, _ZERO, _COLON, _QUOTE = (ord(c) for c in ',-+.0:"')
MAX_TOKEN = 18
"""Longest number text taken (at most 18 digits: the mantissa fits int64 exactly)."""
_TWO53 = 2**53
_MAX_INT = 10**MAX_TOKEN
_E_TO_COMMA = bytes.maketrans(b"eE", b",,")
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
    # One pass over the body: each "[" opens a column whose key precedes it as `"name":[`.
    index = {name.encode(): i for i, name in enumerate(names)}
    spans: list[tuple[int, int, int]] = []  # (start, end) of each array's text, column index
    seen: set[int] = set()
    pos = 0
    for _ in names:
        at = body.find(b"[", pos)
        if at < 2 or body[at - 1] != _COLON or body[at - 2] != _QUOTE:
            return None
        key_start = body.rfind(b'"', 0, at - 2)
        i = index.get(body[key_start + 1 : at - 2], -1) if key_start >= 0 else -1
        if i < 0 or i in seen:
            return None
        end = body.find(b"]", at + 1)
        if end < 0:
            return None
        spans.append((at + 1, end, i))
        seen.add(i)
        pos = end + 1
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
        comma-separated list of JSON numbers, an integer of more than :data:`MAX_TOKEN` digits,
        or a decimal outside the exact fast path (mantissa ≥ 2^53 or a power of ten beyond
        10^22).
    """
    dtype = np.int64 if integer else np.float64
    if not text:
        return np.empty(0, dtype=dtype)
    if text.translate(None, _INT_CHARS if integer else _NUMBER_CHARS):
        return None
    if text[0] == _COMMA or text[-1] == _COMMA or b",," in text:
        return None  # an empty number
    if integer:
        return _integers(text)
    # The grammar (RFC 8259 §6) is checked with whole-width byte masks, a few passes over the
    # text at C speed; per-token arrays are only built where a token can hold a "." or "e".
    c = np.frombuffer(text, dtype=np.uint8)
    digit = (c - _ZERO) < 10  # uint8 arithmetic wraps: one test for "0" to "9"
    start = np.empty(c.size, dtype=bool)  # first byte of a token
    start[0] = True
    np.equal(c[:-1], _COMMA, out=start[1:])
    minus = c == _MINUS
    sign = minus & start  # a number's own minus
    first = start ^ sign  # where a number's first digit must be
    first[1:] |= sign[:-1]
    if sign[-1] or (first & ~digit).any():
        return None  # "-" alone, "-.5", ".5", "e5"
    if (first[:-1] & (c[:-1] == _ZERO) & digit[1:]).any():
        return None  # leading zero ("01")
    return _decimals(text, c, digit, start, minus, sign)


def _integers(text: bytes) -> NDArray[np.int64] | None:
    """:func:`parse_number_array` of integer text (digits, "-" and "," only, no empty
    number). numpy refuses a misplaced sign itself ("1-2", "--1"); what is left to refuse is
    a lone "-" and a leading zero."""
    c = np.frombuffer(text, dtype=np.uint8)
    comma = c == _COMMA
    if c[-1] == _MINUS or ((c[:-1] == _MINUS) & comma[1:]).any():
        return None
    # A "0" followed by a digit is a leading zero when it starts a number ("01", "-01"), not
    # inside one ("101"); the candidates are few, so they are checked one by one in numpy.
    zero_digit = np.flatnonzero((c[:-1] == _ZERO) & ((c[1:] - _ZERO) < 10))
    if zero_digit.size:
        padded = np.concatenate((np.array([_COMMA, _COMMA], dtype=np.uint8), c))
        before, before2 = padded[zero_digit + 1], padded[zero_digit]
        if ((before == _COMMA) | ((before == _MINUS) & (before2 == _COMMA))).any():
            return None
    return _ints(text, int(np.count_nonzero(comma)) + 1, signed=True)


def _ints(text: bytes, count: int, *, signed: bool) -> NDArray[np.int64] | None:
    """The integers of ``text`` (commas between numbers, signs where the grammar allows them,
    already checked); ``None`` unless there are ``count`` of at most :data:`MAX_TOKEN`
    digits."""
    try:
        values = np.fromstring(text, dtype=np.int64, sep=",")
    except ValueError:  # numpy >= 2.4: text it cannot read to its end
        return None
    if len(values) != count:
        return None
    bound = _MAX_INT if signed else _TWO53
    # numpy saturates what overflows int64: caught here as well.
    if count and (int(values.max()) >= bound or int(values.min()) <= -bound):
        return None
    return values


def _decimals(
    text: bytes,
    c: NDArray[np.uint8],
    digit: NDArray[np.bool_],
    start: NDArray[np.bool_],
    minus: NDArray[np.bool_],
    sign: NDArray[np.bool_],
) -> NDArray[np.float64] | None:
    """Float64 values of checked-so-far number text (see :func:`parse_number_array`): the
    mantissa's digits and the exponent as integers, then one correctly rounded operation."""
    n = c.size
    e = (c | 0x20) == ord("e")
    dot = c == _DOT
    plus = c == _PLUS
    after_e = np.zeros(n, dtype=bool)
    after_e[1:] = e[:-1]
    if (minus & ~(start | after_e)).any() or (plus & ~after_e).any():
        return None  # a sign elsewhere than a number's start or an exponent's
    next_digit = np.zeros(n, dtype=bool)
    next_digit[:-1] = digit[1:]
    prev_digit = np.zeros(n, dtype=bool)
    prev_digit[1:] = digit[:-1]
    exp_signed = np.zeros(n, dtype=bool)  # "e" followed by a sign and a digit
    exp_signed[:-2] = (minus[1:-1] | plus[1:-1]) & digit[2:]
    if (dot & ~(prev_digit & next_digit)).any() or (
        e & ~(prev_digit & (next_digit | exp_signed))
    ).any():
        return None  # "1.", "1.e5", "1e", "1e+"
    sep = np.flatnonzero(c == _COMMA)
    n_tok = sep.size + 1
    dots = np.flatnonzero(dot)
    exps = np.flatnonzero(e)
    dot_tok = np.searchsorted(sep, dots)  # token index of each dot
    exp_tok = np.searchsorted(sep, exps)
    if (np.diff(dot_tok) <= 0).any() or (np.diff(exp_tok) <= 0).any():
        return None  # two dots or two exponents in one token
    ends = np.append(sep, n)
    mantissa_end = ends.copy()
    mantissa_end[exp_tok] = exps
    frac = np.zeros(n_tok, dtype=np.int64)
    if dots.size:
        if (dots > mantissa_end[dot_tok]).any():
            return None  # "1e5.5"
        frac[dot_tok] = mantissa_end[dot_tok] - dots - 1
    # Mantissas and exponent magnitudes as one list of unsigned integers:
    # "1.449E7,-0.5,2e-3" -> "1449,7,05,2,3".
    flat = _ints(text.translate(_E_TO_COMMA, b".-+"), n_tok + exps.size, signed=False)
    if flat is None:
        return None
    power = -frac
    if exps.size:
        has_exp = np.zeros(n_tok, dtype=np.int64)
        has_exp[exp_tok] = 1
        at = np.arange(n_tok) + np.cumsum(has_exp) - has_exp  # each mantissa's place in flat
        mantissa = flat[at]
        magnitude = flat[at[exp_tok] + 1]
        power[exp_tok] += np.where(minus[exps + 1], -magnitude, magnitude)
    else:
        mantissa = flat
    if (np.abs(power) > _MAX_EXACT_POW10).any():
        return None
    m = mantissa.astype(np.float64)
    up = power >= 0
    values = np.where(up, m * _POW10[np.where(up, power, 0)], m / _POW10[np.where(up, 0, -power)])
    # "-0" is the integer 0 for json.loads (no sign); "-0.0" and "-0e0" are -0.0.
    neg = sign[np.append(0, sep + 1)]
    integral = np.ones(n_tok, dtype=bool)
    integral[dot_tok] = False
    integral[exp_tok] = False
    flip = neg & ~(integral & (mantissa == 0))
    out: NDArray[np.float64] = np.where(flip, -values, values)
    return out
