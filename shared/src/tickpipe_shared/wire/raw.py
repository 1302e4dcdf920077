"""Raw payloads (topic ``raw-payloads``): the bytes exactly as downloaded, described by headers.

Value: the HTTP response body, untouched (a 0-byte body is a valid empty unit). Headers
(``tp-`` prefixed, UTF-8): see :class:`RawPayloadMeta`. Kept forever so the topic can be replayed.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields

from tickpipe_shared.units import Unit
from tickpipe_shared.wire.headers import Headers, decode_headers, encode_headers

RAW_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class RawPayloadMeta:
    """What a raw payload is: its format, its unit, where and when it was downloaded
    (``fetched_at_ms``: ms since epoch), the body's ``sha256`` (hex), the instrument's
    ``price_scale`` known at fetch time (-1: unknown, the decoder derives it from the payload),
    the attempts it took.

    Formats (``docs/topics/raw-payloads.md``): ``dukascopy-bi5-ticks``,
    ``dukascopy-bi5-candles``, ``dukascopy-json-ticks``, ``dukascopy-json-candles`` (the file or
    response body as served); ``deriv-ticks-history`` and ``polygon-aggs``: a JSON array whose
    elements are the untouched reply bodies of every page of the unit, in the order fetched
    (``b"[" + b",".join(pages) + b"]"``). ``source_code``: the instrument's code at the source.
    ``asset_class``: see :class:`~tickpipe_shared.wire.batch.BatchMeta`. ``suspect_empty``: 1
    when the source kept answering "no data" for a unit the trading schedule says was open.
    """

    source: str
    format: str
    instrument: str
    kind: str
    unit_start_ms: int
    unit_end_ms: int
    url: str
    sha256: str
    fetched_at_ms: int
    price_scale: int
    request_id: str
    http_status: int = 200
    content_type: str = ""
    attempts: int = 1
    source_code: str = ""
    asset_class: str = ""
    suspect_empty: int = 0
    schema: int = RAW_SCHEMA

    @property
    def unit(self) -> Unit:
        """The unit this payload covers."""
        return Unit(self.source, self.instrument, self.kind, self.unit_start_ms, self.unit_end_ms)

    def to_headers(self) -> Headers:
        """Kafka headers."""
        return encode_headers(asdict(self))

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | None) -> RawPayloadMeta:
        """Parse headers. Raises :class:`ValueError` naming a missing or malformed header."""
        values = decode_headers(headers)
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            if f.name not in values:
                if f.default is not MISSING:
                    continue
                raise ValueError(f"raw payload header 'tp-{f.name}' is missing")
            raw = values[f.name]
            if f.type in ("int", int):
                try:
                    kwargs[f.name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"raw payload header 'tp-{f.name}' is not an integer: {raw!r}"
                    ) from None
            else:
                kwargs[f.name] = raw
        return cls(**kwargs)  # type: ignore[arg-type]
