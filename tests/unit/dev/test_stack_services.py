"""Service start-up of the local stack, with stand-in executables in place of the real services."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tickpipe_dev.stack import services
from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import Reporter, http_ok, live_pid

HEALTHY = """
import http.server, os
port = int(os.environ["TICKPIPE_METRICS_PORT"])

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

print("serving", port, os.environ.get("TICKPIPE_DUKASCOPY_JSON_URL"), flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

BROKEN = """
for i in range(50):
    print("boot line", i)
raise SystemExit("cannot reach kafka")
"""


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StackPaths]:
    """Services are tiny scripts in tmp_path/bin listening on free ports."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ports = {name: _free_port() for name in (*services.SERVICES, "broken")}
    monkeypatch.setattr(services, "venv_bin", lambda: bin_dir)
    monkeypatch.setattr(services, "metrics_port", ports.__getitem__)
    monkeypatch.setattr(services, "HEALTH_TIMEOUT_S", 10.0)
    for name in services.SERVICES:
        exe = bin_dir / f"tickpipe-{name}"
        exe.write_text(f"#!{sys.executable}\n{HEALTHY}")
        exe.chmod(0o755)
    broken = bin_dir / "tickpipe-broken"
    broken.write_text(f"#!{sys.executable}\n{BROKEN}")
    broken.chmod(0o755)
    paths = StackPaths(root=tmp_path, local=tmp_path / ".local")
    yield paths
    for name in (*services.SERVICES, "broken"):
        services.stop_component(paths, name, Reporter(quiet=True), timeout_s=5)


def test_services_start_healthy_and_second_start_is_a_no_op(fake: StackPaths) -> None:
    reporter = Reporter(quiet=True)
    pids = services.start_services(fake, reporter, standin_port=8765)

    assert set(pids) == set(services.SERVICES)
    for name, pid in pids.items():
        assert live_pid(fake.pid_file(name)) == pid
        assert http_ok(services.health_url(name))
    log = fake.log_file("writer").read_text()
    assert f"serving {services.metrics_port('writer')} http://127.0.0.1:8765/v1" in log

    assert services.start_services(fake, reporter) == pids


def test_stop_component_removes_the_pid_file(fake: StackPaths) -> None:
    reporter = Reporter(quiet=True)
    pid = services.start_services(fake, reporter, names=("decoder",))["decoder"]
    assert services.stop_component(fake, "decoder", reporter) is True
    assert not fake.pid_file("decoder").exists()
    assert live_pid(fake.pid_file("decoder")) is None
    assert pid not in services.start_services(fake, reporter, names=("decoder",)).values()
    assert services.stop_component(fake, "validator", reporter) is False


def test_a_service_that_dies_fails_with_its_log_tail(fake: StackPaths) -> None:
    with pytest.raises(StackError) as excinfo:
        services.start_services(fake, Reporter(quiet=True), names=("broken",))
    message = str(excinfo.value)
    assert "broken: process" in message and "exited" in message
    assert str(fake.log_file("broken")) in message
    assert "cannot reach kafka" in message and "boot line 49" in message
    assert "boot line 10" not in message  # only the last 30 lines


def test_a_missing_service_script_is_reported(fake: StackPaths) -> None:
    (fake.root / "bin" / "tickpipe-writer").unlink()
    with pytest.raises(StackError, match="tickpipe-writer not found"):
        services.start_services(fake, Reporter(quiet=True), names=("writer",))


def test_a_foreign_process_on_the_port_is_not_adopted(fake: StackPaths) -> None:
    with socket.create_server(("127.0.0.1", services.metrics_port("fetcher"))):
        with pytest.raises(StackError, match="in use"):
            services.start_services(fake, Reporter(quiet=True), names=("fetcher",))
