"""``tickpipe-stack up --secure``: certificates, Kafka listener properties, pg_hba block, the
SCRAM salted password and the settings of a client of the secure stack."""

from __future__ import annotations

import hashlib
import hmac
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from support.tls import handshake, server_context
from tickpipe_dev.stack import kafka, secure
from tickpipe_dev.stack.paths import StackPaths
from tickpipe_dev.stack.processes import Reporter


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TICKPIPE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> secure.SecureFiles:
    root = tmp_path_factory.mktemp("repo")
    return secure.ensure_files(StackPaths(root=root, local=root / ".local"), Reporter(quiet=True))


def test_the_server_certificate_names_both_loopback_hosts(files: secure.SecureFiles) -> None:
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)  # raises when not signed by the CA


def test_a_client_trusting_the_ca_accepts_the_server_certificate(
    files: secure.SecureFiles,
) -> None:
    # A real TLS handshake in memory, hostname checked, as verify-full and SASL_SSL do.
    server = server_context(str(files.server_cert), str(files.server_key))
    client = ssl.create_default_context(cafile=str(files.ca_cert))
    handshake(client, server, "127.0.0.1")
    handshake(client, server, "localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(client, server, "db.example")


def test_private_files_are_private_and_kept(files: secure.SecureFiles) -> None:
    for path in (files.ca_key, files.server_key, files.kafka_sasl_password):
        assert path.stat().st_mode & 0o077 == 0, path
    password = files.kafka_sasl_password.read_text()
    assert len(password) >= 24
    again = secure.ensure_files(
        StackPaths(root=files.directory.parent.parent, local=files.directory.parent),
        Reporter(quiet=True),
    )
    assert again.kafka_sasl_password.read_text() == password  # not regenerated


def test_kafka_gets_a_sasl_ssl_listener_beside_plaintext(files: secure.SecureFiles) -> None:
    text = kafka.render_server_properties(Path("/data"), properties=secure.kafka_properties(files))
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_SSL://127.0.0.1:9094"
    )
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    key = props["listener.name.sasl_ssl.ssl.keystore.key"]
    assert key == f"${{dir:{files.directory}:server.key}}"  # the key itself stays in its file
    assert "PRIVATE KEY" not in text
    # Without extra properties nothing changes.
    assert "SASL_SSL" not in kafka.render_server_properties(Path("/data"))


def test_scram_salted_password_is_rfc5802_hi() -> None:
    # Hi(password, salt, i) = U1 ^ U2 ^ ... ^ Ui, U1 = HMAC(password, salt || INT(1)).
    salt, password, rounds = b"salt", "pencil", 3
    u = hmac.new(password.encode(), salt + b"\0\0\0\1", hashlib.sha512).digest()
    result = bytearray(u)
    for _ in range(rounds - 1):
        u = hmac.new(password.encode(), u, hashlib.sha512).digest()
        result = bytearray(a ^ b for a, b in zip(result, u, strict=True))
    assert secure.scram_salted_password(password, salt, rounds) == bytes(result)


def test_hba_block_comes_first_and_replaces_an_older_one() -> None:
    original = (
        "# TYPE DATABASE USER ADDRESS METHOD\nlocal all all trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    once = secure.with_hba_block(original)
    assert once.startswith(secure.HBA_BEGIN)
    assert once.endswith(original)
    assert "hostnossl all all 0.0.0.0/0 reject" in once
    assert secure.with_hba_block(once) == once
    assert secure.without_hba_block(once) == original


def test_secure_mode_lasts_until_left(tmp_path: Path) -> None:
    paths = StackPaths(root=tmp_path, local=tmp_path / ".local")
    assert secure.active(paths) is None
    secure.set_active(paths, True)
    assert secure.active(paths) == secure.secure_files(paths)
    secure.set_active(paths, False)
    assert secure.active(paths) is None


def test_clients_of_the_secure_stack(files: secure.SecureFiles) -> None:
    env = secure.client_env(files)
    assert env["TICKPIPE_KAFKA_SASL_PASSWORD_FILE"] == str(files.kafka_sasl_password)
    assert "TICKPIPE_KAFKA_SASL_PASSWORD" not in env  # only the file is passed around
    s = secure.client_settings(files)
    assert (s.kafka_bootstrap, s.kafka_security_protocol) == ("127.0.0.1:9094", "SASL_SSL")
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == files.kafka_sasl_password.read_text()
    assert (s.database_sslmode, s.database_sslrootcert) == ("verify-full", str(files.ca_cert))
