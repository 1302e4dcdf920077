"""The answer cache's known answers and the ledger watch's bookkeeping (no database)."""

from __future__ import annotations

from tickpipe_api.cache import AnswerCache, CachedAnswer, KnownAnswer, request_key
from tickpipe_api.ledger_watch import LedgerChange, LedgerWatch, parse_change
from tickpipe_shared.config import Settings

HOUR = 3_600_000


def _known(etag: str, instrument: str = "EURUSD", lo: int = 0, hi: int = 2 * HOUR) -> KnownAnswer:
    headers = ((b"content-type", b"application/json"), (b"etag", etag.encode()))
    return KnownAnswer(etag, headers, "candles", "json", instrument, lo, hi)


def _cache(entries: int = 8) -> AnswerCache:
    return AnswerCache(entries, 60.0, 1 << 20)


def _scope(query: bytes, accept: bytes = b"*/*", host: bytes = b"api:8000") -> dict[str, object]:
    return {
        "scheme": "http",
        "path": "/v1/candles",
        "query_string": query,
        "headers": [(b"host", host), (b"accept", accept), (b"x-api-key", b"tp_secret")],
    }


def test_request_key_is_the_question_not_the_asker() -> None:
    a = request_key(_scope(b"instrument=EURUSD&timeframe=1m"))
    assert a == request_key({**_scope(b"instrument=EURUSD&timeframe=1m"), "headers": [
        (b"host", b"api:8000"), (b"accept", b"*/*"), (b"x-api-key", b"tp_other")]})  # fmt: skip
    assert "tp_secret" not in a
    assert a != request_key(_scope(b"instrument=EURUSD&timeframe=5m"))
    assert a != request_key(_scope(b"instrument=EURUSD&timeframe=1m", accept=b"text/csv"))
    assert a != request_key(_scope(b"instrument=EURUSD&timeframe=1m", host=b"other:8000"))


def test_a_request_is_known_only_while_its_answer_is_cached() -> None:
    cache = _cache()
    cache.remember("q", _known('"e1"'))
    assert cache.known("q") is None  # no body under that ETag: nothing to remember
    body = CachedAnswer(b"[]", "application/json", (), 1440)
    cache.put('"e1"', body)
    cache.remember("q", _known('"e1"'))
    hit = cache.known("q")
    assert hit is not None and hit[0].etag == '"e1"' and hit[1] is body


def test_forget_drops_exactly_the_answers_a_change_touches() -> None:
    cache = _cache()
    for etag, inst, lo, hi in (
        ('"a"', "EURUSD", 0, 2 * HOUR),
        ('"b"', "EURUSD", 5 * HOUR, 6 * HOUR),
        ('"c"', "XAUUSD", 0, 2 * HOUR),
    ):
        cache.put(etag, CachedAnswer(b"x", "application/json", (), 1))
        cache.remember(etag, _known(etag, inst, lo, hi))
    assert cache.forget(LedgerChange("EURUSD", HOUR, 2 * HOUR)) == 1
    assert cache.known('"a"') is None
    assert cache.known('"b"') is not None and cache.known('"c"') is not None
    # A unit ending where an answer starts does not touch it ([start, end) windows).
    assert cache.forget(LedgerChange("EURUSD", 4 * HOUR, 5 * HOUR)) == 0
    assert cache.forget(LedgerChange("EURUSD")) == 1  # the instrument's price scale
    assert cache.forget(LedgerChange(None)) == 1  # everything
    assert cache.known('"c"') is None


def test_a_disabled_cache_knows_nothing() -> None:
    cache = AnswerCache(0, 60.0, 1 << 20)
    cache.put('"a"', CachedAnswer(b"x", "application/json", (), 1))
    cache.remember("q", _known('"a"'))
    assert cache.known("q") is None


def test_parse_change_reads_each_payload_and_treats_garbage_as_everything() -> None:
    assert parse_change('{"instrument": "EURUSD", "start": 0, "end": 3600000}') == LedgerChange(
        "EURUSD", 0, HOUR
    )
    assert parse_change('{"instrument": "EURUSD"}') == LedgerChange("EURUSD")
    assert parse_change('{"all": true}') == LedgerChange(None)
    for bad in ("", "not json", "[]", '{"start": 1}', '"x"'):
        assert parse_change(bad) == LedgerChange(None), bad


def test_stamps_go_stale_on_a_change_of_their_instrument_or_a_reconnect() -> None:
    seen: list[LedgerChange] = []
    watch = LedgerWatch(Settings(), seen.append)
    assert watch.stamp("EURUSD") is None  # not listening: nothing may be remembered
    watch._live = True  # as after a successful LISTEN
    s = watch.stamp("EURUSD")
    assert watch.current("EURUSD", s)
    watch._notified(None, 1, "tickpipe_ledger", '{"instrument": "XAUUSD", "start": 0, "end": 1}')
    assert watch.current("EURUSD", s)  # another instrument
    watch._notified(None, 1, "tickpipe_ledger", '{"instrument": "EURUSD", "start": 0, "end": 1}')
    assert not watch.current("EURUSD", s)
    s = watch.stamp("EURUSD")
    watch._changed(LedgerChange(None))  # what a reconnect does
    assert not watch.current("EURUSD", s)
    s = watch.stamp("EURUSD")
    watch._live = False
    assert not watch.current("EURUSD", s)
    assert [c.instrument for c in seen] == ["XAUUSD", "EURUSD", None]
