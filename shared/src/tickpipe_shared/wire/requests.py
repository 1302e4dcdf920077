"""Fetch requests (topic ``fetch-requests``): JSON objects published by the CLI or any system.

Schema: ``docs/topics/fetch-requests.md`` and ``docs/schemas/fetch-request.schema.json``.
Example::

    {"schema": 1, "request_id": "3f0c…", "source": "dukascopy-json", "instrument": "EURUSD",
     "kind": "ticks", "from": "2019-02-04T00:00:00Z", "to": "2019-02-06T00:00:00Z"}
    {"source": "polygon", "instrument": "C:EURUSD", "kind": "candles", "timeframe": "1d",
     "from": "2023-01-01", "to": "2023-01-10", "skip_existing": true}

What each source serves (kinds, timeframes, sides) is in :mod:`tickpipe_shared.sources`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tickpipe_shared.kinds import Kind, KindError
from tickpipe_shared.sources import SOURCE_NAMES, SOURCES

SOURCES_LITERAL = Literal["dukascopy-json", "dukascopy-bi5", "deriv", "polygon", "synthetic"]
assert set(SOURCES_LITERAL.__args__) == set(SOURCE_NAMES)  # type: ignore[attr-defined]
#: Earliest plausible market-data timestamp; anything before is a typo, not history.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
#: Longest range one request may span; longer backfills are several requests.
MAX_SPAN = timedelta(days=366 * 30)


class RequestError(ValueError):
    """A fetch request that cannot be served; the message says which field and why."""


class FetchRequest(BaseModel):
    """A request for ``kind`` data of ``instrument`` from ``source`` over ``[from, to)`` UTC.

    ``kind`` is ``ticks`` or ``candles``; candles take a ``timeframe`` (``1m``, ``1h``, …) and a
    ``side`` (default: the source's, see :mod:`tickpipe_shared.sources`). ``skip_existing``:
    units the ingest log has as stored or empty, downloaded after they had closed, are not
    fetched again (resume). Instruments are named as the source names them: Dukascopy in any
    spelling (``EURUSD``, ``EUR-USD``), Deriv by symbol (``R_50``, ``frxEURUSD``), Polygon by
    ticker (``AAPL``, ``C:EURUSD``, ``X:BTCUSD``, ``I:NDX``).
    """

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    schema_version: Literal[1] = Field(1, alias="schema")
    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=128)
    source: SOURCES_LITERAL = "dukascopy-json"
    instrument: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/:\-]+$")
    kind: Literal["ticks", "candles"] = "ticks"
    timeframe: str | None = Field(None, max_length=16)
    side: Literal["bid", "ask", "mid", "trade"] | None = None
    skip_existing: bool = False
    from_: datetime = Field(alias="from")
    to: datetime
    requested_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("from_", "to", "requested_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @model_validator(mode="after")
    def _range(self) -> FetchRequest:
        if self.from_ >= self.to:
            raise ValueError(
                f"'from' ({self.from_.isoformat()}) must be before 'to' ({self.to.isoformat()})"
            )
        if self.from_ < EARLIEST:
            raise ValueError(f"'from' ({self.from_.isoformat()}) is before 1970")
        if self.to - self.from_ > MAX_SPAN:
            raise ValueError(f"range of {(self.to - self.from_).days} days exceeds 30 years")
        now = datetime.now(UTC)
        if self.from_ > now:
            raise ValueError(f"'from' ({self.from_.isoformat()}) is in the future")
        if self.to > now + timedelta(days=366):
            raise ValueError(f"'to' ({self.to.isoformat()}) is more than a year in the future")
        try:
            SOURCES[self.source].kind_for(self.kind, self.timeframe, self.side)
        except (KindError, ValueError) as e:
            raise ValueError(str(e)) from None
        return self

    @property
    def unit_kind(self) -> Kind:
        """The kind of this request's units (``ticks`` or ``candles:<timeframe>:<side>``)."""
        return SOURCES[self.source].kind_for(self.kind, self.timeframe, self.side)

    def to_json(self) -> bytes:
        """The record value: compact JSON with ``from``/``schema`` names."""
        return self.model_dump_json(by_alias=True).encode()


def parse_request(value: bytes | None) -> FetchRequest:
    """Parse and validate a fetch-request record value.

    Raises :class:`RequestError` with the offending field and reason for bad JSON, a missing or
    unknown field, an unknown source or kind, or an inverted, pre-1970, future or over-long range.
    """
    if not value:
        raise RequestError("empty fetch request")
    try:
        data = json.loads(value)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"fetch request is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError(f"fetch request must be a JSON object, got {type(data).__name__}")
    try:
        return FetchRequest.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'request'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        )
        raise RequestError(f"invalid fetch request: {problems}") from None
