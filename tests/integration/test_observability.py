"""Prometheus for real: the pipeline's processes and a Prometheus (Debian's package, the project's
deploy/prometheus configuration, 1 s scrape and rule evaluation) run one healthy ingest and then
fault scenarios; every alert rule's expression is evaluated through the HTTP API: empty in the
healthy run, non-empty in its fault scenario. Finally every dashboard panel's expression returns
data. One stack for the whole module; the tests run in file order and build on each other.

Fault scenarios: the writer stopped (no members, target down), the writer restarted on an
unreachable database while a request is open (database errors, growing lag, no committed rows),
the stand-in answering 429 (rate-limited), then 500 (breaker open, failure records).
"""

from __future__ import annotations

import json
import lzma
import os
import shutil
import signal
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.pipeline import Pipeline, free_port, http_get, pipeline_on_fresh_database
from support.shared_data import locate_shared_dir
from support.synthetic import BI5_TICK, bi5_hour
from tickpipe_dev.stack import prometheus
from tickpipe_dev.stack.paths import StackPaths, find_repo_root
from tickpipe_dev.stack.processes import Reporter, terminate
from tickpipe_shared.config import Settings

pytestmark = pytest.mark.integration

SHARED = locate_shared_dir()
if SHARED is None:
    pytest.skip("needs ../shared/data/dukascopy (recorded payloads)", allow_module_level=True)
if shutil.which("prometheus") is None:
    # bin/bootstrap installs it: under CI a missing binary is a broken setup, not a skip.
    message = "needs Debian's prometheus package (bin/bootstrap installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)
assert SHARED is not None
ROOT = find_repo_root(Path(__file__))
RULES = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
ALERTS: dict[str, str] = {r["alert"]: r["expr"] for g in RULES["groups"] for r in g["rules"]}
DASHBOARD = json.loads((ROOT / "deploy/grafana/tickpipe.json").read_text())
#: Grafana's variables, as a dashboard over the whole test would set them.
GRAFANA_VARS = {"$__rate_interval": "15m", "$__range": "15m", "$stage": ".*"}
STATE: dict[str, Any] = {}
#: A self-made hour whose quotes are all crossed (bid > ask): the validator flags them.
CROSSED_HOUR = datetime(2019, 2, 7, 10, tzinfo=UTC)


class Prom:
    """The HTTP API of the test's Prometheus."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now (raises on a PromQL error)."""
        query = urllib.parse.urlencode({"query": expr})
        status, body = http_get(f"{self.url}/api/v1/query?{query}")
        assert status == 200, f"{expr}: HTTP {status} {body}"
        data = json.loads(body)["data"]
        result: list[dict[str, Any]] = (
            data["result"]
            if data["resultType"] == "vector"
            else [{"metric": {}, "value": data["result"]}]
        )
        return result

    def wait_for(self, expr: str, timeout_s: float = 90.0, **labels: str) -> list[dict[str, Any]]:
        """Poll ``expr`` until it returns a sample (with ``labels``, when given); fail with the
        expression after the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if any(labels.items() <= r["metric"].items() for r in result):
                return result
            if time.monotonic() > deadline:
                up = {r["metric"]["service"]: r["value"][1] for r in self.query("up")}
                pytest.fail(f"still no result after {timeout_s:.0f} s: {expr}\n(up: {up})")
            time.sleep(1.0)


@pytest.fixture(scope="module")
def pipeline(infra: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """The stand-in over a copy of the recorded Dukascopy tree and the five services, on a fresh
    database and topics; lag reported every second, breakers and units that give up fast."""
    root = tmp_path_factory.mktemp("standin")
    for part in ("bi5", "json", "meta"):
        shutil.copytree(SHARED / "data" / "dukascopy" / part, root / part)
    payload, _ = bi5_hour(CROSSED_HOUR, scale=5, seed=3, n=300, first_bid=113_000)
    ticks = np.frombuffer(lzma.decompress(payload), dtype=BI5_TICK).copy()
    ticks["ask"], ticks["bid"] = ticks["bid"].copy(), ticks["ask"] + 1
    path = root / "bi5/EURUSD/2019/01/07/10h_ticks.bi5"  # zero-based month: February
    path.parent.mkdir(parents=True)
    path.write_bytes(lzma.compress(ticks.tobytes(), format=lzma.FORMAT_ALONE))
    env = {
        "TICKPIPE_CONSUMER_LAG_INTERVAL_S": "1",
        "TICKPIPE_FETCH_ATTEMPTS": "2",
        # Units that fail go to failures at once, not back for delayed retries.
        "TICKPIPE_FETCH_DELAYED_RETRIES": "0",
        "TICKPIPE_FETCH_BREAKER_COOLDOWN_S": "5",
        "TICKPIPE_FETCH_BREAKER_MAX_WAIT_S": "1",
    }
    with pipeline_on_fresh_database(
        infra, root, tmp_path_factory.mktemp("logs"), env=env, prefix="tp_obs"
    ) as p:
        p.start_all()
        yield p


@pytest.fixture(scope="module")
def prom(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    """A Prometheus scraping the pipeline's services every second, with deploy/prometheus's
    configuration and rules (tickpipe_dev.stack.prometheus, in a directory of its own)."""
    paths = StackPaths(root=ROOT, local=tmp_path_factory.mktemp("prometheus-local"))
    port = free_port()
    services = {name: pipeline.ports[name] for name in ("fetcher", "decoder", "validator",
                                                        "writer", "tracker")}  # fmt: skip
    pid = prometheus.start(paths, Reporter(), port=port, ports=services, scrape_interval="1s")
    try:
        client = Prom(port)
        client.wait_for('count(up{job="tickpipe"} == 1) == 5', timeout_s=30)
        yield client
    finally:
        terminate(pid, timeout_s=10)


def request(p: Pipeline, *args: str, wait: bool = True) -> None:
    result = p.cli("request", "EURUSD", "--source", "dukascopy-bi5", *args,
                   *(("--wait", "--timeout", "300") if wait else ()))  # fmt: skip
    assert result.returncode == 0, f"request {args} failed:\n{result.stdout}\n{result.stderr}"


def standin_faults(p: Pipeline, **faults: float) -> None:
    """Change the stand-in's fault injection (``POST /_control``)."""
    url = f"http://127.0.0.1:{p.ports['standin']}/_control"
    req = urllib.request.Request(url, data=json.dumps(faults).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_healthy_ingest_leaves_every_alert_quiet(pipeline: Pipeline, prom: Prom) -> None:
    request(pipeline, "--from", "2019-02-04T00:00", "--to", "2019-02-04T02:00")
    request(pipeline, "--from", "2019-02-07T10:00", "--to", "2019-02-07T11:00")
    # A month of hour candles: the decoder drops the weekend's flat candles.
    request(pipeline, "--kind", "candles", "--timeframe", "1h",
            "--from", "2019-02-01", "--to", "2019-03-01")  # fmt: skip
    # Settled: every group reports lag 0, the tracker (every 5 s) counts no open request.
    prom.wait_for('sum(tickpipe_consumer_lag{group=~".*writer"}) == 0', timeout_s=30)
    prom.wait_for("sum(tickpipe_tracker_open_requests) == 0", timeout_s=30)
    prom.wait_for("count(count by (group) (tickpipe_consumer_lag)) >= 6", timeout_s=30)
    time.sleep(3)
    firing = {name: prom.query(expr) for name, expr in ALERTS.items()}
    assert {name: r for name, r in firing.items() if r} == {}
    STATE["healthy"] = True


def test_writer_stopped_means_no_members_and_target_down(pipeline: Pipeline, prom: Prom) -> None:
    assert STATE.get("healthy"), "needs the healthy run first"
    group = pipeline.env["TICKPIPE_CONSUMER_GROUP_PREFIX"] + "writer"
    pipeline.kill("writer", signal.SIGTERM)
    prom.wait_for(ALERTS["TickpipeConsumerGroupNoMembers"], group=group)
    prom.wait_for(ALERTS["TickpipeConsumerGroupNoMembers"], group=f"{group}-failures")
    down = prom.wait_for(ALERTS["TickpipeServiceDown"], service="writer")
    assert {r["metric"]["service"] for r in down} == {"writer"}


def test_writer_without_database_while_a_request_is_open(pipeline: Pipeline, prom: Prom) -> None:
    # The writer comes back on a database that refuses connections: it consumes, fails every
    # transaction (availability: retried indefinitely) and commits nothing.
    pipeline.launch("writer", {"TICKPIPE_DATABASE_URL": "postgresql://tickpipe@127.0.0.1:1/none"})
    request(pipeline, "--from", "2019-02-04T03:00", "--to", "2019-02-04T06:00", wait=False)
    errors = prom.wait_for(ALERTS["TickpipeWriterDatabaseErrors"])
    assert {r["metric"]["class"] for r in errors} == {"availability"}
    lag = prom.wait_for(ALERTS["TickpipeConsumerLagGrowing"])
    assert any(r["metric"]["group"].endswith("writer") for r in lag)
    prom.wait_for(ALERTS["TickpipeNoCommittedRowsWhileRequestsOpen"])


def test_source_rate_limiting(pipeline: Pipeline, prom: Prom) -> None:
    standin_faults(pipeline, p_429=1.0, retry_after_s=0.2)
    # A storm, not strays: the limiter slows a host down only when at least half of its last 20
    # answers were 429 (fetcher/ratelimit.py), so 12 units x 2 attempts.
    request(pipeline, "--from", "2019-02-05T00:00", "--to", "2019-02-05T12:00", wait=False)
    throttled = prom.wait_for(ALERTS["TickpipeSourceRateLimited"])
    assert throttled[0]["metric"]["host"].startswith("127.0.0.1")


def test_source_errors_open_the_breaker_and_fail_units(pipeline: Pipeline, prom: Prom) -> None:
    standin_faults(pipeline, p_429=0.0, p_500=1.0)
    request(pipeline, "--from", "2019-02-04T11:00", "--to", "2019-02-04T16:00", wait=False)
    prom.wait_for(ALERTS["TickpipeCircuitBreakerOpen"])
    failing = prom.wait_for(ALERTS["TickpipeFailureRate"], timeout_s=120)
    assert "fetcher" in {r["metric"]["stage"] for r in failing}
    standin_faults(pipeline, p_500=0.0)


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for var, value in GRAFANA_VARS.items():
                expr = expr.replace(var, value)
            out.append((panel["title"], expr))
    return out


def test_prometheus_evaluates_every_rule_without_error(prom: Prom) -> None:
    status, body = http_get(f"{prom.url}/api/v1/rules")
    assert status == 200
    rules = {r["name"]: r for g in json.loads(body)["data"]["groups"] for r in g["rules"]}
    assert set(rules) == set(ALERTS)
    broken = {name: r["lastError"] for name, r in rules.items() if r["health"] != "ok"}
    assert broken == {}


def test_every_dashboard_panel_returns_data(prom: Prom) -> None:
    assert STATE.get("healthy"), "needs the runs above first"
    empty = [f"{title}: {expr}" for title, expr in panel_queries() if not prom.query(expr)]
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    # The dashboard's `stage` variable: label_values(tickpipe_records_consumed_total, stage).
    status, body = http_get(
        f"{prom.url}/api/v1/label/stage/values?match[]=tickpipe_records_consumed_total"
    )
    assert status == 200
    assert {"fetcher", "decoder", "validator", "writer"} <= set(json.loads(body)["data"])
