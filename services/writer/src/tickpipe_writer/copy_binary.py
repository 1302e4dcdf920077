"""PostgreSQL binary COPY built straight from numpy columns (no per-row Python objects).

Format: https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4 — a signature
and header, then per row a big-endian int16 field count and per field an int32 length followed
by the value in the type's binary send format, then an int16 -1 trailer. We build one packed
structured numpy array per batch whose fields are exactly that layout, so encoding N rows is a
handful of vectorised assignments.
"""

from __future__ import annotations

import numpy as np
from tickpipe_shared.wire.batch import TickBatch

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
#: Columns written, in COPY order.
TICK_COPY_COLUMNS = ("instrument", "ts", "bid", "ask", "bid_volume", "ask_volume", "flags")
#: PostgreSQL timestamps count microseconds from 2000-01-01T00:00:00Z.
PG_EPOCH_MS = 946_684_800_000


def _row_dtype(instrument_len: int) -> np.dtype[np.void]:
    return np.dtype(
        [
            ("nfields", ">i2"),
            ("instrument_len", ">i4"),
            ("instrument", f"S{instrument_len}"),
            ("ts_len", ">i4"),
            ("ts", ">i8"),
            ("bid_len", ">i4"),
            ("bid", ">f8"),
            ("ask_len", ">i4"),
            ("ask", ">f8"),
            ("bid_volume_len", ">i4"),
            ("bid_volume", ">f8"),
            ("ask_volume_len", ">i4"),
            ("ask_volume", ">f8"),
            ("flags_len", ">i4"),
            ("flags", ">i2"),
        ]
    )


def encode_tick_rows(batch: TickBatch) -> bytes:
    """The binary COPY rows (no signature, no trailer) of one batch's ticks.

    ``ts`` becomes timestamptz (µs since 2000-01-01), prices ``points / 10^price_scale`` as
    float8 (correctly rounded, so they read back as the exact decimal), volumes float8, flags
    int2 (0 when the batch was not validated). Raises :class:`ValueError` for an instrument
    name that is not ASCII.
    """
    meta, ticks = batch.meta, batch.ticks
    name = meta.instrument.encode("ascii")
    rows = np.empty(len(ticks), dtype=_row_dtype(len(name)))
    rows["nfields"] = len(TICK_COPY_COLUMNS)
    rows["instrument_len"] = len(name)
    rows["instrument"] = name
    for field in ("ts", "bid", "ask", "bid_volume", "ask_volume"):
        rows[f"{field}_len"] = 8
    rows["flags_len"] = 2
    rows["ts"] = (ticks.ts_ms - PG_EPOCH_MS) * 1000
    # Division by an exact power of ten is correctly rounded; multiplying by 10^-scale is not.
    divisor = float(10**meta.price_scale)
    rows["bid"] = ticks.bid / divisor
    rows["ask"] = ticks.ask / divisor
    rows["bid_volume"] = ticks.bid_volume
    rows["ask_volume"] = ticks.ask_volume
    rows["flags"] = 0 if batch.flags is None else batch.flags.astype(np.int16)
    return rows.tobytes()
