"""The client: ticks, candles and coverage as pandas DataFrames (or pyarrow Tables), fetch
requests, and waiting for them.

Data come as Arrow IPC streams (``format=arrow``) decoded while they arrive. json endpoints
that page are followed through their ``next`` cursors (:meth:`Client.pages`). A 429 or 503 is
retried after its ``Retry-After`` (at most ``max_retries`` times), as are dropped connections.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import pandas as pd
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.ipc as ipc  # type: ignore[import-untyped]
from tickpipe.client.errors import ApiError, RequestFailed
from tickpipe.client.stream import reader

TimeLike = str | int | datetime | pd.Timestamp
RETRY_STATUS = (429, 503)


def _time(value: TimeLike) -> str:
    """ISO 8601 UTC (naive datetimes are UTC) or epoch ms, as the API takes them."""
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        dt = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return dt.isoformat().replace("+00:00", "Z")
    return str(value)


class Client:
    """A client of the API at ``url`` (e.g. ``http://127.0.0.1:8000``) with ``api_key``
    (``None`` for a local stack with auth off).

    ``timeout`` is per read (seconds; a stream may take longer in total), ``max_retries`` the
    retries of 429/503 answers and dropped connections, ``max_wait_s`` the longest single
    ``Retry-After`` honoured. Usable as a context manager."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_wait_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": "tickpipe-client/0.1"}
        if api_key:
            headers["X-API-Key"] = api_key
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    # --------------------------------------------------------------------------- transport

    def _wait_for(self, response: httpx.Response, attempt: int) -> float:
        after = response.headers.get("retry-after", "")
        seconds = float(after) if after.replace(".", "", 1).isdigit() else 2.0**attempt
        return min(max(seconds, 0.0), self.max_wait_s)

    def _send(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        json: Any = None, stream: bool = False,
    ) -> httpx.Response:  # fmt: skip
        """Send with retries; raises :class:`ApiError` for an error answer."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in range(self.max_retries + 1):
            try:
                request = self._http.build_request(method, path, params=clean, json=json)
                response = self._http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
                if attempt == self.max_retries:
                    raise
                time.sleep(min(2.0**attempt * 0.2, self.max_wait_s))
                continue
            if response.status_code in RETRY_STATUS and attempt < self.max_retries:
                wait = self._wait_for(response, attempt)
                response.close()
                time.sleep(wait)
                continue
            if response.status_code >= 400:
                if stream:
                    response.read()
                try:
                    problem = response.json()
                except ValueError:
                    problem = {"title": response.reason_phrase, "detail": response.text[:500]}
                response.close()
                raise ApiError(response.status_code, problem)
            return response
        raise AssertionError("unreachable")

    def get_json(self, path: str, **params: Any) -> Any:
        """GET ``path`` as json (no paging)."""
        return self._send("GET", path, params=params).json()

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every json page of ``path``, following the ``next`` cursors to the end."""
        cursor = None
        while True:
            page: dict[str, Any] = self.get_json(path, **params, format="json", cursor=cursor)
            yield page
            cursor = page.get("next")
            if not cursor:
                return

    def arrow(self, path: str, **params: Any) -> pa.Table:
        """GET ``path`` as an Arrow IPC stream, decoded while it arrives, as a Table (its
        schema metadata say the source and units)."""
        response = self._send("GET", path, params={**params, "format": "arrow"}, stream=True)
        try:
            with ipc.open_stream(pa.PythonFile(reader(response.iter_bytes()), mode="r")) as r:
                return r.read_all()
        finally:
            response.close()

    # --------------------------------------------------------------------------- data

    def ticks(
        self,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        *,
        as_arrow: bool = False,
        price_format: Literal["float", "decimal"] = "float",
    ) -> pd.DataFrame | pa.Table:
        """Ticks of ``instrument`` over ``[start, end)``: ``ts`` (UTC), ``bid``, ``ask``
        (float64, or exact decimals with ``price_format="decimal"``), ``bid_volume``,
        ``ask_volume`` (the source's unit), ``flags``."""
        table = self.arrow(
            "/v1/ticks", instrument=instrument, start=_time(start), end=_time(end),
            price_format=price_format,
        )  # fmt: skip
        return table if as_arrow else table.to_pandas()

    def candles(
        self,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        timeframe: str = "1h",
        *,
        side: str | None = None,
        source_candles: bool = False,
        as_arrow: bool = False,
        price_format: Literal["float", "decimal"] = "float",
    ) -> pd.DataFrame | pa.Table:
        """Candles of ``instrument`` opening in ``[start, end)``: computed from ticks (``side``
        bid, ask or mid) or, with ``source_candles``, the sources' own bars. ``ts`` is the
        open time (UTC)."""
        table = self.arrow(
            "/v1/candles", instrument=instrument, start=_time(start), end=_time(end),
            timeframe=timeframe, side=side, source_candles=str(source_candles).lower(),
            price_format=price_format,
        )  # fmt: skip
        return table if as_arrow else table.to_pandas()

    def coverage(
        self,
        instrument: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        kind: str = "ticks",
        as_arrow: bool = False,
    ) -> pd.DataFrame | pa.Table:
        """Coverage per instrument and period against the trading schedule: expected, stored,
        empty, suspect_empty, partial, failed, missing, rows, the missing and failed units and
        the failures' reasons."""
        rows = self.get_json(
            "/v1/coverage", instrument=instrument, kind=kind,
            start=None if start is None else _time(start),
            end=None if end is None else _time(end),
        )["data"]  # fmt: skip
        table = pa.Table.from_pylist(rows)
        return table if as_arrow else pd.DataFrame(rows)

    def instruments(self) -> list[dict[str, Any]]:
        """Every stored instrument with its coverage per kind."""
        data: list[dict[str, Any]] = self.get_json("/v1/instruments")["data"]
        return data

    # --------------------------------------------------------------------------- requests

    def request(
        self,
        instrument: str,
        start: TimeLike,
        end: TimeLike,
        *,
        source: str | None = None,
        kind: Literal["ticks", "candles"] = "ticks",
        timeframe: str | None = None,
        side: str | None = None,
        skip_existing: bool = False,
    ) -> str:
        """Publish a fetch request (needs the ``request`` scope); returns its id."""
        body: dict[str, Any] = {
            "instrument": instrument, "start": _time(start), "end": _time(end), "kind": kind,
            "skip_existing": skip_existing,
        }  # fmt: skip
        for name, value in (("source", source), ("timeframe", timeframe), ("side", side)):
            if value is not None:
                body[name] = value
        answer = self._send("POST", "/v1/requests", json=body).json()
        return str(answer["request_id"])

    def status(self, request_id: str) -> dict[str, Any]:
        """The request's status: ``pending``, ``running``, ``completed`` or ``rejected``, with
        units stored, empty, suspect_empty, failed, skipped and rows."""
        status: dict[str, Any] = self.get_json(f"/v1/requests/{request_id}")
        return status

    def wait(
        self, request_id: str, timeout: float = 1800.0, poll_s: float = 1.0, *, check: bool = True
    ) -> dict[str, Any]:
        """Poll the request until it is ``completed`` or ``rejected`` and return its status.
        Raises :class:`TimeoutError` after ``timeout`` seconds and, with ``check``,
        :class:`RequestFailed` when it was rejected or has failed units."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(request_id)
            if status["status"] in ("completed", "rejected"):
                if check and (status["status"] == "rejected" or status.get("failed")):
                    raise RequestFailed(status)
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {request_id} still {status['status']}: {status}")
            time.sleep(poll_s)
