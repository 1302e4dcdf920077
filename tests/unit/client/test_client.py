"""tickpipe.client against a mock transport: retries of 429/503 after Retry-After, problems as
ApiError, Arrow decoding, cursor following, and wait()."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import httpx
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from tickpipe.client import ApiError, Client, RequestFailed


def _arrow(n: int) -> bytes:
    table = pa.table({"ts": pa.array(range(n), pa.int64()), "bid": pa.array([1.5] * n)})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=3):
            w.write_batch(batch)
    return sink.getvalue()


def _client(handler: Callable[[httpx.Request], httpx.Response], **kw: object) -> Client:
    return Client("http://api", "tp_key", transport=httpx.MockTransport(handler), **kw)  # type: ignore[arg-type]


def test_429_and_503_are_retried_after_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("tickpipe.client.client.time.sleep", slept.append)
    answers = [
        httpx.Response(429, headers={"Retry-After": "3"}, json={"status": 429}),
        httpx.Response(503, headers={"Retry-After": "1"}, json={"status": 503}),
        httpx.Response(200, content=_arrow(10)),
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    df = _client(handler).ticks("EURUSD", "2019-02-04", "2019-02-05")
    assert len(df) == 10 and list(df.columns) == ["ts", "bid"]
    assert slept == [3.0, 1.0]
    assert all(r.headers["x-api-key"] == "tp_key" for r in seen)
    assert seen[-1].url.params["format"] == "arrow"
    assert seen[-1].url.params["start"] == "2019-02-04"


def test_retries_give_up_with_the_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tickpipe.client.client.time.sleep", lambda s: None)
    problem = {
        "type": "/problems/rate-limited",
        "title": "Too many requests",
        "status": 429,
        "detail": "slow down",
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "1"}, json=problem)

    with pytest.raises(ApiError) as e:
        _client(handler, max_retries=2).ticks("EURUSD", "2019-02-04", "2019-02-05")
    assert e.value.status == 429 and e.value.type == "/problems/rate-limited"


def test_problems_become_api_errors() -> None:
    problem = {
        "type": "/problems/unknown-instrument",
        "title": "Unknown instrument",
        "status": 404,
        "detail": "no",
        "parameter": "instrument",
        "matches": ["EURUSD"],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            404, json=problem, headers={"content-type": "application/problem+json"}
        )

    with pytest.raises(ApiError) as e:
        _client(handler).candles("EURUSX", "2019-02-04", "2019-02-05", as_arrow=True)
    assert e.value.parameter == "instrument" and e.value.problem["matches"] == ["EURUSD"]


def test_as_arrow_returns_the_table() -> None:
    table = _client(lambda r: httpx.Response(200, content=_arrow(7))).ticks(
        "EURUSD", "2019-02-04", "2019-02-05", as_arrow=True
    )
    assert isinstance(table, pa.Table) and table.num_rows == 7


def test_pages_follow_the_cursor() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        page = {None: ("c1", [1, 2]), "c1": ("c2", [3]), "c2": (None, [4])}[cursor]
        return httpx.Response(200, json={"data": page[1], "next": page[0]})

    pages = list(_client(handler).pages("/v1/ticks", instrument="EURUSD"))
    assert [x for p in pages for x in p["data"]] == [1, 2, 3, 4]


def test_wait_polls_until_completed_and_raises_on_rejection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("tickpipe.client.client.time.sleep", lambda s: None)
    states = iter(["pending", "running", "completed"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert json.loads(request.content)["instrument"] == "EURUSD"
            return httpx.Response(202, json={"request_id": "r1", "status_url": "x", "request": {}})
        return httpx.Response(200, json={"request_id": "r1", "status": next(states), "failed": 0})

    c = _client(handler)
    rid = c.request("EURUSD", "2019-02-04", "2019-02-05", source="dukascopy-bi5")
    assert rid == "r1" and c.wait(rid)["status"] == "completed"

    rejected = _client(
        lambda r: httpx.Response(
            200, json={"request_id": "r2", "status": "rejected", "reason": "unknown instrument"}
        )
    )
    with pytest.raises(RequestFailed, match="unknown instrument"):
        rejected.wait("r2")
