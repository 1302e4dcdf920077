"""SQL of the API: instruments, tick and candle reads (pages and streams), counts, and the
ledger state that ETags are derived from. No formatting here: rows leave as asyncpg records or
raw binary ``COPY`` chunks (:mod:`tickpipe_api.copy_reader`), every price as an integer number of
points at the series' price scale (:attr:`~tickpipe_api.series.Series.price_scale`: mid candles
have one decimal more), which :mod:`tickpipe_api.batches` turns into exact decimals or floats."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from tickpipe_shared.db.ohlcv import BUCKET_ORIGIN, SCALE_JOIN
from tickpipe_shared.instruments.registry import canonical_name
from tickpipe_shared.units import dt_to_ms, plan_units

from tickpipe_api.problems import Problem
from tickpipe_api.series import Series, candle_source

_ORIGIN_SQL = f"TIMESTAMPTZ '{BUCKET_ORIGIN}'"

#: Columns of each series kind, in answer order.
TICK_COLUMNS = ("ts", "bid", "ask", "bid_volume", "ask_volume", "flags")
CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "tick_count", "bid_volume", "ask_volume")
SOURCE_CANDLE_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "flags")


def columns_of(series: Series) -> tuple[str, ...]:
    """The answer columns of ``series``."""
    if series.kind == "ticks":
        return TICK_COLUMNS
    return CANDLE_COLUMNS if series.kind == "candles" else SOURCE_CANDLE_COLUMNS


@dataclass(frozen=True, slots=True)
class Instrument:
    """An instrument as stored: name, price scale (decimals), asset class, source codes."""

    instrument: str
    price_scale: int
    asset_class: str | None
    source_codes: dict[str, str]


async def is_timescaledb(conn: asyncpg.Connection | asyncpg.Pool) -> bool:
    """True when the schema was migrated with the TimescaleDB variant (continuous aggregates)."""
    value = await conn.fetchval("SELECT variant FROM schema_migrations WHERE version = 2", column=0)
    return bool(value == "timescaledb")


async def all_instruments(conn: asyncpg.Connection | asyncpg.Pool) -> list[Instrument]:
    """Every stored instrument, by name."""
    rows = await conn.fetch(
        "SELECT instrument, price_scale, asset_class, source_codes::text AS codes "
        "FROM instruments ORDER BY instrument"
    )
    return [_instrument(r) for r in rows]


def _instrument(r: asyncpg.Record) -> Instrument:
    import json

    codes = json.loads(r["codes"]) if r["codes"] else {}
    return Instrument(r["instrument"], int(r["price_scale"]), r["asset_class"], codes)


async def find_instrument(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> Instrument:
    """The stored instrument ``name`` means: the exact name, else its canonical Dukascopy
    spelling (``eur/usd`` → ``EURUSD``). Raises a 404 :class:`Problem` with up to 5 close
    matches when neither is stored."""
    for candidate in dict.fromkeys((name, canonical_name(name))):
        r = await conn.fetchrow(
            "SELECT instrument, price_scale, asset_class, source_codes::text AS codes "
            "FROM instruments WHERE instrument = $1",
            candidate,
        )
        if r is not None:
            return _instrument(r)
    names = [str(r["instrument"]) for r in await conn.fetch("SELECT instrument FROM instruments")]
    upper = {n.upper(): n for n in names}
    found = difflib.get_close_matches(canonical_name(name).upper(), upper, n=5, cutoff=0.5)
    matches = [upper[m] for m in found]
    raise Problem(
        404,
        "unknown-instrument",
        "Unknown instrument",
        f"no data stored for instrument {name!r}"
        + (f"; close matches: {', '.join(matches)}" if matches else ""),
        "instrument",
        matches=matches,
    )


# --------------------------------------------------------------------------- ticks


def tick_page_sql() -> str:
    """One page of ticks: ``$1`` instrument, ``[$2, $3)``, ``$4`` rows at most, bid and ask in
    points; in the paging order ``(ts, bid, ask, bid_volume, ask_volume, flags)`` —
    deterministic within a timestamp, so the same rows come in the same order after their unit
    is rewritten."""
    return (
        "SELECT ts, bid_points AS bid, ask_points AS ask, bid_volume, ask_volume, flags\n"
        "FROM ticks WHERE instrument = $1 AND ts >= $2 AND ts < $3\n"
        "ORDER BY ts, bid_points, ask_points, bid_volume, ask_volume, flags\nLIMIT $4"
    )


def tick_copy_sql() -> str:
    """Ticks of ``$1`` in ``[$2, $3)`` by ``ts`` with fixed-width rows (bid and ask int8 points,
    NULL volumes as NaN) for ``COPY … TO STDOUT (FORMAT binary)``."""
    return (
        "SELECT ts, bid_points, ask_points, coalesce(bid_volume, 'NaN'::float8), "
        "coalesce(ask_volume, 'NaN'::float8), flags FROM ticks\n"
        "WHERE instrument = $1 AND ts >= $2 AND ts < $3 ORDER BY ts"
    )


async def copy_ticks(
    conn: asyncpg.Connection, series: Series, sink: Callable[[bytes], Awaitable[None]]
) -> None:
    """Stream the ticks of ``series`` as binary ``COPY`` data into ``sink`` (awaited per chunk,
    so a slow client slows the database read instead of filling memory)."""
    await conn.copy_from_query(
        tick_copy_sql(), series.instrument, series.start, series.end, output=sink, format="binary"
    )


# --------------------------------------------------------------------------- candles


_OHLC = ("open", "high", "low", "close")


def candle_sql(series: Series, timescaledb: bool, paged: bool) -> tuple[str, list[Any]]:
    """SQL and arguments of the candles of ``series`` (columns :data:`CANDLE_COLUMNS` or
    :data:`SOURCE_CANDLE_COLUMNS`, prices in points at ``series.price_scale``), oldest first.
    With ``paged`` the last two arguments are ``from`` (first candle start to include) and the
    row limit, placeholders ``$n-1``/``$n``."""
    if series.kind == "source_candles":
        # Source candles are stored as float8 prices: points are their exact round(price * f).
        prices = ", ".join(f"round({p} * s.f)::bigint AS {p}" for p in _OHLC)
        sql = (
            f"SELECT ts, {prices}, volume, flags FROM candles {SCALE_JOIN}\n"
            "WHERE instrument = $1 AND timeframe = $2 AND side = $3 AND ts >= $4 AND ts < $5"
        )
        args: list[Any] = [series.instrument, series.timeframe, series.side]
        args += [series.start, series.end]
        if paged:
            return sql + " AND ts >= $6 ORDER BY ts LIMIT $7", args
        return sql + " ORDER BY ts", args
    assert series.timeframe is not None and series.width is not None and series.side is not None
    s = series.side
    lo, hi = series.tick_window()
    how, view = candle_source(series.timeframe, timescaledb)
    args = [series.instrument, lo, hi]
    # Points at the series' scale: mid is stored in (half) points, its scale has one more decimal.
    to_scale = "(({}) * 10)::bigint" if s == "mid" else "{}"
    open_, high, low, close = (to_scale.format(f"{s}_{p}_points") for p in _OHLC)
    if how == "view":
        sql = (
            f"SELECT bucket AS ts, {open_} AS open, {high} AS high, {low} AS low, "
            f"{close} AS close, tick_count, bid_volume, ask_volume FROM {view}\n"
            "WHERE instrument = $1 AND bucket >= $2 AND bucket < $3"
        )
        if paged:
            return sql + " AND bucket >= $4 ORDER BY bucket LIMIT $5", args
        return sql + " ORDER BY bucket", args
    args.append(series.width)
    bucket = f"date_bin($4::interval, {{t}}, {_ORIGIN_SQL})"
    if how == "rollup":
        b = bucket.format(t="bucket")
        sql = (
            f"SELECT {b} AS ts, (array_agg({open_} ORDER BY bucket))[1] AS open, "
            f"max({high}) AS high, min({low}) AS low, "
            f"(array_agg({close} ORDER BY bucket DESC))[1] AS close, "
            "sum(tick_count)::bigint AS tick_count, sum(bid_volume) AS bid_volume, "
            f"sum(ask_volume) AS ask_volume FROM {view}\n"
            "WHERE instrument = $1 AND bucket >= $2 AND bucket < $3"
        )
        where_from = " AND bucket >= $5"
    else:
        price = "(bid_points + ask_points) * 5" if s == "mid" else f"{s}_points"
        b = bucket.format(t="ts")
        sql = (
            f"SELECT {b} AS ts, (array_agg({price} ORDER BY ts))[1] AS open, "
            f"max({price}) AS high, min({price}) AS low, "
            f"(array_agg({price} ORDER BY ts DESC))[1] AS close, count(*) AS tick_count, "
            "sum(bid_volume) AS bid_volume, sum(ask_volume) AS ask_volume FROM ticks\n"
            "WHERE instrument = $1 AND ts >= $2 AND ts < $3"
        )
        where_from = " AND ts >= $5"
    if paged:
        return sql + where_from + " GROUP BY 1 ORDER BY 1 LIMIT $6", args
    return sql + " GROUP BY 1 ORDER BY 1", args


# --------------------------------------------------------------------------- counts


async def count_rows(
    conn: asyncpg.Connection | asyncpg.Pool, series: Series, timescaledb: bool
) -> int:
    """Exact number of rows ``series`` answers with."""
    if series.kind == "ticks":
        value = await conn.fetchval(
            "SELECT count(*) FROM ticks WHERE instrument = $1 AND ts >= $2 AND ts < $3",
            series.instrument,
            series.start,
            series.end,
        )
        return int(value)
    sql, args = candle_sql(series, timescaledb, paged=False)
    return int(await conn.fetchval(f"SELECT count(*) FROM ({sql}) q", *args))


async def estimate_rows(conn: asyncpg.Connection | asyncpg.Pool, series: Series) -> int:
    """A cheap upper bound of the rows of ``series``: for ticks the ledger's rows of the units
    the range touches; for candles the buckets in the range."""
    if series.kind == "candles":
        assert series.width is not None
        return int((series.end - series.start) / series.width) + 1
    lo, hi = _unit_bounds(series)
    value = await conn.fetchval(
        "SELECT coalesce(sum(rows), 0) FROM ingest_log "
        "WHERE instrument = $1 AND kind = $2 AND unit_start >= $3 AND unit_start < $4",
        series.instrument,
        series.ledger_kind,
        lo,
        hi,
    )
    return int(value)


# --------------------------------------------------------------------------- ledger state


@dataclass(frozen=True, slots=True)
class LedgerState:
    """The ingest-log state of the units ``[first unit start, last unit end)`` of a series:
    ``expected`` units, ``rows`` ledger rows there, ``final`` rows stored or empty after the
    unit had closed, and a digest of every row's state (changes whenever a unit is written)."""

    expected: int
    rows: int
    final: int
    digest: str
    pending: int = 0

    @property
    def complete(self) -> bool:
        """Every unit of the range stored (or verified empty) since it closed, and (candles) no
        continuous-aggregate window of it still waiting for the writer's refresh."""
        return self.expected == self.rows == self.final and self.pending == 0


def _unit_bounds(series: Series) -> tuple[datetime, datetime]:
    lo, hi = series.tick_window()
    if hi <= lo:
        return lo, lo
    units = plan_units("", "-", series.ledger_kind, dt_to_ms(lo), dt_to_ms(hi))
    return (
        datetime.fromtimestamp(units[0].start_ms / 1000, UTC),
        datetime.fromtimestamp(units[-1].end_ms / 1000, UTC),
    )


async def ledger_state(conn: asyncpg.Connection | asyncpg.Pool, series: Series) -> LedgerState:
    """The :class:`LedgerState` of the units ``series`` reads."""
    lo, hi = series.tick_window()
    expected = (
        len(plan_units("", "-", series.ledger_kind, dt_to_ms(lo), dt_to_ms(hi))) if hi > lo else 0
    )
    ulo, uhi = _unit_bounds(series)
    r = await conn.fetchrow(
        """SELECT count(*) AS n,
                  count(*) FILTER (WHERE state IN ('stored', 'empty')
                                   AND fetched_at >= unit_end) AS final,
                  coalesce(string_agg(
                      concat_ws('/', unit_start, state, rows, payload_sha256, written_at), ','
                      ORDER BY unit_start), '') AS state,
                  -- Candles from the continuous aggregates are final only once the writer's
                  -- background refresh of the written windows is done (ohlcv_pending).
                  CASE WHEN $5 THEN (SELECT count(*) FROM ohlcv_pending
                                     WHERE window_start < $4 AND window_end > $3)
                       ELSE 0 END AS pending
           FROM ingest_log
           WHERE instrument = $1 AND kind = $2 AND unit_start >= $3 AND unit_start < $4""",
        series.instrument,
        series.ledger_kind,
        ulo,
        uhi,
        series.kind == "candles",
    )
    digest = hashlib.sha256(str(r["state"]).encode()).hexdigest()
    return LedgerState(expected, int(r["n"]), int(r["final"]), digest, int(r["pending"]))


def closed(series: Series, now: datetime | None = None, margin: timedelta = timedelta(0)) -> bool:
    """True when ``series``' range has ended (nothing in it can still be traded)."""
    return series.tick_window()[1] + margin <= (now or datetime.now(UTC))
