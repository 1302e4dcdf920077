"""Replicas per stage in the local stack: parsing, names, ports, environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from tickpipe_dev.stack import replicas
from tickpipe_dev.stack.main import _parser
from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.services import SERVICES, metrics_port


def test_parse_counts() -> None:
    got = replicas.parse_replicas("fetcher=2, decoder=3,validator=1,writer=2", partitions=6)
    assert got == {"fetcher": 2, "decoder": 3, "validator": 1, "writer": 2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tracker=2", "SERVICE one of fetcher"),
        ("writer", "SERVICE=N"),
        ("writer=0", "from 1 to 6"),
        ("writer=7", "sit idle"),
        ("writer=two", "whole number"),
        ("writer=2,writer=3", "given twice"),
    ],
)
def test_bad_counts_say_what(text: str, message: str) -> None:
    with pytest.raises(StackError, match=message):
        replicas.parse_replicas(text, partitions=6)


def test_names_round_trip_and_ports_never_collide() -> None:
    assert replicas.replica_name("writer", 1) == "writer"
    assert replicas.split_name("writer-3") == ("writer", 3)
    assert replicas.split_name("writer") is None and replicas.split_name("api-2") is None
    ports = {metrics_port(s) for s in SERVICES} | {8000, 8765, 9092, 9093, 55432}
    for service in replicas.SCALABLE:
        for index in range(2, replicas.MAX_REPLICAS + 1):
            port = replicas.replica_port(service, index)
            assert port not in ports, (service, index)
            ports.add(port)


def test_replica_env_has_its_port_and_the_fetchers_share_the_rate() -> None:
    env = replicas.replica_env("fetcher", 2, 3, {"PATH": "/bin"}, standin_port=None)
    assert env["TICKPIPE_METRICS_PORT"] == "9111" and env["TICKPIPE_FETCH_REPLICAS"] == "3"
    assert replicas.first_replica_env({"fetcher": 3}) == {
        "fetcher": {"TICKPIPE_FETCH_REPLICAS": "3"}
    }
    assert "TICKPIPE_FETCH_REPLICAS" not in replicas.replica_env("writer", 2, 2, {}, None)


def test_counts_are_remembered_and_running_replicas_found(tmp_path: Path) -> None:
    paths = StackPaths(root=tmp_path, local=tmp_path / ".local")
    replicas.remember(paths, {"writer": 3})
    assert replicas.remembered(paths) == {"writer": 3}
    for name in ("writer-3", "decoder-2", "writer-2", "standin", "api-2"):
        paths.pid_file(name).write_text("1\n")
    assert replicas.running(paths) == ["decoder-2", "writer-2", "writer-3"]
    replicas.forget(paths)
    assert replicas.remembered(paths) == {}


def test_cli_takes_replicas_and_replica_names() -> None:
    args = _parser().parse_args(["up", "--replicas", "writer=2"])
    assert args.replicas == "writer=2"
    assert _parser().parse_args(["restart-service", "writer-2"]).name == "writer-2"
