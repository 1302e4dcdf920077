"""The WebSocket transport (``tickpipe_fetcher.ws``) against a fake connection: routing by
``req_id``, timeouts, drops and reconnects, the opening hook, and the idle keep-alive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest
from tickpipe_fetcher.http import PermanentFetchError, RetryableFetchError
from tickpipe_fetcher.ws import PING, JsonWebSocket, Requester, WsClosedError, WsConnection

URL = "wss://ws.test/websockets/v3?app_id=1089"


class FakeConnection:
    """A socket whose replies the test writes by hand: ``reply`` queues a frame, ``drop``
    closes it from the server side."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.frames: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = False
        self.arrived = asyncio.Event()

    async def send(self, text: str) -> None:
        if self.closed:
            raise WsClosedError("socket closed")
        self.sent.append(json.loads(text))
        self.arrived.set()

    async def receive(self) -> str:
        frame = await self.frames.get()
        if frame is None:
            self.closed = True
            raise WsClosedError("dropped by the server")
        return frame

    async def close(self) -> None:
        self.closed = True
        self.frames.put_nowait(None)

    def reply(self, req_id: object, **fields: Any) -> None:
        self.frames.put_nowait(json.dumps({**fields, "req_id": req_id}))

    def drop(self) -> None:
        self.frames.put_nowait(None)

    async def wait_sent(self, n: int) -> None:
        """Until ``n`` frames were sent."""
        while len(self.sent) < n:
            self.arrived.clear()
            await self.arrived.wait()

    def requests(self) -> list[dict[str, Any]]:
        """Sent frames other than pings."""
        return [m for m in self.sent if "ping" not in m]


class FakeConnector:
    """The connect factory: a new :class:`FakeConnection` per call (or a failure)."""

    def __init__(self) -> None:
        self.conns: list[FakeConnection] = []
        self.urls: list[str] = []
        self.fail_next: BaseException | None = None

    async def __call__(self, url: str) -> WsConnection:
        self.urls.append(url)
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        conn = FakeConnection()
        self.conns.append(conn)
        return conn

    @property
    def last(self) -> FakeConnection:
        return self.conns[-1]


class FakeTime:
    """Monotonic time that moves only when the test advances it; sleepers wake when due."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(5):
            due = [s for s in self.sleepers if s[0] <= self.now]
            self.sleepers = [s for s in self.sleepers if s[0] > self.now]
            for _, future in due:
                if not future.done():
                    future.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)


def make_socket(
    connector: FakeConnector,
    reply_timeout_s: float = 5.0,
    ping_interval_s: float = 30.0,
    time: FakeTime | None = None,
    on_open: Any = None,
) -> JsonWebSocket:
    fake_time = time or FakeTime()
    return JsonWebSocket(
        URL,
        connector,
        reply_timeout_s=reply_timeout_s,
        connect_timeout_s=5.0,
        ping_interval_s=ping_interval_s,
        on_open=on_open,
        clock=fake_time.monotonic,
        sleep=fake_time.sleep,
    )


async def test_replies_are_routed_by_req_id_in_any_order() -> None:
    connector = FakeConnector()
    socket = make_socket(connector)
    tasks = [asyncio.create_task(socket.request({"n": n}, f"request {n}")) for n in range(3)]
    await asyncio.sleep(0)
    conn = connector.last
    await conn.wait_sent(3)
    by_n = {m["n"]: m["req_id"] for m in conn.sent}
    assert sorted(by_n.values()) == [1, 2, 3]
    # Replies come back newest first, with a pong and a stray reply in between.
    conn.reply(by_n[2], answer="two")
    conn.frames.put_nowait(
        json.dumps({"echo_req": {"ping": 1}, "ping": "pong", "msg_type": "ping"})
    )
    conn.reply(999, answer="nobody's")
    conn.reply(str(by_n[1]), answer="one")  # a req_id echoed as a string still routes
    conn.reply(by_n[0], answer="zero")
    replies = await asyncio.gather(*tasks)
    assert [r.data["answer"] for r in replies] == ["zero", "one", "two"]
    assert json.loads(replies[0].text) == replies[0].data
    assert len(connector.conns) == 1
    await socket.close()


async def test_reply_text_is_kept_exactly_as_received() -> None:
    connector = FakeConnector()
    socket = make_socket(connector)
    task = asyncio.create_task(socket.request({"a": 1}, "request"))
    await asyncio.sleep(0)
    await connector.last.wait_sent(1)
    text = '{ "msg_type" : "history",  "req_id": 1, "x": "1.50"}'
    connector.last.frames.put_nowait(text)
    reply = await task
    assert reply.text == text
    assert reply.data["x"] == "1.50"
    await socket.close()


async def test_no_reply_in_time_is_retryable_and_a_late_reply_is_ignored() -> None:
    connector = FakeConnector()
    socket = make_socket(connector, reply_timeout_s=0.05)
    with pytest.raises(RetryableFetchError, match=r"ticks_history R_50: no reply from ws\.test"):
        await socket.request({"ticks_history": "R_50"}, "ticks_history R_50")
    conn = connector.last
    conn.reply(1, msg_type="history")  # too late: nobody waits for req_id 1 any more
    task = asyncio.create_task(socket.request({"ticks_history": "R_50"}, "again"))
    await conn.wait_sent(2)
    assert conn.sent[1]["req_id"] == 2
    conn.reply(2, msg_type="history", n=2)
    assert (await task).data["n"] == 2
    assert len(connector.conns) == 1  # a timeout alone keeps the socket
    await socket.close()


async def test_drop_fails_unanswered_requests_and_the_next_request_reconnects() -> None:
    connector = FakeConnector()
    socket = make_socket(connector)
    tasks = [asyncio.create_task(socket.request({"n": n}, f"request {n}")) for n in range(2)]
    await asyncio.sleep(0)
    first = connector.last
    await first.wait_sent(2)
    first.drop()
    for task in tasks:
        with pytest.raises(RetryableFetchError, match="dropped before the reply came"):
            await task
    assert not socket.connected
    task = asyncio.create_task(socket.request({"n": 9}, "after the drop"))
    await asyncio.sleep(0)
    second = connector.last
    assert second is not first
    await second.wait_sent(1)
    # req_ids are never reused, so a late reply on a new socket cannot be mistaken.
    assert second.sent[0]["req_id"] == 3
    second.reply(3, ok=True)
    assert (await task).data["ok"] is True
    assert socket.connections == 2
    await socket.close()


async def test_a_frame_that_is_not_json_fails_the_waiters_instead_of_timing_out() -> None:
    connector = FakeConnector()
    socket = make_socket(connector, reply_timeout_s=30)
    task = asyncio.create_task(socket.request({"n": 1}, "request"))
    await asyncio.sleep(0)
    await connector.last.wait_sent(1)
    connector.last.frames.put_nowait("<html>Bad gateway</html>")
    with pytest.raises(RetryableFetchError, match="not a JSON object"):
        await asyncio.wait_for(task, 1)
    assert not socket.connected


async def test_connect_failure_is_retryable_and_names_the_host_not_the_query() -> None:
    connector = FakeConnector()
    connector.fail_next = OSError("connection refused")
    socket = make_socket(connector)
    with pytest.raises(RetryableFetchError) as info:
        await socket.request({"n": 1}, "request")
    assert "cannot open WebSocket to ws.test" in str(info.value)
    assert "connection refused" in str(info.value)
    assert "app_id" not in str(info.value)
    # The next request tries again.
    task = asyncio.create_task(socket.request({"n": 2}, "request"))
    await asyncio.sleep(0)
    await connector.last.wait_sent(1)
    connector.last.reply(connector.last.sent[0]["req_id"], ok=1)
    assert (await task).data["ok"] == 1
    await socket.close()


async def test_close_fails_pending_requests() -> None:
    connector = FakeConnector()
    socket = make_socket(connector)
    task = asyncio.create_task(socket.request({"n": 1}, "request"))
    await asyncio.sleep(0)
    await connector.last.wait_sent(1)
    await socket.close()
    with pytest.raises(RetryableFetchError, match="closed by the client"):
        await task
    assert connector.last.closed


async def test_on_open_runs_first_on_every_connection() -> None:
    connector = FakeConnector()
    opened: list[int] = []

    async def hello(request: Requester) -> None:
        reply = await request({"authorize": "x"}, "authorize")
        opened.append(reply.data["req_id"])

    socket = make_socket(connector, on_open=hello)

    async def answer_all(conn: FakeConnection, upto: int) -> None:
        await conn.wait_sent(upto)
        for m in conn.sent[upto - 1 : upto]:
            conn.reply(m["req_id"], msg_type="ok")

    task = asyncio.create_task(socket.request({"n": 1}, "request"))
    await asyncio.sleep(0)
    conn = connector.last
    await answer_all(conn, 1)
    await answer_all(conn, 2)
    await task
    assert [("authorize" in m) for m in conn.sent] == [True, False]
    conn.drop()
    await asyncio.sleep(0)
    task = asyncio.create_task(socket.request({"n": 2}, "request"))
    await asyncio.sleep(0)
    conn2 = connector.last
    await answer_all(conn2, 1)
    await answer_all(conn2, 2)
    await task
    assert len(opened) == 2
    await socket.close()


async def test_on_open_failure_closes_the_connection_and_reaches_the_caller() -> None:
    connector = FakeConnector()

    async def refuse(request: Requester) -> None:
        raise PermanentFetchError("authorize: InvalidToken")

    socket = make_socket(connector, on_open=refuse)
    with pytest.raises(PermanentFetchError, match="InvalidToken"):
        await socket.request({"n": 1}, "request")
    assert connector.last.closed
    assert not socket.connected


def _pings(conn: FakeConnection) -> list[Mapping[str, Any]]:
    return [m for m in conn.sent if m.get("ping") == 1]


async def test_keepalive_pings_only_while_idle() -> None:
    connector = FakeConnector()
    clock = FakeTime()
    socket = make_socket(connector, ping_interval_s=30, time=clock)
    task = asyncio.create_task(socket.request({"n": 1}, "request"))
    await asyncio.sleep(0)
    conn = connector.last
    await conn.wait_sent(1)
    conn.reply(1, ok=1)
    await task
    await clock.advance(29)
    assert _pings(conn) == []
    await clock.advance(1)
    assert len(_pings(conn)) == 1
    # Traffic resets the idle time: a request at t=40 moves the next ping to t=70.
    await clock.advance(10)
    task = asyncio.create_task(socket.request({"n": 2}, "request"))
    await conn.wait_sent(3)
    conn.reply(conn.sent[-1]["req_id"], ok=1)
    await task
    await clock.advance(20)  # t=60: 30 s after the ping, but only 20 s after the request
    assert len(_pings(conn)) == 1
    await clock.advance(10)  # t=70
    assert len(_pings(conn)) == 2
    await clock.advance(30)  # t=100
    assert len(_pings(conn)) == 3
    assert PING == '{"ping": 1}'
    await socket.close()


async def test_keepalive_stops_when_the_socket_drops() -> None:
    connector = FakeConnector()
    clock = FakeTime()
    socket = make_socket(connector, ping_interval_s=30, time=clock)
    task = asyncio.create_task(socket.request({"n": 1}, "request"))
    await asyncio.sleep(0)
    conn = connector.last
    await conn.wait_sent(1)
    conn.reply(1, ok=1)
    await task
    conn.drop()
    await clock.advance(0)
    await clock.advance(120)
    assert _pings(conn) == []
    assert clock.sleepers == [] or all(f.cancelled() or f.done() for _, f in clock.sleepers)
