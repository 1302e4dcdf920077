"""Errors of the client: the API's RFC 9457 problems as exceptions."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer of the API: ``status``, and the problem document (``type``, ``title``,
    ``detail``, ``parameter``, and e.g. ``matches`` for an unknown instrument)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", ""))
        self.detail = str(problem.get("detail", ""))
        self.parameter = problem.get("parameter")
        super().__init__(f"{status} {problem.get('title', 'error')}: {self.detail}")


class RequestFailed(Exception):
    """A fetch request that was rejected, or finished with failed units (``status`` holds the
    last status document)."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        reason = status.get("reason") or f"{status.get('failed', 0)} failed units"
        super().__init__(f"request {status.get('request_id')} {status.get('status')}: {reason}")
