"""Parameters shared by the data routes."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Request

from tickpipe_api.context import Context
from tickpipe_api.formats import FORMATS, Format, negotiate
from tickpipe_api.problems import bad_parameter

FormatParam = Annotated[
    str | None,
    Query(
        alias="format",
        description=f"One of {', '.join(FORMATS)} (default: from the Accept header, else json)",
    ),
]
PriceFormatParam = Annotated[
    Literal["decimal", "float"],
    Query(
        description="decimal: exact decimal strings in json (decimal128 in Arrow); float: float64"
    ),
]
StartParam = Annotated[
    str, Query(description="Inclusive: ISO 8601 (UTC; an offset is converted) or epoch ms")
]
EndParam = Annotated[
    str, Query(description="Exclusive: ISO 8601 (UTC; an offset is converted) or epoch ms")
]
CursorParam = Annotated[str | None, Query(description="json: the 'next' of the previous page")]
CountOnlyParam = Annotated[
    bool, Query(description="Only the row count and the estimated size (like HEAD)")
]


def ctx_of(request: Request) -> Context:
    """The process context."""
    ctx: Context = request.app.state.ctx
    return ctx


def format_of(request: Request, value: str | None) -> Format:
    """The answer format from ``format`` or ``Accept``; 422 for an unknown one."""
    fmt = negotiate(value, request.headers.get("accept"))
    if fmt is None:
        raise bad_parameter(
            "format", f"unknown format {value!r}: expected one of {', '.join(FORMATS)}"
        )
    return fmt


def limit_of(ctx: Context, limit: int | None) -> int:
    """The json page size: ``limit`` (1 … ``page_limit_max``), default 1000."""
    if limit is None:
        return min(1000, ctx.api.page_limit_max)
    if limit < 1 or limit > ctx.api.page_limit_max:
        raise bad_parameter("limit", f"limit must be 1 … {ctx.api.page_limit_max}, got {limit}")
    return limit
