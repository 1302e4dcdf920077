"""Pydantic models of the API's parameters and JSON answers (they make the OpenAPI document).

Data answers are serialized by :mod:`tickpipe_api.formats` for speed; these models describe
exactly what it writes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ProblemModel(BaseModel):
    """An error (RFC 9457 ``application/problem+json``)."""

    type: str = Field(examples=["/problems/unknown-instrument"])
    title: str
    status: int
    detail: str
    parameter: str | None = Field(None, description="The offending parameter, if one is")
    matches: list[str] | None = Field(None, description="Unknown instrument: close matches")
    formats: list[str] | None = Field(None, description="Range too large: streaming formats")


class Units(BaseModel):
    """What the numbers mean."""

    ts: str
    prices: str
    volume: str


class SeriesMeta(BaseModel):
    """What an answer holds and where it comes from."""

    instrument: str
    kind: Literal["ticks", "candles", "source_candles"]
    timeframe: str | None
    side: str | None
    start: str = Field(description="Inclusive, ISO 8601 UTC")
    end: str = Field(description="Exclusive, ISO 8601 UTC")
    source: str = Field(description="Table or aggregate the rows come from")
    units: Units
    price_scale: int = Field(description="Decimals of the prices")
    price_format: Literal["decimal", "float"]


class Tick(BaseModel):
    """One tick. Prices are decimal strings unless ``price_format=float``."""

    ts: str = Field(examples=["2019-02-04T00:00:00.123Z"])
    bid: str | float
    ask: str | float
    bid_volume: float | None
    ask_volume: float | None
    flags: int = Field(description="One bit per validation rule that flagged the tick")


class Candle(BaseModel):
    """One candle computed from ticks (bid, ask or mid prices), labelled by its open time."""

    ts: str
    open: str | float
    high: str | float
    low: str | float
    close: str | float
    tick_count: int
    bid_volume: float | None
    ask_volume: float | None


class SourceCandle(BaseModel):
    """One candle as the source served it."""

    ts: str
    open: str | float
    high: str | float
    low: str | float
    close: str | float
    volume: float | None
    flags: int


class Page(SeriesMeta):
    """A json page; follow ``next`` (or ``next_url``) until it is null."""

    limit: int
    next: str | None = Field(description="Opaque cursor of the next page")
    next_url: str | None = None


class TicksPage(Page):
    """A page of ticks."""

    data: list[Tick]


class CandlesPage(Page):
    """A page of candles (computed: :class:`Candle`; ``source_candles=true``:
    :class:`SourceCandle`)."""

    data: list[Candle] | list[SourceCandle]


class CountAnswer(SeriesMeta):
    """``count_only=true``: the rows a query would answer with, before downloading them."""

    format: str
    rows: int
    estimated_bytes: int


class KindCoverage(BaseModel):
    """Ledger summary of one instrument and kind (docs/storage.md, Coverage)."""

    model_config = ConfigDict(extra="allow")
    kind: str
    units_stored: int
    units_empty: int
    units_suspect_empty: int
    units_partial: int
    units_failed: int
    rows: int
    first_row: str | None
    last_row: str | None


class InstrumentInfo(BaseModel):
    """A stored instrument and what is stored of it, per kind."""

    instrument: str
    price_scale: int
    asset_class: str | None
    source_codes: dict[str, str]
    coverage: list[KindCoverage]


class InstrumentList(BaseModel):
    """Every stored instrument."""

    source: str
    data: list[InstrumentInfo]


class UnitFailure(BaseModel):
    """A failed unit and why."""

    unit: str
    stage: str | None
    reason: str | None


class PeriodCoverageModel(BaseModel):
    """One period (UTC day, month or year) of one instrument and kind against its schedule."""

    model_config = ConfigDict(extra="allow")
    instrument: str
    kind: str
    period: str
    day: str
    scheduled: bool
    expected: int
    stored: int
    empty: int
    suspect_empty: int
    partial: int
    failed: int
    missing: int
    rows: int
    complete: bool
    missing_units: list[str]
    failed_units: list[str]
    failures: list[UnitFailure]


class CoverageAnswer(BaseModel):
    """Coverage per unit period against the trading schedule."""

    source: str
    data: list[PeriodCoverageModel]


class FetchRequestBody(BaseModel):
    """A fetch request, as ``tickpipe request`` takes it (docs/topics/fetch-requests.md)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    instrument: str = Field(examples=["EURUSD"])
    start: str = Field(alias="start", description="Inclusive: ISO 8601 (UTC) or epoch ms")
    end: str = Field(description="Exclusive: ISO 8601 (UTC) or epoch ms")
    source: str | None = Field(
        None, description="dukascopy-json (default), dukascopy-bi5, deriv, polygon"
    )
    kind: Literal["ticks", "candles"] = "ticks"
    timeframe: str | None = None
    side: Literal["bid", "ask", "mid", "trade"] | None = None
    skip_existing: bool = False


class RequestAccepted(BaseModel):
    """A published fetch request."""

    request_id: str
    status_url: str
    request: dict[str, Any]


class RequestStatus(BaseModel):
    """Progress of a fetch request from the tracker's request events."""

    model_config = ConfigDict(extra="allow")
    request_id: str
    status: Literal["pending", "running", "completed", "rejected"]
    units: int | None = None
    stored: int = 0
    empty: int = 0
    suspect_empty: int = 0
    failed: int = 0
    skipped: int = 0
    rows: int = 0
    failures: list[dict[str, Any]] = []
    reason: str | None = None


class Health(BaseModel):
    """Liveness / readiness."""

    ok: bool
    reason: str
