"""``tickpipe-stack up --secure``: Kafka with a SASL_SSL listener and PostgreSQL with TLS.

A CA made once in ``.local/secure`` signs one server certificate (``localhost``, ``127.0.0.1``)
that both servers present. Kafka keeps its loopback PLAINTEXT listener (inter-broker and
controller traffic, the stack's own probes) and gains ``SASL_SSL`` on :data:`SASL_SSL_PORT`
with SCRAM-SHA-512 for user :data:`KAFKA_USER`; PostgreSQL gets ``ssl = on`` and a pg_hba.conf
that refuses TCP connections without TLS. The services the stack starts then use SASL_SSL and
``sslmode=verify-full`` against the CA, with the SASL password read from a file
(``TICKPIPE_KAFKA_SASL_PASSWORD_FILE``) as on Kubernetes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tickpipe_shared.config import Settings

from tickpipe_dev.stack import kafka, postgres
from tickpipe_dev.stack.paths import StackError, StackPaths
from tickpipe_dev.stack.processes import Reporter, live_pid, port_open, wait_until

SASL_SSL_PORT = 9094
KAFKA_USER = "tickpipe"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
HOSTS = ("localhost", "127.0.0.1")
CERT_DAYS = 825
HBA_BEGIN = "# BEGIN tickpipe-stack --secure"
HBA_END = "# END tickpipe-stack --secure"


@dataclass(frozen=True, slots=True)
class SecureFiles:
    """The files of the secure stack in ``.local/secure`` (see :func:`ensure_files`)."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        """The CA certificate clients verify both servers against (PEM)."""
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """Server certificate for :data:`HOSTS`, signed by the CA (PEM)."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        """Its private key, unencrypted PKCS#8 (PostgreSQL reads it without a passphrase)."""
        return self.directory / "server.key"

    @property
    def kafka_sasl_password(self) -> Path:
        """The SCRAM password of :data:`KAFKA_USER` (random, made once)."""
        return self.directory / "kafka-sasl-password"


def secure_files(paths: StackPaths) -> SecureFiles:
    """Where the secure stack keeps its files."""
    return SecureFiles(paths.local / "secure")


def _marker(paths: StackPaths) -> Path:
    return paths.run_dir / "secure"


def active(paths: StackPaths) -> SecureFiles | None:
    """The files of the secure stack while it is in secure mode (from ``up --secure`` until a
    full ``down``), else ``None``: a restart or a plain ``up`` keeps the mode."""
    return secure_files(paths) if _marker(paths).is_file() else None


def set_active(paths: StackPaths, on: bool) -> None:
    """Enter (``on``) or leave secure mode."""
    if on:
        paths.run_dir.mkdir(parents=True, exist_ok=True)
        _marker(paths).write_text("up --secure\n")
    else:
        _marker(paths).unlink(missing_ok=True)


# --- certificates ---------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def make_ca(common_name: str = "tickpipe local CA") -> tuple[bytes, bytes]:
    """A new self-signed CA: (certificate PEM, unencrypted PKCS#8 key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def make_server_cert(
    ca_cert_pem: bytes, ca_key_pem: bytes, hosts: tuple[str, ...] = HOSTS
) -> tuple[bytes, bytes]:
    """A server certificate for ``hosts`` (DNS names and IP addresses as SANs) signed by the
    CA: (certificate PEM, unencrypted PKCS#8 key PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key: Any = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_files(paths: StackPaths, reporter: Reporter) -> SecureFiles:
    """Create the CA, the server certificate and key (both servers present them) and the SCRAM
    password unless they exist (kept across restarts, so clients keep trusting the same CA)."""
    files = secure_files(paths)
    with reporter.step(f"secure: CA and certificates in {files.directory}") as note:
        files.directory.mkdir(parents=True, exist_ok=True)
        files.directory.chmod(0o700)
        if files.server_key.is_file() and files.kafka_sasl_password.is_file():
            note.result = "present"
            return files
        ca_cert, ca_key = make_ca()
        cert, key = make_server_cert(ca_cert, ca_key)
        files.ca_cert.write_bytes(ca_cert)
        _write_private(files.ca_key, ca_key)
        files.server_cert.write_bytes(cert)
        _write_private(files.server_key, key)
        _write_private(files.kafka_sasl_password, secrets.token_urlsafe(24).encode())
        note.result = "created"
    return files


# --- Kafka ----------------------------------------------------------------------------------


def kafka_properties(files: SecureFiles, port: int = SASL_SSL_PORT) -> dict[str, str]:
    """server.properties entries adding a SASL_SSL listener (SCRAM-SHA-512, PEM keystore) on
    ``port`` beside the PLAINTEXT and CONTROLLER listeners of :mod:`kafka`."""
    host, plain, ctl = kafka.HOST, kafka.BROKER_PORT, kafka.CONTROLLER_PORT
    prefix = "listener.name.sasl_ssl."
    return {
        "listeners": f"PLAINTEXT://{host}:{plain},CONTROLLER://{host}:{ctl},"
        f"SASL_SSL://{host}:{port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{plain},SASL_SSL://{host}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SASL_SSL:SASL_SSL",
        f"{prefix}sasl.enabled.mechanisms": SCRAM_MECHANISM,
        f"{prefix}{SCRAM_MECHANISM.lower()}.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        # The PEM keystore as values read from the files by DirectoryConfigProvider: a file
        # keystore (ssl.keystore.location) needs an encrypted key, and Java 17 cannot read
        # PBES2-encrypted PKCS#8; the values keep the key out of server.properties.
        "config.providers": "dir",
        "config.providers.dir.class": "org.apache.kafka.common.config.provider."
        "DirectoryConfigProvider",
        "config.providers.dir.param.allowed.paths": str(files.directory),
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.key": f"${{dir:{files.directory}:{files.server_key.name}}}",
        f"{prefix}ssl.keystore.certificate.chain": (
            f"${{dir:{files.directory}:{files.server_cert.name}}}"
        ),
    }


def start_kafka(paths: StackPaths, reporter: Reporter, files: SecureFiles) -> int:
    """Start Kafka with the SASL_SSL listener; a broker of ours running without it is
    restarted (its data stays). Returns the broker pid."""
    if live_pid(paths.pid_file(kafka.NAME)) is not None and not port_open(SASL_SSL_PORT):
        kafka.stop(paths, reporter)
    pid = kafka.start(paths, reporter, kafka_properties(files))
    with reporter.step(f"kafka: SASL_SSL {kafka.HOST}:{SASL_SSL_PORT}") as note:
        wait_until(
            lambda: port_open(SASL_SSL_PORT),
            timeout_s=kafka.START_TIMEOUT_S,
            what="kafka SASL_SSL listener",
            log=paths.log_file(kafka.NAME),
            pid=pid,
        )
        note.result = "listening"
    return pid


def scram_salted_password(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> bytes:
    """SCRAM-SHA-512's SaltedPassword, ``Hi(password, salt, i)`` of RFC 5802 (PBKDF2)."""
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)


async def upsert_scram_user(bootstrap: str, user: str, password: str) -> None:
    """Create or update the SCRAM-SHA-512 credential of ``user`` through the admin API
    (AlterUserScramCredentials, KIP-554) over the PLAINTEXT listener at ``bootstrap``.

    aiokafka has no call for it, so the request is declared with aiokafka's protocol types.
    Raises :class:`StackError` when the broker refuses.
    """
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.api import Request, RequestStruct, Response
    from aiokafka.protocol.types import (
        CompactArray,
        CompactBytes,
        CompactString,
        Int8,
        Int16,
        Int32,
        Schema,
        TaggedFields,
    )

    class AlterUserScramCredentialsResponse_v0(Response):  # type: ignore[misc]
        API_KEY = 51
        API_VERSION = 0
        SCHEMA = Schema(
            ("throttle_time_ms", Int32),
            (
                "results",
                CompactArray(
                    ("user", CompactString("utf-8")),
                    ("error_code", Int16),
                    ("error_message", CompactString("utf-8")),
                    ("tags", TaggedFields),
                ),
            ),
            ("tags", TaggedFields),
        )

    class AlterUserScramCredentialsRequest_v0(RequestStruct):  # type: ignore[misc]
        FLEXIBLE_VERSION = True
        API_KEY = 51
        API_VERSION = 0
        RESPONSE_TYPE = AlterUserScramCredentialsResponse_v0
        SCHEMA = Schema(
            (
                "deletions",
                CompactArray(
                    ("name", CompactString("utf-8")),
                    ("mechanism", Int8),
                    ("tags", TaggedFields),
                ),
            ),
            (
                "upsertions",
                CompactArray(
                    ("name", CompactString("utf-8")),
                    ("mechanism", Int8),
                    ("iterations", Int32),
                    ("salt", CompactBytes),
                    ("salted_password", CompactBytes),
                    ("tags", TaggedFields),
                ),
            ),
            ("tags", TaggedFields),
        )

    class AlterUserScramCredentials(Request[AlterUserScramCredentialsRequest_v0]):  # type: ignore[misc]
        API_KEY = 51

        def __init__(self, upsertions: list[tuple[Any, ...]]) -> None:
            self._upsertions = upsertions

        def build(
            self, request_struct_class: type[AlterUserScramCredentialsRequest_v0]
        ) -> AlterUserScramCredentialsRequest_v0:
            return request_struct_class([], self._upsertions, {})

    salt = secrets.token_bytes(32)
    mechanism = 2  # ScramMechanism.SCRAM_SHA_512
    upsert: tuple[Any, ...] = (
        user,
        mechanism,
        SCRAM_ITERATIONS,
        salt,
        scram_salted_password(password, salt),
        {},
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response: Any = await admin._send_request(AlterUserScramCredentials([upsert]))
    finally:
        await admin.close()
    for name, code, message, _tags in response.results:
        if code:
            raise StackError(f"kafka: SCRAM credential of {name!r} refused ({code}): {message}")


# --- PostgreSQL -----------------------------------------------------------------------------


def render_hba_block() -> str:
    """pg_hba.conf lines put first by ``--secure``: TCP only over TLS, scram-sha-256."""
    return (
        f"{HBA_BEGIN}\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostssl all all ::1/128 scram-sha-256\n"
        "hostnossl all all 0.0.0.0/0 reject\n"
        "hostnossl all all ::/0 reject\n"
        f"{HBA_END}\n"
    )


def without_hba_block(hba: str) -> str:
    """``hba`` (pg_hba.conf text) without the block of :func:`render_hba_block`."""
    kept, inside = [], False
    for line in hba.splitlines(keepends=True):
        if line.strip() == HBA_BEGIN:
            inside = True
        elif line.strip() == HBA_END:
            inside = False
        elif not inside:
            kept.append(line)
    return "".join(kept)


def with_hba_block(hba: str) -> str:
    """``hba`` with :func:`render_hba_block` first, replacing an older one."""
    return render_hba_block() + without_hba_block(hba)


def relax_postgres(paths: StackPaths, reporter: Reporter) -> None:
    """Take the ``--secure`` block out of pg_hba.conf again (plain TCP allowed) and reload; a
    no-op when there is none. ``ssl`` stays on: clients may still choose TLS."""
    hba = paths.pg_data / "pg_hba.conf"
    try:
        text = hba.read_text()
    except OSError:
        return
    if HBA_BEGIN not in text:
        return
    with reporter.step("postgres: plain TCP allowed again") as note:
        hba.write_text(without_hba_block(text))
        postgres._psql(paths, postgres.stack_bin_dir(paths), "SELECT pg_reload_conf()")
        note.result = "reloaded"


def leave(paths: StackPaths, reporter: Reporter) -> None:
    """Leave secure mode on a running stack: plain TCP to PostgreSQL again, and the next
    ``up`` or restart without ``--secure`` starts clients with plain settings (the SASL_SSL
    listener stays until Kafka restarts; the PLAINTEXT one never went away)."""
    set_active(paths, False)
    relax_postgres(paths, reporter)


def configure_postgres(paths: StackPaths, reporter: Reporter, files: SecureFiles) -> None:
    """Give the running cluster the server certificate, ``ssl = on`` (ALTER SYSTEM) and the
    TLS-only pg_hba.conf block, then reload it (no restart: ssl is reloadable)."""
    bin_dir = postgres.stack_bin_dir(paths)
    run_as = postgres.ensure_os_user()
    with reporter.step("postgres: TLS only (ssl = on, hostssl)") as note:
        for source, name in (
            (files.server_cert, "tickpipe-server.crt"),
            (files.server_key, "tickpipe-server.key"),
        ):
            target = paths.pg_data / name
            _write_private(target, source.read_bytes())
            run_as.chown(target)
        hba = paths.pg_data / "pg_hba.conf"
        hba.write_text(with_hba_block(hba.read_text()))
        for sql in (
            "ALTER SYSTEM SET ssl_cert_file = 'tickpipe-server.crt'",
            "ALTER SYSTEM SET ssl_key_file = 'tickpipe-server.key'",
            "ALTER SYSTEM SET ssl = on",
            "SELECT pg_reload_conf()",
        ):
            postgres._psql(paths, bin_dir, sql)
        state = postgres._psql(paths, bin_dir, "SELECT setting FROM pg_settings WHERE name='ssl'")
        if state != "on":
            raise StackError(
                f"postgres: ssl is {state!r} after reload; log: {paths.log_file(postgres.NAME)}"
            )
        note.result = "on"


# --- clients --------------------------------------------------------------------------------


def client_env(files: SecureFiles) -> dict[str, str]:
    """``TICKPIPE_*`` variables of a client of the secure stack (the services it starts, the
    CLI): SASL_SSL on :data:`SASL_SSL_PORT`, verify-full against the CA, the SASL password
    read from its file."""
    return {
        "TICKPIPE_KAFKA_BOOTSTRAP": f"{kafka.HOST}:{SASL_SSL_PORT}",
        "TICKPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TICKPIPE_KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "TICKPIPE_KAFKA_SASL_USERNAME": KAFKA_USER,
        "TICKPIPE_KAFKA_SASL_PASSWORD_FILE": str(files.kafka_sasl_password),
        "TICKPIPE_KAFKA_SSL_CAFILE": str(files.ca_cert),
        "TICKPIPE_DATABASE_SSLMODE": "verify-full",
        "TICKPIPE_DATABASE_SSLROOTCERT": str(files.ca_cert),
    }


def client_settings(files: SecureFiles) -> Settings:
    """:class:`Settings` of the environment with :func:`client_env` on top."""
    env = client_env(files)
    overrides: dict[str, Any] = {
        key.removeprefix("TICKPIPE_").lower(): value
        for key, value in env.items()
        if not key.endswith("_FILE")
    }
    overrides["kafka_sasl_password"] = files.kafka_sasl_password.read_text()
    return Settings(**overrides)


def add_scram_user(files: SecureFiles) -> Coroutine[Any, Any, None]:
    """The coroutine giving :data:`KAFKA_USER` its password from ``files`` on the local broker."""
    password = files.kafka_sasl_password.read_text()
    return upsert_scram_user(f"{kafka.HOST}:{kafka.BROKER_PORT}", KAFKA_USER, password)
