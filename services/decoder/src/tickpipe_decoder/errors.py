"""The one exception the decoders raise for a payload they cannot turn into rows."""

from __future__ import annotations


class DecodeError(ValueError):
    """A payload is corrupt, truncated or violates its format.

    The message names the format and what was wrong where, e.g.
    ``"bi5 ticks: decompressed 41 bytes is not a multiple of the 20-byte record"`` or
    ``"json ticks: column 'bids' has 3 values, 'times' has 4"``. A ``DecodeError`` is a property
    of the payload: retrying the same bytes gives the same error, so callers should dead-letter
    the payload (and may re-fetch it) rather than retry decoding.
    """
