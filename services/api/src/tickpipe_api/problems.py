"""Errors as ``application/problem+json`` (RFC 9457).

Every error the API answers is a :class:`Problem`: ``type`` (a URI naming the kind of problem,
relative to ``/problems/``), ``title``, ``status``, ``detail`` and, when one parameter is to
blame, ``parameter``; some add members (``matches`` for an unknown instrument, ``formats`` for a
range too large for json).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer. ``kind`` becomes ``type`` (``/problems/<kind>``)."""

    def __init__(
        self,
        status: int,
        kind: str,
        title: str,
        detail: str,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title
        self.detail = detail
        self.parameter = parameter
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The problem document."""
        out: dict[str, Any] = {
            "type": f"/problems/{self.kind}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.parameter is not None:
            out["parameter"] = self.parameter
        out.update(self.extra)
        return out


def bad_parameter(parameter: str, detail: str) -> Problem:
    """422 ``invalid-parameter`` naming ``parameter``."""
    return Problem(422, "invalid-parameter", "Invalid parameter", detail, parameter)


def problem_response(p: Problem) -> JSONResponse:
    """The HTTP answer of ``p``."""
    return JSONResponse(p.body(), status_code=p.status, media_type=PROBLEM_JSON, headers=p.headers)


async def on_problem(_: Request, exc: Exception) -> JSONResponse:
    """Exception handler for :class:`Problem`."""
    assert isinstance(exc, Problem)
    return problem_response(exc)


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own parameter validation errors as problems (422, first offending parameter)."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "body", "path", "header")]
    detail = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
        for e in errors
    )
    return problem_response(
        Problem(422, "invalid-parameter", "Invalid parameter", detail, ".".join(loc) or None)
    )


_TITLES = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized"}


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's HTTP errors (unknown path, wrong method) as problems."""
    assert isinstance(exc, StarletteHTTPException)
    title = _TITLES.get(exc.status_code, "HTTP error")
    kind = title.lower().replace(" ", "-")
    return problem_response(
        Problem(exc.status_code, kind, title, str(exc.detail), headers=dict(exc.headers or {}))
    )


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: 500 without internals (the access log has the request id)."""
    return problem_response(
        Problem(500, "internal-error", "Internal server error", f"{type(exc).__name__}")
    )
