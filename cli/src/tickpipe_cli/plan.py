"""``tickpipe request … --dry-run``: the fetcher's plan of a request, without publishing it.

The units come from the fetcher's own planner (:meth:`tickpipe_fetcher.planner.Planner.preview`:
the same registry, instrument details, trading schedule and ingest log), so the dry run says
what a real run would do. On top of the plan it estimates, from what the database already holds
for the instrument and kind, how many rows and bytes the units will add, and how long the
configured per-host rate limit makes the downloads take at least.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import asyncpg
from tickpipe_fetcher.main import configured_sources
from tickpipe_fetcher.planner import Plan, Planner
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments.catalog import load_registry
from tickpipe_shared.kafka.records import InRecord, OutRecord
from tickpipe_shared.wire.requests import FetchRequest


@dataclass(frozen=True, slots=True)
class Estimate:
    """What is stored for an instrument and kind: ``units`` stored with ``rows`` in total, and
    the table's bytes per row (``None`` when the table is empty)."""

    units: int
    rows: int
    bytes_per_row: float | None


@dataclass(frozen=True, slots=True)
class DryRun:
    """The printed plan. Counts are units; ``est_rows``/``est_bytes`` ``None`` without data to
    estimate from; ``min_seconds``: the rate limit's lower bound (``None``: no rate limit)."""

    request_id: str
    source: str
    instrument: str
    kind: str
    units: int
    already_stored: int
    closed_market: int
    schedule_known: bool
    requests: int
    est_rows: int | None
    est_bytes: int | None
    min_seconds: float | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (``--dry-run --json``)."""
        return asdict(self)

    def lines(self) -> list[str]:
        """The human-readable plan, one fact per line."""
        out = [
            f"plan of request {self.request_id} (dry run: nothing published): {self.source} "
            f"{self.instrument} {self.kind}",
            f"  units to download:        {self.units}",
            f"  already stored, skipped:  {self.already_stored}"
            + ("" if self.already_stored else " (use --skip-existing to skip stored units)"),
        ]
        if self.schedule_known:
            out.append(f"  closed market (expected empty by the schedule): {self.closed_market}")
        else:
            out.append("  closed market: unknown (no trading schedule for this instrument)")
        if self.est_rows is None:
            out.append("  estimate: none (nothing stored yet for this instrument and kind)")
        else:
            size = f", ~{_bytes(self.est_bytes)} stored" if self.est_bytes is not None else ""
            out.append(f"  estimate: ~{self.est_rows:,} rows{size}")
        if self.min_seconds is None:
            out.append(f"  source requests: ~{self.requests} (no rate limit configured)")
        else:
            out.append(
                f"  source requests: ~{self.requests}, at least {_duration(self.min_seconds)} "
                "at the configured rate limit (TICKPIPE_FETCH_RATE_PER_HOST)"
            )
        out += [f"  note: {n}" for n in self.notes]
        return out


def _bytes(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


async def stored_estimate(conn: asyncpg.Connection, instrument: str, kind: str) -> Estimate:
    """Stored units and rows of ``instrument``/``kind`` in the ingest log, and the bytes per row
    of its table (``ticks`` or ``candles``; TimescaleDB's hypertable size when it is one)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS units, coalesce(sum(rows), 0) AS rows FROM ingest_log "
        "WHERE instrument = $1 AND kind = $2 AND state = 'stored'",
        instrument,
        kind,
    )
    table = "ticks" if kind == "ticks" else "candles"
    all_rows = await conn.fetchval(
        "SELECT coalesce(sum(rows), 0) FROM ingest_log WHERE state = 'stored' AND "
        + ("kind = 'ticks'" if table == "ticks" else "kind <> 'ticks'")
    )
    hyper = await conn.fetchval(
        "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
    ) and await conn.fetchval(
        "SELECT count(*) FROM timescaledb_information.hypertables WHERE hypertable_name = $1",
        table,
    )
    size_sql = "SELECT hypertable_size($1::regclass)" if hyper else (
        "SELECT pg_total_relation_size($1::regclass)"
    )  # fmt: skip
    size = await conn.fetchval(size_sql, table)
    per_row = float(size) / int(all_rows) if all_rows and size else None
    return Estimate(int(row["units"]), int(row["rows"]), per_row)


def dry_run(settings: Settings, request: FetchRequest, plan: Plan, stored: Estimate) -> DryRun:
    """The :class:`DryRun` of ``plan`` with estimates from ``stored`` and the rate limits.

    Rows: the stored average per unit times the units the schedule has open (all of them
    without a schedule). Requests: one per unit for Dukascopy, pages of the source's page size
    for Deriv and Polygon. Time: requests beyond the burst at ``fetch_rate_per_host``.
    """
    open_units = sum(1 for m in plan.market_open if m is not False)
    closed = len(plan.units) - open_units
    per_unit = stored.rows / stored.units if stored.units else None
    est_rows = round(per_unit * open_units) if per_unit is not None else None
    est_bytes = (
        round(est_rows * stored.bytes_per_row)
        if est_rows is not None and stored.bytes_per_row is not None
        else None
    )
    page = {"deriv": settings.deriv_page_count, "polygon": settings.polygon_page_limit}.get(
        request.source
    )
    pages = max(1, math.ceil(per_unit / page)) if page and per_unit else 1
    requests = len(plan.units) * pages
    rate = settings.fetch_rate_per_host
    seconds = max(0.0, requests - settings.fetch_rate_burst) / rate if rate > 0 else None
    return DryRun(
        request_id=request.request_id,
        source=request.source,
        instrument=plan.target.name,
        kind=plan.kind,
        units=len(plan.units),
        already_stored=plan.skipped,
        closed_market=closed,
        schedule_known=plan.target.schedule is not None,
        requests=requests,
        est_rows=est_rows,
        est_bytes=est_bytes,
        min_seconds=seconds,
        notes=plan.target.notes,
    )


def _no_failure(record: InRecord, error: BaseException, request_id: str | None) -> OutRecord:
    raise error  # a dry run publishes nothing, failures included


async def preview(settings: Settings, request: FetchRequest) -> Plan:
    """The fetcher planner's plan of ``request`` (sources as configured here).

    Raises :class:`~tickpipe_shared.wire.requests.RequestError`,
    :class:`~tickpipe_shared.instruments.UnknownInstrumentError` and
    :class:`~tickpipe_shared.kafka.records.RetryableError` (registry or ingest log
    unavailable) as the planner does."""
    planner = Planner(
        settings,
        lambda: load_registry(settings),
        set(configured_sources(settings)),
        _no_failure,
    )
    return await planner.preview(request)
