"""The ingest log, read side: every query over the writer's completeness ledger.

``ingest_log`` has one row per stored unit of work, primary key ``(instrument, kind,
unit_start)`` (schema in ``shared/src/tickpipe_shared/db/migrations/``); the writer and its
failure ledger write it (:mod:`tickpipe_writer.store`, :mod:`tickpipe_writer.failures`). Its
readers — the fetcher's planner (``skip_existing``), the CLI (``status``, ``export``,
``candles``) and the HTTP API — ask it here, so the meaning of a state is defined once:

* **done** (:func:`done_units`): ``stored`` or ``empty``, downloaded after the unit had closed
  (``fetched_at >= unit_end``): a closed period never changes, so its data is final. Units
  downloaded while still open, ``partial``, ``failed`` and ``suspect-empty`` units are not done:
  a resumed request fetches them again.
* **holding data** (:func:`sources`): every state but ``failed``.

Times in and out are ms since the epoch (UTC) unless a parameter is a ``datetime``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from tickpipe_shared.units import dt_to_ms, ms_to_dt

#: Ledger states, in the order reports show them.
STATES = ("stored", "empty", "suspect-empty", "partial", "failed")

_DONE_SQL = """
SELECT unit_start FROM ingest_log
WHERE instrument = $1 AND kind = $2 AND unit_start >= $3 AND unit_start < $4
  AND state IN ('stored', 'empty') AND fetched_at IS NOT NULL AND fetched_at >= unit_end
"""

_UNIT_STATES_SQL = """
SELECT unit_start, state, rows FROM ingest_log
WHERE instrument = $1 AND kind = $2 AND unit_start >= $3 AND unit_start < $4
ORDER BY unit_start
"""

_SUMMARY_SQL = """
WITH g AS (
    SELECT l.instrument, l.kind,
           count(*) FILTER (WHERE l.state = 'stored')  AS units_stored,
           count(*) FILTER (WHERE l.state = 'empty')   AS units_empty,
           count(*) FILTER (WHERE l.state = 'partial') AS units_partial,
           count(*) FILTER (WHERE l.state = 'suspect-empty') AS units_suspect_empty,
           count(*) FILTER (WHERE l.state = 'failed')  AS units_failed,
           coalesce(sum(l.rows), 0)                    AS rows,
           min(l.unit_start) AS first_unit, max(l.unit_end) AS last_unit
    FROM ingest_log l
    WHERE ($1::text IS NULL OR l.instrument = $1) AND ($2::text IS NULL OR l.kind = $2)
    GROUP BY l.instrument, l.kind
)
SELECT g.*,
       CASE WHEN g.kind = 'ticks'
            THEN (SELECT min(ts) FROM ticks t WHERE t.instrument = g.instrument)
            ELSE (SELECT min(ts) FROM candles c WHERE c.instrument = g.instrument
                    AND c.timeframe = split_part(g.kind, ':', 2)
                    AND c.side = split_part(g.kind, ':', 3)) END AS first_row,
       CASE WHEN g.kind = 'ticks'
            THEN (SELECT max(ts) FROM ticks t WHERE t.instrument = g.instrument)
            ELSE (SELECT max(ts) FROM candles c WHERE c.instrument = g.instrument
                    AND c.timeframe = split_part(g.kind, ':', 2)
                    AND c.side = split_part(g.kind, ':', 3)) END AS last_row
FROM g
ORDER BY g.instrument, g.kind <> 'ticks', g.kind
"""

_SOURCES_SQL = """
SELECT DISTINCT source FROM ingest_log
WHERE instrument = $1 AND kind = $4 AND unit_start < $3::timestamptz
  AND unit_end > $2::timestamptz AND state <> 'failed'
ORDER BY source
"""

_SOURCE_CANDLE_SIDES_SQL = """
SELECT DISTINCT split_part(kind, ':', 2) AS timeframe, split_part(kind, ':', 3) AS side
FROM ingest_log
WHERE instrument = $1 AND kind LIKE 'candles:%' AND state = 'stored'
  AND ($2::text IS NULL OR split_part(kind, ':', 2) = $2)
ORDER BY 1, 2
"""


async def done_units(
    conn: asyncpg.Connection,
    instrument: str,
    kind: str,
    from_ms: int,
    to_ms: int,
    timeout_s: float | None = None,
) -> set[int]:
    """Start times (ms) of the *done* units of ``instrument``/``kind`` starting in
    ``[from_ms, to_ms)`` (see the module docstring). Raises what asyncpg raises, e.g.
    :class:`asyncpg.UndefinedTableError` before the writer first ran."""
    rows = await conn.fetch(
        _DONE_SQL, instrument, kind, ms_to_dt(from_ms), ms_to_dt(to_ms), timeout=timeout_s
    )
    return {dt_to_ms(r["unit_start"]) for r in rows}


async def unit_states(
    conn: asyncpg.Connection, instrument: str, kind: str, from_ms: int, to_ms: int
) -> list[tuple[int, str, int]]:
    """``(unit start ms, state, rows)`` of every ledger row of ``instrument``/``kind`` starting
    in ``[from_ms, to_ms)``, oldest first."""
    rows = await conn.fetch(_UNIT_STATES_SQL, instrument, kind, ms_to_dt(from_ms), ms_to_dt(to_ms))
    return [(dt_to_ms(r["unit_start"]), r["state"], int(r["rows"])) for r in rows]


async def summary_rows(
    conn: asyncpg.Connection, instrument: str | None = None, kind: str | None = None
) -> Sequence[asyncpg.Record]:
    """Per instrument and kind (only ``instrument``/``kind`` when given): ``units_<state>``
    counts, ``rows`` (sum), ``first_unit``/``last_unit`` (first unit start, last unit end) and
    ``first_row``/``last_row`` (first and last ``ts`` in ``ticks`` or ``candles``, datetimes or
    None). Ordered by instrument, ``ticks`` first, then the candle kinds by name."""
    rows: Sequence[asyncpg.Record] = await conn.fetch(_SUMMARY_SQL, instrument, kind)
    return rows


async def sources(
    conn: asyncpg.Connection,
    instrument: str,
    from_: datetime,
    to: datetime,
    kind: str = "ticks",
) -> list[str]:
    """Distinct ``ingest_log`` sources of the ``kind`` units overlapping ``[from_, to)`` (units
    that failed hold no data and do not count). The OHLCV candles (``candles``) come from
    ticks: their sources are those of the tick units."""
    rows = await conn.fetch(
        _SOURCES_SQL, instrument, from_, to, "ticks" if kind == "candles" else kind
    )
    return [str(r["source"]) for r in rows]


async def source_candle_sides(
    conn: asyncpg.Connection, instrument: str, timeframe: str | None = None
) -> list[tuple[str, str]]:
    """The ``(timeframe, side)`` series of source candles stored for ``instrument`` (only those
    of ``timeframe`` when given, in its stored spelling), from the ingest log's stored units."""
    rows = await conn.fetch(_SOURCE_CANDLE_SIDES_SQL, instrument, timeframe)
    return [(str(r["timeframe"]), str(r["side"])) for r in rows]
