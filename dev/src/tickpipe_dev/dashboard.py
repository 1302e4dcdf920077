"""The Grafana dashboard ``deploy/grafana/tickpipe.json``, built with grafana-foundation-sdk.

The committed JSON is generated from this module, never edited by hand:

    uv run python -m tickpipe_dev.dashboard            # rewrite deploy/grafana/tickpipe.json
    uv run python -m tickpipe_dev.dashboard --check    # exit 1 when the file differs

``tests/unit/deploy/test_dashboard.py`` runs the check; tests/integration/test_observability.py
evaluates every panel's expression against a real run. Metric names: docs/observability.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat as sb
from grafana_foundation_sdk.builders import timeseries as tb
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

#: Where the generated dashboard is committed, relative to the repository root.
OUTPUT = Path("deploy/grafana/tickpipe.json")
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "[$__rate_interval]"


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel and its legend."""

    expr: str
    legend: str


@dataclass(frozen=True, slots=True)
class Graph:
    """A panel: a ``stat`` (one number, 4 rows high) or a ``timeseries`` (8 rows high)."""

    title: str
    unit: str
    queries: tuple[Query, ...]
    description: str = ""
    kind: str = "timeseries"
    #: Value from which a stat turns red (None: always green).
    red_from: float | None = None


def _q(expr: str, legend: str) -> tuple[Query, ...]:
    return (Query(expr, legend),)


def _quantiles(by: str, metric: str, legend: str, selector: str = "") -> tuple[Query, ...]:
    """p50 and p95 of histogram ``metric`` summed by ``by`` (plus ``le``)."""
    inner = f"sum by ({by}le) (rate({metric}_bucket{selector}{RATE}))"
    return tuple(
        Query(f"histogram_quantile({q}, {inner})", f"{legend}p{int(q * 100)}") for q in (0.5, 0.95)
    )


STAGE = '{stage=~"$stage"}'

#: Rows of the dashboard, top to bottom: (row title, panels). Two timeseries per line.
ROWS: tuple[tuple[str, tuple[Graph, ...]], ...] = (
    ("Throughput", (
        Graph("Ticks stored /s", "short", kind="stat",
              queries=_q(f'sum(rate(tickpipe_ticks_total{{stage="writer"}}{RATE}))', "writer")),
        Graph("Units stored /s", "short", kind="stat", queries=_q(
            f'sum(rate(tickpipe_units_total{{stage="writer",outcome=~"stored|empty"}}{RATE}))',
            "writer")),
        Graph("Errors /s (all stages)", "short", kind="stat", red_from=0.01,
              queries=_q(f"sum(rate(tickpipe_errors_total{RATE}))", "errors")),
        Graph("Oldest checkpoint age", "s", kind="stat",
              description="Seconds since the stage that committed least recently last "
              "committed. Grows while a stage is idle too.",
              queries=_q(f"max(time() - tickpipe_last_checkpoint_timestamp_seconds{STAGE})",
                         "age")),
        Graph("Units by outcome", "ops",
              description="Units of work finished per second: planner planned/rejected; "
              "fetcher downloaded/empty/failed; decoder decoded/empty/failed; validator "
              "passed/rejected; writer stored/empty.",
              queries=_q(f"sum by (stage, outcome) (rate(tickpipe_units_total{STAGE}{RATE}))",
                         "{{stage}} {{outcome}}")),
        Graph("Ticks/s by stage", "short",
              queries=_q(f"sum by (stage) (rate(tickpipe_ticks_total{STAGE}{RATE}))",
                         "{{stage}}")),
        Graph("Records consumed /s by topic", "ops", queries=_q(
            f"sum by (stage, topic) (rate(tickpipe_records_consumed_total{STAGE}{RATE}))",
            "{{stage}} ← {{topic}}")),
        Graph("Records produced /s by topic", "ops", queries=_q(
            f"sum by (stage, topic) (rate(tickpipe_records_produced_total{STAGE}{RATE}))",
            "{{stage}} → {{topic}}")),
        Graph("Payload bytes /s", "Bps", queries=_q(
            f"sum by (stage, direction) (rate(tickpipe_bytes_total{STAGE}{RATE}))",
            "{{stage}} {{direction}}")),
        Graph("Commits /s", "ops",
              queries=_q(f"sum by (stage) (rate(tickpipe_commits_total{STAGE}{RATE}))",
                         "{{stage}}")),
    )),
    ("Consumer lag", (
        Graph("Consumer lag by group", "short",
              description="Records each consumer group has not committed yet "
              "(tickpipe_consumer_lag summed over partitions and members). Growing: the stage "
              "is slower than its input or stuck on a dependency.",
              queries=_q("sum by (group, topic) (tickpipe_consumer_lag)",
                         "{{group}} ← {{topic}}")),
        Graph("Consumer lag by partition", "short",
              description="Lag per partition, with the member (instance) that holds it.",
              queries=_q("max by (group, topic, partition, instance) (tickpipe_consumer_lag)",
                         "{{group}} {{topic}}[{{partition}}] @ {{instance}}")),
        Graph("Records lost to retention", "short",
              description="Records retention deleted before the group committed them "
              "(tickpipe_consumer_records_lost_to_retention): 0 normally. Above 0 the stage "
              "skipped them; replay the stage upstream of the topic (docs/operations.md §7).",
              queries=_q("max by (group, topic) (tickpipe_consumer_records_lost_to_retention)",
                         "{{group}} ← {{topic}}")),
        Graph("Members up by service", "short",
              description="Scraped targets answering per service; 0 means the service's "
              "consumer groups have no members.",
              queries=_q('sum by (service) (up{job="tickpipe"})', "{{service}}")),
        Graph("Open requests (tracker)", "short",
              description="Requests neither completed nor rejected yet.",
              queries=_q("sum(tickpipe_tracker_open_requests)", "open")),
    )),
    ("Latency", (
        Graph("Stage latency p50 / p95 (poll → commit)", "s",
              description="Time to process one consumed batch, from poll to offset commit.",
              queries=_quantiles("stage, ", "tickpipe_stage_latency_seconds", "{{stage}} ",
                                 STAGE)),
        Graph("Writer transaction seconds p50 / p95", "s",
              description="One database transaction: plan, delete, COPY, ingest log.",
              queries=(*_quantiles("", "tickpipe_writer_transaction_seconds", ""),
                       Query(f"sum(rate(tickpipe_writer_transaction_seconds_sum{RATE})) / "
                             f"sum(rate(tickpipe_writer_transaction_seconds_count{RATE}))",
                             "mean"))),
        Graph("Checkpoint age by stage", "s", queries=_q(
            f"time() - max by (stage) (tickpipe_last_checkpoint_timestamp_seconds{STAGE})",
            "{{stage}}")),
        Graph("Fetcher download seconds p50 / p95", "s",
              description="Duration of a successful download attempt.",
              queries=_quantiles("source, ", "tickpipe_fetcher_download_seconds",
                                 "{{source}} ")),
    )),
    ("Errors and retries", (
        Graph("Errors by class", "ops",
              description="Failure records and retried errors, by stage and exception class. "
              "Failure records are on the failures topic.",
              queries=_q(f"sum by (stage, error) (rate(tickpipe_errors_total{STAGE}{RATE}))",
                         "{{stage}} {{error}}")),
        Graph("Checkpoint retries", "ops",
              description="Checkpoints retried (uncommitted, with backoff) because a "
              "dependency was down: database, broker, instrument list.",
              queries=_q(
                  f"sum by (stage) (rate(tickpipe_checkpoint_retries_total{STAGE}{RATE}))",
                  "{{stage}}")),
        Graph("Fetcher HTTP requests by status", "reqps",
              description="HTTP status, or the exception class for network errors.",
              queries=_q(
                  f"sum by (source, status) (rate(tickpipe_fetcher_http_requests_total{RATE}))",
                  "{{source}} {{status}}")),
        Graph("Fetcher download retries", "ops", queries=_q(
            f"sum by (source) (rate(tickpipe_fetcher_retries_total{RATE}))", "{{source}}")),
        Graph("Failure records /s by stage and error", "ops",
              description="Records a stage gave up on (sent to the failures topic), by "
              "exception class: what TickpipeFailureRate alerts on.",
              queries=_q(f"sum by (stage, error) (rate(tickpipe_failure_records_total"
                         f"{STAGE}{RATE}))", "{{stage}} {{error}}")),
        Graph("Writer database errors /s", "ops",
              description="Failed write transactions by class (availability, persistent, "
              "data) and error.",
              queries=_q(
                  f"sum by (class, error) (rate(tickpipe_writer_db_errors_total{RATE}))",
                  "{{class}} {{error}}")),
        Graph("Source throttling (429/503) /s", "ops",
              description="Answers that slowed a host's rate limiter down.",
              queries=_q(f"sum by (host) (rate(tickpipe_fetcher_throttled_total{RATE}))",
                         "{{host}}")),
        Graph("Circuit breaker state", "short",
              description="Per host: 0 closed, 1 half-open, 2 open.",
              queries=_q("max by (host) (tickpipe_fetcher_breaker_state)", "{{host}}")),
    )),
    ("Data quality and storage", (
        Graph("Validator rule hits (ticks/s)", "short",
              description="Ticks hit by each validation rule, whatever its action (flag, "
              "drop, reject).",
              queries=_q(f"sum by (rule) (rate(tickpipe_validator_rule_hits_total{RATE}))",
                         "{{rule}}")),
        Graph("Validator rule hits by instrument (top 10)", "short", queries=_q(
            "topk(10, sum by (rule, instrument) "
            "(increase(tickpipe_validator_rule_hits_total[$__range])))",
            "{{rule}} {{instrument}}")),
        Graph("Writer duplicate parts skipped /s", "ops",
              description="Batches the writer skipped because the unit already had them "
              "(redeliveries).",
              queries=_q(f"sum(rate(tickpipe_writer_duplicate_parts_total{RATE}))",
                         "duplicates")),
        Graph("Writer units by state", "ops", queries=_q(
            f'sum by (outcome) (rate(tickpipe_units_total{{stage="writer"}}{RATE}))',
            "{{outcome}}")),
    )),
    ("Requests", (
        Graph("Request events /s (tracker)", "ops",
              description="Events the tracker published on request-events: progress "
              "snapshots, completed and rejected requests (services/tracker).",
              queries=_q(f"sum by (event) (rate(tickpipe_tracker_request_events_total{RATE}))",
                         "{{event}}")),
        Graph("Tracker inputs /s by effect", "ops",
              description="Progress events and failures the tracker folded into request "
              "state: counted, duplicate (at-least-once redeliveries), invalid, unattributed "
              "(failures without request_id), error.",
              queries=_q(
                  f"sum by (kind, effect) (rate(tickpipe_tracker_inputs_total{RATE}))",
                  "{{kind}} {{effect}}")),
    )),
    ("Candles", (
        Graph("Candles/s by stage", "short",
              queries=_q(f"sum by (stage) (rate(tickpipe_candles_total{STAGE}{RATE}))",
                         "{{stage}}")),
        Graph("Decoder candles dropped /s by reason (flat, open)", "short", queries=_q(
            f"sum by (reason) (rate(tickpipe_decoder_candles_dropped_total{RATE}))",
            "{{reason}}")),
    )),
)  # fmt: skip


def _targets(queries: Sequence[Query]) -> list[pb.Dataquery]:
    return [
        pb.Dataquery()
        .expr(q.expr)
        .legend_format(q.legend)
        .ref_id(chr(ord("A") + i))
        .datasource(DATASOURCE)
        for i, q in enumerate(queries)
    ]


def _thresholds(red_from: float | None) -> db.ThresholdsConfig:
    steps = [dm.Threshold(color="green", value=None)]
    if red_from is not None:
        steps.append(dm.Threshold(color="red", value=red_from))
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)


def _panel(graph: Graph, panel_id: int) -> sb.Panel | tb.Panel:
    if graph.kind == "stat":
        stat = (
            sb.Panel()
            .height(4)
            .span(6)
            .thresholds(_thresholds(graph.red_from))
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
            .color_mode(cm.BigValueColorMode.VALUE)
            .graph_mode(cm.BigValueGraphMode.AREA)
            .text_mode(cm.BigValueTextMode.AUTO)
        )
        panel: sb.Panel | tb.Panel = stat
    else:
        panel = (
            tb.Panel()
            .height(8)
            .span(12)
            .draw_style(cm.GraphDrawStyle.LINE)
            .line_width(1)
            .fill_opacity(10)
            .show_points(cm.VisibilityMode.NEVER)
            .legend(
                cb.VizLegendOptions()
                .display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.RIGHT)
                .calcs(["mean", "max"])
                .show_legend(True)
            )
            .tooltip(
                cb.VizTooltipOptions()
                .mode(cm.TooltipDisplayMode.MULTI)
                .sort(cm.SortOrder.DESCENDING)
            )
        )
    panel.id(panel_id).title(graph.title).unit(graph.unit).datasource(DATASOURCE)
    if graph.description:
        panel.description(graph.description)
    return panel.targets(_targets(graph.queries))  # type: ignore[arg-type]


def build() -> db.Dashboard:
    """The dashboard builder: variables ``datasource`` and ``stage``, then :data:`ROWS`."""
    dashboard = (
        db.Dashboard("tickpipe")
        .uid("tickpipe-pipeline")
        .description(
            "tickpipe pipeline: throughput, consumer lag, latency, errors and data quality of "
            "every stage. Generated by dev/src/tickpipe_dev/dashboard.py; metrics: "
            "docs/observability.md."
        )
        .tags(["tickpipe"])
        .timezone("utc")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-1h", "now")
        .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            db.QueryVariable("stage")
            .label("Stage")
            .datasource(DATASOURCE)
            .query("label_values(tickpipe_records_consumed_total, stage)")
            .multi(True)
            .include_all(True)
            .all_value(".*")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
        )
    )
    panel_id = 0
    for title, graphs in ROWS:
        panel_id += 1
        dashboard.with_row(db.Row(title).id(panel_id))
        for graph in graphs:
            panel_id += 1
            dashboard.with_panel(_panel(graph, panel_id))
    return dashboard


def render() -> str:
    """The dashboard's JSON text as committed (sorted keys, 2-space indent, final newline)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write :data:`OUTPUT` (or, with ``--check``, compare it); returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tickpipe_dev.dashboard", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the file is outdated")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args(argv)
    path = args.root / OUTPUT
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} is not the generated dashboard: run python -m tickpipe_dev.dashboard",
                  file=sys.stderr)  # fmt: skip
            return 1
        return 0
    path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
