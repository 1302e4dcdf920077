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
    """What a raw payload is: format (``dukascopy-bi5-ticks``, ``dukascopy-json-ticks``), its
    unit, where and when it was downloaded (``fetched_at_ms``: ms since epoch), the body's
    ``sha256`` (hex), the instrument's ``price_scale`` known at fetch time, the attempts it took.
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
