"""Comparing what the database holds with the golden CSVs of ``../shared/data/dukascopy``.

Exact: millisecond timestamps, prices formatted with the instrument's scale equal to the golden
text, volumes equal to the golden decimal read as float64.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
from tickpipe_decoder.decode import decode_payload
from tickpipe_shared.instruments import canonical_name
from tickpipe_shared.units import HOUR_MS, Unit
from tickpipe_shared.wire.batch import TickBatch, decode_batch
from tickpipe_shared.wire.raw import RawPayloadMeta

Row = tuple[int, str, str, float, float]  # ts_ms, ask, bid, ask_volume, bid_volume


@dataclass(frozen=True)
class GoldenHour:
    """One golden tick file: which hour it covers and its rows."""

    instrument: str
    hour: datetime
    scale: int
    rows: list[Row]


def bi5_hour(rel: str) -> datetime:
    """``bi5/EURUSD/2019/01/04/05h_ticks.bi5`` → 2019-02-04T05:00Z (zero-based month)."""
    parts = rel.split("/")
    year, month0, day, hour = int(parts[2]), int(parts[3]), int(parts[4]), int(parts[5][:2])
    return datetime(year, month0 + 1, day, hour, tzinfo=UTC)


def json_hour(rel: str) -> datetime:
    """``json/ticks/EUR-USD/2026/7/13/12.json`` → 2026-07-13T12:00Z (one-based month)."""
    parts = rel.removesuffix(".json").split("/")
    return datetime(int(parts[3]), int(parts[4]), int(parts[5]), int(parts[6]), tzinfo=UTC)


def read_golden_rows(path: Path) -> list[Row]:
    """Rows of a golden tick CSV (``timestamp_ms,ask,bid,ask_volume,bid_volume``)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return [
            (
                int(r["timestamp_ms"]),
                r["ask"],
                r["bid"],
                float(r["ask_volume"]),
                float(r["bid_volume"]),
            )
            for r in reader
        ]


def golden_tick_hours(dukascopy_dir: Path) -> list[GoldenHour]:
    """Every tick payload of the sample with its golden rows (49 .bi5 hours + the JSON hour)."""
    index = {}
    with (dukascopy_dir / "golden" / "INDEX.csv").open(newline="") as fh:
        for r in csv.DictReader(fh):
            index[r["path"]] = r
    out = []
    for rel, r in sorted(index.items()):
        if not rel.endswith("_ticks.bi5") and not rel.startswith("json/ticks/"):
            continue
        hour = bi5_hour(rel) if rel.startswith("bi5/") else json_hour(rel)
        rows = read_golden_rows(dukascopy_dir / "golden" / f"{rel}.csv")
        code = rel.split("/")[1] if rel.startswith("bi5/") else rel.split("/")[2]
        out.append(GoldenHour(canonical_name(code), hour, int(r["scale"]), rows))
    return out


def points_text(points: int, scale: int) -> str:
    """``points`` as the decimal at ``scale`` (``112345, 5`` → ``"1.12345"``), exactly."""
    return str(Decimal(points).scaleb(-scale).quantize(Decimal(1).scaleb(-scale)))


async def db_rows(
    conn: asyncpg.Connection, instrument: str, hour: datetime, scale: int
) -> list[Row]:
    """The stored ticks of one hour in golden form, ordered by time."""
    records = await conn.fetch(
        """SELECT (extract(epoch FROM ts) * 1000)::bigint AS ms, ask_points, bid_points,
                  ask_volume, bid_volume
           FROM ticks WHERE instrument = $1 AND ts >= $2 AND ts < $3 ORDER BY ts""",
        instrument,
        hour,
        hour + timedelta(hours=1),
    )
    return [
        (
            r["ms"],
            points_text(r["ask_points"], scale),
            points_text(r["bid_points"], scale),
            r["ask_volume"],
            r["bid_volume"],
        )
        for r in records
    ]


async def assert_hour_equals_golden(conn: asyncpg.Connection, golden: GoldenHour) -> None:
    """Fail with the first differing row when the stored hour differs from its golden CSV."""
    stored = await db_rows(conn, golden.instrument, golden.hour, golden.scale)
    assert len(stored) == len(golden.rows), (
        f"{golden.instrument} {golden.hour:%Y-%m-%dT%H}h: {len(stored)} rows stored, "
        f"golden has {len(golden.rows)}"
    )
    for i, (got, want) in enumerate(zip(stored, golden.rows, strict=True)):
        assert got == want, (
            f"{golden.instrument} {golden.hour:%Y-%m-%dT%H}h row {i}: {got} != {want}"
        )


def sample_tick_batches(
    dukascopy_dir: Path, hours: list[GoldenHour], max_batch_bytes: int = 64 * 1024
) -> list[TickBatch]:
    """The tick batches the decoder makes of each golden hour's recorded payload (``.bi5`` or
    JSON API), split into parts of at most ``max_batch_bytes``."""
    batches = []
    for g in hours:
        rel = (
            f"bi5/{g.instrument}/{g.hour.year}/{g.hour.month - 1:02d}/{g.hour.day:02d}/"
            f"{g.hour.hour:02d}h_ticks.bi5"
            if g.hour.year < 2026
            else f"json/ticks/EUR-USD/{g.hour.year}/{g.hour.month}/{g.hour.day}/{g.hour.hour}.json"
        )
        payload = (dukascopy_dir / rel).read_bytes()
        start = int(g.hour.timestamp() * 1000)
        meta = RawPayloadMeta(
            unit=Unit(
                "dukascopy-bi5" if rel.startswith("bi5") else "dukascopy-json",
                g.instrument,
                "ticks",
                start,
                start + HOUR_MS,
            ),
            format="dukascopy-bi5-ticks" if rel.startswith("bi5") else "dukascopy-json-ticks",
            url=rel,
            sha256=hashlib.sha256(payload).hexdigest(),
            fetched_at_ms=start,
            price_scale=g.scale,
            request_id="golden",
        )
        for value in decode_payload(meta, payload, max_batch_bytes=max_batch_bytes).batches:
            batch = decode_batch(value)
            assert isinstance(batch, TickBatch)
            batches.append(batch)
    return batches
