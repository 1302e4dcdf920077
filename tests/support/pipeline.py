"""The whole pipeline as real processes for end-to-end tests.

The four services and the stand-in run as subprocesses of the test, on the local stack's Kafka
and PostgreSQL, but with their own topic prefix, consumer groups and database: a test run
never sees the demo's data, and the demo never sees the tests'.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tickpipe_shared.config import Settings
from tickpipe_shared.kafka.security import kafka_client_kwargs
from tickpipe_shared.kafka.topics import ensure_topics

from support.database import run_admin_sql, with_database
from support.shared_data import locate_shared_dir

SERVICES = ("fetcher", "decoder", "validator", "writer", "tracker")
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """Status and body of a GET (status 0 when nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


@dataclass
class Pipeline:
    """Processes of one pipeline; ``env`` is what the CLI needs to talk to it."""

    env: dict[str, str]
    log_dir: Path
    standin_root: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: More command-line arguments of the stand-in, e.g. ``["--polygon-api-key", key]``.
    standin_args: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls, base_env: dict[str, str], database_url: str, log_dir: Path, standin_root: Path
    ) -> Pipeline:
        """A pipeline with a unique topic prefix and consumer groups (nothing started yet)."""
        run = uuid.uuid4().hex[:8]
        standin_port = free_port()
        env = {
            **base_env,
            "TICKPIPE_TOPIC_PREFIX": f"e2e{run}.",
            "TICKPIPE_CONSUMER_GROUP_PREFIX": f"e2e{run}-",
            "TICKPIPE_DATABASE_URL": database_url,
            "TICKPIPE_DUKASCOPY_JSON_URL": f"http://127.0.0.1:{standin_port}/v1",
            "TICKPIPE_DUKASCOPY_BI5_URL": f"http://127.0.0.1:{standin_port}/datafeed",
            "TICKPIPE_DERIV_URL": f"ws://127.0.0.1:{standin_port}/websockets/v3",
            "TICKPIPE_POLYGON_URL": f"http://127.0.0.1:{standin_port}",
            "TICKPIPE_INSTRUMENT_CACHE_DIR": str(log_dir / "instrument-cache"),
            "TICKPIPE_FETCH_BACKOFF_BASE_S": "0.05",
            "TICKPIPE_WRITER_BATCH_SECONDS": "0.3",
        }
        p = cls(env, log_dir, standin_root)
        p.ports["standin"] = standin_port
        for s in SERVICES:
            p.ports[s] = free_port()
        return p

    def start(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the stand-in or one service and wait until it answers ``/healthz``.

        ``extra_env`` is added to this process's environment only (e.g. ``TICKPIPE_CRASH_AT``).
        """
        self.launch(name, extra_env)
        self.wait_healthy(name)

    def launch(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        """Start the stand-in or one service without waiting (see :meth:`wait_healthy`);
        ``<service>-<n>`` starts another replica of that service (own metrics port and log)."""
        env = {**os.environ, **self.env, **(extra_env or {})}
        if name == "standin":
            cmd = [
                str(BIN / "tickpipe-standin"),
                "--root",
                str(self.standin_root),
                "--port",
                str(self.ports[name]),
            ]
            shared = locate_shared_dir()
            for source in ("polygon", "deriv") if shared else ():
                assert shared is not None
                cmd += [f"--{source}-root", str(shared / "data" / source)]
            cmd += self.standin_args
        else:
            # "decoder-2": another replica of the decoder, with its own port and log.
            base, _, index = name.rpartition("-")
            service = base if index.isdigit() else name
            cmd = [str(BIN / f"tickpipe-{service}")]
            env["TICKPIPE_METRICS_PORT"] = str(self.ports.setdefault(name, free_port()))
        log = (self.log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_healthy(self, name: str, timeout: float = 60) -> None:
        """Wait until a launched process answers ``/healthz`` with 200 (a service answers once
        its consumers have joined their groups); raise if it exits or times out first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {self.procs[name].returncode}:\n{self.tail(name)}"
                )
            if http_get(f"http://127.0.0.1:{self.ports[name]}/healthz")[0] == 200:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not healthy after {timeout:.0f} s:\n{self.tail(name)}")

    def start_all(self) -> None:
        """The stand-in, then the four services."""
        for name in ("standin", *SERVICES):
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a process and wait for it to end."""
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def restart(self, name: str, extra_env: Mapping[str, str] | None = None) -> None:
        """SIGKILL ``name`` if it runs, then start it again (with ``extra_env``, if given)."""
        if name in self.procs:
            self.kill(name)
        self.start(name, extra_env)

    def alive(self, name: str) -> bool:
        """True while the process of ``name`` runs."""
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def wait_exit(self, name: str, timeout: float) -> int:
        """Wait until ``name`` exits by itself (e.g. a crash marker); its exit status.

        Raises :class:`subprocess.TimeoutExpired` when it still runs after ``timeout`` s.
        """
        status = self.procs[name].wait(timeout=timeout)
        self.procs.pop(name)
        return status

    def healthz(self, name: str) -> int:
        """The HTTP status of ``/healthz`` of a service (0 when nothing answers)."""
        return http_get(f"http://127.0.0.1:{self.ports[name]}/healthz")[0]

    def stop_all(self) -> None:
        """SIGTERM everything, SIGKILL what does not stop within 15 s."""
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.procs.pop(name)

    def metrics(self, name: str) -> str:
        """The ``/metrics`` text of a service."""
        status, body = http_get(f"http://127.0.0.1:{self.ports[name]}/metrics")
        assert status == 200, f"{name} /metrics answered {status}"
        return body

    def tail(self, name: str, lines: int = 40) -> str:
        """The end of a process's log."""
        path = self.log_dir / f"{name}.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``tickpipe ARGS`` against this pipeline."""
        return subprocess.run(
            [str(BIN / "tickpipe"), *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@contextmanager
def pipeline_on_fresh_database(
    infra: Settings,
    standin_root: Path,
    log_dir: Path,
    env: dict[str, str] | None = None,
    prefix: str = "tp_e2e",
) -> Iterator[Pipeline]:
    """A :class:`Pipeline` (not started) on a new database and new topics; on exit its processes
    are stopped and the database dropped."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    run_admin_sql(infra, f'CREATE DATABASE "{name}"')
    p = Pipeline.create(env or {}, with_database(infra, name), log_dir, standin_root)
    p.env.update(env or {})  # the caller's settings win over Pipeline.create's defaults
    asyncio.run(
        ensure_topics(infra.model_copy(update={"topic_prefix": p.env["TICKPIPE_TOPIC_PREFIX"]}))
    )
    try:
        yield p
    finally:
        p.stop_all()
        run_admin_sql(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        prefixes = (p.env["TICKPIPE_TOPIC_PREFIX"], p.env["TICKPIPE_CONSUMER_GROUP_PREFIX"])
        asyncio.run(_delete_topics(infra, prefixes))


async def _delete_topics(infra: Settings, prefixes: tuple[str, ...]) -> None:
    """Delete the run's topics: its own (topic prefix) and the tracker's (faust names its
    changelog and repartition topics after the app id, i.e. the consumer group prefix)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**kafka_client_kwargs(infra))
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()
