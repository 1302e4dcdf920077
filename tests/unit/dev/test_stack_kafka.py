"""Pure pieces of the local Kafka: rendered configs, cluster ids, jar lookup, readiness probe."""

from __future__ import annotations

import base64
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tickpipe_dev.stack import kafka
from tickpipe_dev.stack.paths import StackError, find_repo_root


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_server_properties_is_a_combined_kraft_node_on_loopback(tmp_path: Path) -> None:
    props = _props(kafka.render_server_properties(tmp_path / "data"))

    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["auto.create.topics.enable"] == "false"
    # One node: every internal topic must be creatable with replication 1.
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["share.coordinator.state.topic.replication.factor"] == "1"


def test_server_properties_ports_and_node_id_are_parameters(tmp_path: Path) -> None:
    props = _props(
        kafka.render_server_properties(
            tmp_path, broker_port=19092, controller_port=19093, node_id=3, auto_create_topics=True
        )
    )
    assert props["controller.quorum.voters"] == "3@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["auto.create.topics.enable"] == "true"


def test_log4j2_writes_to_the_log_file_and_keeps_shutdown_lines(tmp_path: Path) -> None:
    props = _props(kafka.render_log4j2(tmp_path / "kafka.log").replace(" = ", "="))
    assert props["appender.file.fileName"] == str(tmp_path / "kafka.log")
    assert props["rootLogger.appenderRef.file.ref"] == props["appender.file.name"]
    assert props["shutdownHook"] == "disable"


def test_cluster_ids_are_kafka_uuids() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_pom_version_is_a_4x_release() -> None:
    version = kafka.pom_kafka_version(find_repo_root() / "deploy" / "local" / "pom.xml")
    assert version.split(".")[0] == "4"


def test_pom_version_missing_is_an_error(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project/>")
    with pytest.raises(StackError, match=r"kafka\.version"):
        kafka.pom_kafka_version(pom)


def test_kafka_jar_matches_only_the_wanted_version(tmp_path: Path) -> None:
    (tmp_path / "kafka_2.13-4.0.0.jar").touch()
    (tmp_path / "kafka-clients-4.1.0.jar").touch()
    assert kafka.kafka_jar(tmp_path, "4.1.0") is None
    (tmp_path / "kafka_2.13-4.1.0.jar").touch()
    assert kafka.kafka_jar(tmp_path, "4.1.0") == tmp_path / "kafka_2.13-4.1.0.jar"


# --- readiness probe against a fake broker ----------------------------------------------------


def _fake_broker(brokers: int) -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            (size,) = struct.unpack(">i", conn.recv(4))
            request = b""
            while len(request) < size:
                request += conn.recv(size - len(request))
            seen.append(request)
            correlation = request[4:8]
            body = correlation + struct.pack(">ii", 0, brokers)
            for node in range(brokers):
                body += struct.pack(">ih", node, 9) + b"127.0.0.1" + struct.pack(">ih", 9092, -1)
            conn.sendall(struct.pack(">i", len(body)) + body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    thread.join(timeout=5)
    server.close()
    api_key, api_version = struct.unpack(">hh", seen[0][:4])
    assert (api_key, api_version) == (3, 4)  # Metadata v4: still accepted by Kafka 4.x


@pytest.fixture
def broker_with_one_node() -> Iterator[int]:
    yield from _fake_broker(1)


@pytest.fixture
def broker_without_nodes() -> Iterator[int]:
    yield from _fake_broker(0)


def test_broker_count_reads_the_metadata_response(broker_with_one_node: int) -> None:
    assert kafka.broker_count(port=broker_with_one_node) == 1


def test_broker_not_registered_yet_is_not_ready(broker_without_nodes: int) -> None:
    assert kafka.broker_count(port=broker_without_nodes) == 0


def test_closed_port_is_not_ready() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    assert kafka.broker_count(port=port, timeout_s=0.5) == 0
