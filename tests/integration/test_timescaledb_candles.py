"""Source candles on a real TimescaleDB: the ``candles`` hypertable's chunk interval and
compression settings, the writer's unit replace inside compressed chunks, the identity refusing a
candle twice, and the compression policy compressing a late chunk — compared with what the
writer was given, exactly (prices as the decimals at the instrument's scale).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import pytest
from support.database import scratch_database
from support.storage import require_timescaledb, storage_mode
from tickpipe_shared.candles import CANDLE_COLUMNS, Candles
from tickpipe_shared.config import Settings
from tickpipe_shared.db.migrate import migrate
from tickpipe_shared.db.ohlcv import source_candles
from tickpipe_shared.kinds import Kind
from tickpipe_shared.units import Unit, plan_units
from tickpipe_shared.wire.batch import BatchMeta, CandleBatch
from tickpipe_writer.copy_binary import CANDLE_COPY_COLUMNS, SIGNATURE, TRAILER, encode_candle_rows
from tickpipe_writer.stage import session_settings
from tickpipe_writer.store import write

pytestmark = pytest.mark.integration

# --------------------------------------------------------------------------- source candles

SERIES = (("EURUSD", "candles:1m:bid"), ("EURUSD", "candles:1m:ask"), ("USDJPY", "candles:1h:mid"))
C_FROM = datetime(2021, 1, 1, tzinfo=UTC)
C_TO = datetime(2021, 6, 1, tzinfo=UTC)


def candle_unit(instrument: str, kind: str, day: datetime, n: int, seed: int) -> CandleBatch:
    """The unit of ``kind`` holding ``day``: ``n`` candles from its start, one timeframe apart,
    random-walk prices (scale 5, or 3 for USDJPY), every fourth volume NaN, a flag on one."""
    start_ms = int(day.timestamp() * 1000)
    unit = plan_units("dukascopy-json", instrument, kind, start_ms, start_ms + 1)[0]
    step = Kind.parse(kind).timeframe.duration_ms  # type: ignore[union-attr]
    assert step is not None
    rng = np.random.default_rng(seed)
    o = (110_000 + np.cumsum(rng.integers(-9, 10, size=n))).astype(np.int64)
    c = o + rng.integers(-5, 6, size=n)
    vol = np.where(np.arange(n) % 4 == 3, np.nan, rng.integers(1, 500, size=n) / 4)
    candles_ = Candles(
        unit.start_ms + np.arange(n, dtype=np.int64) * step, o, np.maximum(o, c) + 3,
        np.minimum(o, c) - 2, c, vol,
    )  # fmt: skip
    meta = BatchMeta(
        unit=Unit("dukascopy-json", instrument, kind, unit.start_ms, unit.end_ms),
        part=0,
        part_count=1,
        rows=n,
        price_scale=3 if instrument == "USDJPY" else 5,
        payload_sha256=f"{seed:064x}",
        request_id="tsdb",
        fetched_at_ms=unit.start_ms,
        decoded_at_ms=unit.start_ms,
        columns=list(CANDLE_COLUMNS),
    )
    flags = np.zeros(n, dtype=np.uint16)
    flags[n // 2] = 1 << 5
    return CandleBatch(meta, candles_).with_flags(flags, {"rule": 1}, unit.start_ms)


def candle_rows(
    batches: Sequence[CandleBatch], instrument: str, kind: str
) -> list[tuple[Any, ...]]:
    """The rows the series must hold: the last written batch of each unit, as exact decimals."""
    last: dict[int, CandleBatch] = {}
    for b in batches:
        if (b.meta.unit.instrument, b.meta.unit.kind) == (instrument, kind):
            last[b.meta.unit.start_ms] = b
    out = []
    for b in last.values():
        c, scale = b.candles, b.meta.price_scale
        for i in range(len(c)):
            vol = float(c.volume[i])
            out.append(
                (
                    datetime.fromtimestamp(int(c.ts_ms[i]) / 1000, UTC),
                    *(f"{int(getattr(c, k)[i]) / 10**scale:.{scale}f}"
                      for k in ("open", "high", "low", "close")),
                    None if np.isnan(vol) else vol,
                    int(b.flags[i]) if b.flags is not None else 0,
                )
            )  # fmt: skip
    return sorted(out)


def as_rows(rows: Sequence[dict[str, Any]], scale: int) -> list[tuple[Any, ...]]:
    """Runner or asyncpg rows of ``source_candles_sql`` in the form of :func:`candle_rows`."""
    out = []
    for r in rows:
        ts = r["ts"]
        if isinstance(ts, str):
            ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
        out.append(
            (ts, *(f"{r[k]:.{scale}f}" for k in ("open", "high", "low", "close")), r["volume"],
             r["flags"])
        )  # fmt: skip
    return out


@pytest.fixture
async def tsdb(infra: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A scratch database with the TimescaleDB schema; a connection with the writer's session
    settings."""
    async with scratch_database(infra, prefix="tp_tsdb_candles") as dsn:
        conn = await asyncpg.connect(dsn, server_settings=session_settings(infra))
        try:
            await require_timescaledb(await migrate(conn, storage_mode()))
            yield conn
        finally:
            await conn.close()


async def read_series(conn: asyncpg.Connection, instrument: str, kind: str) -> list[Any]:
    k = Kind.parse(kind)
    scale = 3 if instrument == "USDJPY" else 5
    got = await source_candles(conn, instrument, str(k.timeframe), str(k.side), C_FROM, C_TO)
    return as_rows([c.to_dict() | {"ts": c.ts} for c in got], scale)


async def assert_series(conn: asyncpg.Connection, written: Sequence[CandleBatch]) -> None:
    for instrument, kind in SERIES:
        want = candle_rows(written, instrument, kind)
        assert want
        assert await read_series(conn, instrument, kind) == want, (instrument, kind)


async def chunks(conn: asyncpg.Connection) -> list[bool]:
    rows = await conn.fetch(
        "SELECT is_compressed FROM timescaledb_information.chunks "
        "WHERE hypertable_name = 'candles' ORDER BY range_start"
    )
    return [r["is_compressed"] for r in rows]


async def test_candles_hypertable_compression_and_unit_replace(tsdb: asyncpg.Connection) -> None:
    conn = tsdb
    # --- the schema --------------------------------------------------------------------------
    interval = await conn.fetchval(
        "SELECT time_interval::text FROM timescaledb_information.dimensions "
        "WHERE hypertable_name = 'candles'"
    )
    assert interval == "30 days"
    settings = {
        r["attname"]: r
        for r in await conn.fetch(
            "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
            "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'candles'"
        )
    }
    segments = {
        k: v["segmentby_column_index"] for k, v in settings.items() if v["segmentby_column_index"]
    }
    assert segments == {"instrument": 1, "timeframe": 2, "side": 3}
    assert settings["ts"]["orderby_column_index"] == 1 and settings["ts"]["orderby_asc"]
    policy = await conn.fetchval(
        "SELECT config::text FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'candles'"
    )
    assert '"compress_after": "7 days"' in policy

    # --- phase 1: days of 1m bid/ask candles in January and March (two chunks), a month unit of
    # 1h mid candles, written by the writer.
    first = [
        candle_unit("EURUSD", "candles:1m:bid", datetime(2021, 1, 4, tzinfo=UTC), 50, seed=1),
        candle_unit("EURUSD", "candles:1m:bid", datetime(2021, 3, 2, tzinfo=UTC), 40, seed=2),
        candle_unit("EURUSD", "candles:1m:ask", datetime(2021, 1, 4, tzinfo=UTC), 50, seed=3),
        candle_unit("USDJPY", "candles:1h:mid", datetime(2021, 2, 1, tzinfo=UTC), 30, seed=4),
    ]
    written = list(first)
    await write(conn, first)
    await assert_series(conn, written)

    # --- phase 2: every chunk compressed; a unit replaced inside a compressed chunk (fewer
    # candles, other prices); a candle written twice is refused by the identity.
    n = await conn.fetchval(
        "SELECT count(compress_chunk(c, if_not_compressed => true)) FROM show_chunks('candles') c"
    )
    # 30-day chunks from the epoch: [Jan 3, Feb 2) holds January and February 1, [Feb 2, Mar 4)
    # March 2.
    assert n == 2 and await chunks(conn) == [True, True]
    redo = candle_unit("EURUSD", "candles:1m:bid", datetime(2021, 1, 4, tzinfo=UTC), 20, seed=9)
    await write(conn, [redo])
    written.append(redo)
    await assert_series(conn, written)
    with pytest.raises(asyncpg.UniqueViolationError):
        async with conn.transaction():
            await conn.copy_to_table(
                "candles",
                source=io.BytesIO(SIGNATURE + encode_candle_rows(first[2]) + TRAILER),
                columns=list(CANDLE_COPY_COLUMNS),
                format="binary",
            )

    # --- phase 3: a late unit in a new chunk; the compression policy, run as its job,
    # compresses it (the chunk is years old).
    late = candle_unit("EURUSD", "candles:1m:ask", datetime(2021, 5, 20, tzinfo=UTC), 30, seed=5)
    await write(conn, [late])
    written.append(late)
    job = await conn.fetchval(
        "SELECT job_id FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_compression' AND hypertable_name = 'candles'"
    )
    await conn.execute(f"CALL run_job({job})")
    assert await chunks(conn) == [True, True, True]
    await assert_series(conn, written)
