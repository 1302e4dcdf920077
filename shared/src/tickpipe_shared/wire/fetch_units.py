"""Fetch units (internal topic ``fetch-units``): one JSON record per unit of work to download.

The fetcher's planner splits each request into units and publishes them here, keyed by the unit
key, so that every fetcher replica downloads the units of the partitions it owns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from tickpipe_shared.units import Unit


@dataclass(frozen=True, slots=True)
class FetchUnit:
    """A unit to download, with what the downloader needs to know about its instrument.

    ``unit``: the unit of work (on the wire its fields ``source``, ``instrument``, ``kind``,
    ``start_ms``, ``end_ms`` follow ``request_id``). ``source_code`` is the instrument's code at
    the source (``EUR-USD`` for the JSON API, ``EURUSD`` for the legacy datafeed, ``R_50`` for
    Deriv, ``C:EURUSD`` for Polygon); ``price_scale`` is the number of decimals of a point (-1:
    unknown before decoding). ``asset_class``: see :class:`~tickpipe_shared.wire.batch.BatchMeta`.
    ``market_open``: whether the instrument's trading schedule has the market open at some time
    in the unit (``None``: no schedule known); an empty answer for an open unit is suspect.
    """

    request_id: str
    unit: Unit
    source_code: str
    price_scale: int
    asset_class: str = ""
    market_open: bool | None = None
    schema: int = 1

    def to_json(self) -> bytes:
        """The record value: one flat JSON object, the unit's fields inline."""
        data = {"request_id": self.request_id, **self.unit.to_fields()}
        data.update(
            (f.name, getattr(self, f.name))
            for f in fields(self)
            if f.name not in ("request_id", "unit")
        )
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, value: bytes) -> FetchUnit:
        """Parse a record value. Raises :class:`ValueError` when it is not a fetch unit."""
        try:
            data = json.loads(value)
            unit = Unit.take_fields(data)
            return cls(unit=unit, **data)
        except (TypeError, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"not a fetch unit record: {e}") from None
