"""Stand-in answers for Polygon's (Massive's) aggregates endpoint, from recorded captures.

The captures are a directory laid out like ``../shared/data/polygon/``: JSON bodies plus a
``MANIFEST.csv`` whose ``request`` column records the request each answered (``GET /v2/aggs/
ticker/AAPL/range/1/day/2005-04-01/2005-04-04 …``) and ``http_status`` its status (``403
(inferred …)`` → 403). Spec: ``../shared/docs/polygon.md`` §7.

``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}`` answers

* the capture recorded for the same ticker, multiplier, timespan, range and ``sort`` (default
  ``asc``; ``limit`` is not compared). ``from``/``to`` match as instants: a date is its UTC
  day, ``from`` its first and ``to`` its last millisecond (both bounds are inclusive), so
  ``…/1690761600000/1690847999999`` matches a capture recorded as ``…/2023-07-31/2023-07-31``;
  the ``next_url`` of a paginated capture is rewritten to the stand-in's own host;
* otherwise, for a window that holds bars of 200 captures of the same ticker, multiplier and
  timespan (e.g. a whole year asked for daily bars recorded for ten days), those bars — the
  recorded bar objects — in the requested order, paginated by ``limit`` with a ``next_url``
  (``cursor``) like the real API, so the fetcher's units and paging can be tested on real bars;
* 200 ``{"status": "OK", …}`` without ``results`` for any other well-formed request (the next
  page of the paginated capture included: the chain ends there);
* 400 ``{"status": "ERROR", …}`` for a malformed multiplier, timespan or bound;
* 401 ``{"status": "ERROR", …}`` when an API key is configured and the request carries none
  (``Authorization: Bearer <key>`` or ``?apiKey=``) or another one.

With ``status="DELAYED"`` (``POST /_control {"polygon_status": "DELAYED"}``) every ``OK`` page
says ``DELAYED`` instead, as Polygon answers on a plan whose data is delayed.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

MANIFEST = "MANIFEST.csv"
AGGS_PATH = "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{frm}/{to}"
TIMESPANS = frozenset({"second", "minute", "hour", "day", "week", "month", "quarter", "year"})
DAY_MS = 86_400_000
_REQUEST = re.compile(
    r"^GET /v2/aggs/ticker/(?P<ticker>[^/]+)/range/(?P<mult>[^/]+)/(?P<span>[^/]+)/"
    r"(?P<frm>[^/]+)/(?P<to>[^/?\s]+)(?:\?(?P<query>\S*))?"
)
_NEXT_URL = re.compile(rb'("next_url"\s*:\s*")https?://[^/"]+')
_STATUS_OK = re.compile(rb'("status"\s*:\s*")OK"')
#: Page statuses the stand-in can be told to answer with (``OK``: as recorded).
PAGE_STATUSES = frozenset({"OK", "DELAYED"})


class BadRequestError(ValueError):
    """A request parameter Polygon would reject with 400."""


def bound_ms(value: str, *, end: bool) -> int:
    """A path bound as ms: ``1690761600000`` as is; ``2023-07-31`` its first ms, or with
    ``end`` its last ms (Polygon's ``to`` is inclusive). Raises :class:`BadRequestError`."""
    if value.isdigit():
        return int(value)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise BadRequestError(
            f"Could not parse the time parameter: {value!r}. Use YYYY-MM-DD or a Unix MS timestamp"
        ) from None
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000
    return start + DAY_MS - 1 if end else start


@dataclass(frozen=True, slots=True)
class AggsQuery:
    """The identity of an aggregates request, as captures are matched."""

    ticker: str
    multiplier: int
    timespan: str
    from_ms: int
    to_ms: int
    sort: str

    @classmethod
    def parse(
        cls, ticker: str, multiplier: str, timespan: str, frm: str, to: str, sort: str | None
    ) -> AggsQuery:
        """Raises :class:`BadRequestError` for what Polygon answers 400."""
        if not multiplier.isdigit() or int(multiplier) < 1:
            raise BadRequestError(f"multiplier {multiplier!r} is not a positive integer")
        if timespan not in TIMESPANS:
            raise BadRequestError(f"timespan {timespan!r} is not one of {sorted(TIMESPANS)}")
        if sort not in (None, "asc", "desc"):
            raise BadRequestError(f"sort {sort!r} is neither asc nor desc")
        return cls(ticker, int(multiplier), timespan, bound_ms(frm, end=False),
                   bound_ms(to, end=True), sort or "asc")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer: HTTP status and JSON body."""

    status: int
    body: bytes


def _json(status: int, **fields: object) -> Reply:
    body = {"status": fields.pop("status_text", "OK"), "request_id": uuid.uuid4().hex, **fields}
    return Reply(status, json.dumps(body, separators=(",", ":")).encode())


class PolygonCaptures:
    """The captures of one directory, indexed by :class:`AggsQuery` (read on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[AggsQuery, tuple[int, Path]] | None = None
        self._bars: dict[tuple[str, int, str], dict[int, dict[str, object]]] | None = None

    def index(self) -> dict[AggsQuery, tuple[int, Path]]:
        """Query → (status, file) of every capture the manifest describes."""
        if self._index is None:
            index: dict[AggsQuery, tuple[int, Path]] = {}
            manifest = self.root / MANIFEST
            if manifest.is_file():
                with manifest.open(newline="") as fh:
                    for row in csv.DictReader(fh):
                        m = _REQUEST.match(row.get("request") or "")
                        status = re.match(r"\d{3}", row.get("http_status") or "")
                        path = self.root / (row.get("file") or "")
                        if m is None or status is None or not path.is_file():
                            continue
                        query = parse_qs(m["query"] or "")
                        try:
                            key = AggsQuery.parse(
                                unquote(m["ticker"]), m["mult"], m["span"], m["frm"], m["to"],
                                query.get("sort", [None])[0],
                            )  # fmt: skip
                        except BadRequestError:
                            continue
                        index[key] = (int(status.group()), path)
            self._index = index
        return self._index

    def bars(self, ticker: str, multiplier: int, timespan: str) -> dict[int, dict[str, object]]:
        """Every recorded bar of a series (``t`` → bar), from the 200 captures."""
        if self._bars is None:
            bars: dict[tuple[str, int, str], dict[int, dict[str, object]]] = {}
            for key, (status, path) in self.index().items():
                if status != 200:
                    continue
                try:
                    results = json.loads(path.read_bytes()).get("results") or []
                except (ValueError, AttributeError):
                    continue
                series = bars.setdefault((key.ticker, key.multiplier, key.timespan), {})
                for bar in results:
                    if isinstance(bar, dict) and isinstance(bar.get("t"), int):
                        series.setdefault(bar["t"], bar)
            self._bars = bars
        return self._bars.get((ticker, multiplier, timespan), {})

    def _window(self, key: AggsQuery, query: Mapping[str, str], origin: str) -> Reply | None:
        series = self.bars(key.ticker, key.multiplier, key.timespan)
        ts = sorted((t for t in series if key.from_ms <= t <= key.to_ms),
                    reverse=key.sort == "desc")  # fmt: skip
        if not ts:
            return None
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 5000
        offset = int(query["cursor"]) if query.get("cursor", "").isdigit() else 0
        page = ts[offset : offset + max(1, limit)]
        fields: dict[str, object] = {
            "ticker": key.ticker, "queryCount": len(page), "resultsCount": len(page),
            "adjusted": True, "results": [series[t] for t in page], "count": len(page),
        }  # fmt: skip
        if offset + len(page) < len(ts):
            # Opaque to clients; here simply the offset of the next page.
            fields["next_url"] = (
                f"{origin}/v2/aggs/ticker/{key.ticker}/range/{key.multiplier}/{key.timespan}/"
                f"{key.from_ms}/{key.to_ms}?cursor={offset + len(page)}&limit={limit}"
                f"&sort={key.sort}"
            )
        return _json(200, **fields)

    def reply(
        self,
        match: Mapping[str, str],
        query: Mapping[str, str],
        authorization: str | None,
        origin: str,
        api_key: str | None,
        status: str = "OK",
    ) -> Reply:
        """The answer to one request: ``match`` holds the path parts (``ticker``,
        ``multiplier``, ``timespan``, ``frm``, ``to``), ``query`` its query, ``origin`` the
        stand-in's ``scheme://host:port`` for rewritten ``next_url`` values, ``status`` the
        ``status`` of a page that would say ``OK`` (one of :data:`PAGE_STATUSES`)."""
        reply = self._reply(match, query, authorization, origin, api_key)
        if status != "OK" and reply.status == 200:
            body = _STATUS_OK.sub(lambda m: m.group(1) + status.encode() + b'"', reply.body, 1)
            return Reply(200, body)
        return reply

    def _reply(
        self,
        match: Mapping[str, str],
        query: Mapping[str, str],
        authorization: str | None,
        origin: str,
        api_key: str | None,
    ) -> Reply:
        if api_key:
            given = query.get("apiKey") or (authorization or "").removeprefix("Bearer ").strip()
            if not given:
                return _json(401, status_text="ERROR", error="API Key was not provided")
            if given != api_key:
                return _json(401, status_text="ERROR", error="Unknown API Key")
        try:
            key = AggsQuery.parse(match["ticker"], match["multiplier"], match["timespan"],
                                  match["frm"], match["to"], query.get("sort"))  # fmt: skip
        except BadRequestError as e:
            return _json(400, status_text="ERROR", error=str(e))
        found = self.index().get(key)
        if found is None:
            window = self._window(key, query, origin)
            if window is not None:
                return window
            return _json(200, ticker=key.ticker, queryCount=0, resultsCount=0, adjusted=True,
                         count=0)  # fmt: skip
        status, path = found
        body = _NEXT_URL.sub(lambda m: m.group(1) + origin.encode(), path.read_bytes())
        return Reply(status, body)


def default_polygon_root(dukascopy_root: Path) -> Path | None:
    """``<shared>/data/polygon`` beside a ``<shared>/data/dukascopy`` root, if it exists."""
    candidate = dukascopy_root.parent / "polygon"
    return candidate if (candidate / MANIFEST).is_file() else None


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
