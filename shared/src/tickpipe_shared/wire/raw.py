"""Raw payloads (topic ``raw-payloads``): the bytes exactly as downloaded, described by headers.

Value: the HTTP response body, untouched (a 0-byte body is a valid empty unit). Headers
(``tp-`` prefixed, UTF-8): see :class:`RawPayloadMeta`. Kept forever so the topic can be replayed.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields

from tickpipe_shared.units import Unit
from tickpipe_shared.wire.headers import Headers, decode_headers, encode_headers

RAW_SCHEMA = 1


#: The unit's fields among the headers, with their types; always required.
_UNIT_HEADERS: tuple[tuple[str, type], ...] = (
    ("source", str),
    ("instrument", str),
    ("kind", str),
    ("unit_start_ms", int),
    ("unit_end_ms", int),
)


@dataclass(frozen=True, slots=True)
class RawPayloadMeta:
    """What a raw payload is: its unit, its format, where and when it was downloaded
    (``fetched_at_ms``: ms since epoch), the body's ``sha256`` (hex), the instrument's
    ``price_scale`` known at fetch time (-1: unknown, the decoder derives it from the payload),
    the attempts it took. In the headers the unit is ``tp-source``, ``tp-instrument``,
    ``tp-kind``, ``tp-unit_start_ms`` and ``tp-unit_end_ms``.

    Formats (``docs/topics/raw-payloads.md``): ``dukascopy-bi5-ticks``,
    ``dukascopy-bi5-candles``, ``dukascopy-json-ticks``, ``dukascopy-json-candles`` (the file or
    response body as served); ``deriv-ticks-history`` and ``polygon-aggs``: a JSON array whose
    elements are the untouched reply bodies of every page of the unit, in the order fetched
    (``b"[" + b",".join(pages) + b"]"``). ``source_code``: the instrument's code at the source.
    ``asset_class``: see :class:`~tickpipe_shared.wire.batch.BatchMeta`. ``suspect_empty``: 1
    when the source kept answering "no data" for a unit the trading schedule says was open.
    """

    unit: Unit
    format: str
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

    def to_headers(self) -> Headers:
        """Kafka headers (in the order of schema 1: ``tp-format`` second)."""
        unit = self.unit.to_fields("unit_start_ms", "unit_end_ms")
        values = {"source": unit.pop("source"), "format": self.format, **unit}
        values.update(
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("unit", "format")
        )
        return encode_headers(values)

    @classmethod
    def from_headers(cls, headers: list[tuple[str, bytes]] | None) -> RawPayloadMeta:
        """Parse headers. Raises :class:`ValueError` naming a missing or malformed header."""
        values = decode_headers(headers)
        specs = [(name, typ, True) for name, typ in _UNIT_HEADERS] + [
            (f.name, f.type, f.default is MISSING) for f in fields(cls) if f.name != "unit"
        ]
        kwargs: dict[str, object] = {}
        for name, typ, required in specs:
            if name not in values:
                if required:
                    raise ValueError(f"raw payload header 'tp-{name}' is missing")
                continue
            raw = values[name]
            if typ in ("int", int):
                try:
                    kwargs[name] = int(raw)
                except ValueError:
                    raise ValueError(
                        f"raw payload header 'tp-{name}' is not an integer: {raw!r}"
                    ) from None
            else:
                kwargs[name] = raw
        unit = Unit.take_fields(kwargs, "unit_start_ms", "unit_end_ms")
        return cls(unit=unit, **kwargs)  # type: ignore[arg-type]
