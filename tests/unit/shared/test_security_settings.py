"""TLS/SASL settings, ``TICKPIPE_*_FILE`` secrets, and the Kafka and PostgreSQL TLS contexts."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError
from support.tls import handshake, server_context
from tickpipe_dev.stack.secure import make_ca, make_server_cert
from tickpipe_shared.config import Settings, SettingsError
from tickpipe_shared.db.connect import connect_kwargs, database_ssl
from tickpipe_shared.kafka.security import (
    faust_broker_kwargs,
    kafka_client_kwargs,
    kafka_ssl_context,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TICKPIPE_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA, a server certificate and key signed by it (used here as a client certificate)."""
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = make_ca()
    cert, key = make_server_cert(ca, ca_key)
    files = {"ca": ca, "cert": cert, "key": key, "wrong_ca": make_ca("another CA")[0]}
    for name, data in files.items():
        (d / f"{name}.pem").write_bytes(data)
    return {name: str(d / f"{name}.pem") for name in files}


def _sasl_ssl(**extra: object) -> dict[str, object]:
    return {
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "tickpipe",
        "kafka_sasl_password": "s3cret",
        **extra,
    }


# --- *_FILE secrets ---------------------------------------------------------------------------


def test_every_secret_field_can_come_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = {
        "database_url": "postgresql://app:pw@db:5432/ticks",
        "database_password": "db-pass",
        "kafka_sasl_password": "sasl-pass",
        "polygon_api_key": "pk_1",
        "deriv_token": "tok",
    }
    for name, value in secrets.items():
        path = tmp_path / name
        path.write_text(value + "\n")  # as kubectl/echo write them
        monkeypatch.setenv(f"TICKPIPE_{name.upper()}_FILE", str(path))
    monkeypatch.setenv("TICKPIPE_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_USERNAME", "u")
    s = Settings()
    for name, value in secrets.items():
        assert getattr(s, name).get_secret_value() == value, name


def test_only_one_trailing_newline_is_stripped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "key"
    path.write_text("ends with spaces  \n\n")
    monkeypatch.setenv("TICKPIPE_POLYGON_API_KEY_FILE", str(path))
    assert Settings().polygon_api_key.get_secret_value() == "ends with spaces  \n"  # type: ignore[union-attr]


def test_a_secret_set_twice_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file")
    monkeypatch.setenv("TICKPIPE_DERIV_TOKEN_FILE", str(path))
    monkeypatch.setenv("TICKPIPE_DERIV_TOKEN", "from-env")
    with pytest.raises(
        SettingsError, match="both TICKPIPE_DERIV_TOKEN and TICKPIPE_DERIV_TOKEN_FILE"
    ):
        Settings()


def test_an_unreadable_secret_file_names_variable_and_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TICKPIPE_DATABASE_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(
        SettingsError, match=r"TICKPIPE_DATABASE_PASSWORD_FILE: cannot read .*absent"
    ):
        Settings()


def test_file_variables_of_plain_fields_are_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Only secrets have *_FILE variables: a file does not silently replace a plain setting.
    path = tmp_path / "bootstrap"
    path.write_text("elsewhere:9092")
    monkeypatch.setenv("TICKPIPE_KAFKA_BOOTSTRAP_FILE", str(path))
    assert Settings().kafka_bootstrap == "127.0.0.1:9092"


def test_secrets_from_files_stay_out_of_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pw"
    path.write_text("hunter2-value")
    monkeypatch.setenv("TICKPIPE_DATABASE_PASSWORD_FILE", str(path))
    s = Settings()
    assert "hunter2-value" not in repr(s) and "hunter2-value" not in str(s.model_dump())


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"},
         "TICKPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TICKPIPE_KAFKA_SASL_MECHANISM, "
         "TICKPIPE_KAFKA_SASL_USERNAME, TICKPIPE_KAFKA_SASL_PASSWORD"),
        (_sasl_ssl(kafka_sasl_username=None), "needs TICKPIPE_KAFKA_SASL_USERNAME"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"},
         "SASL credentials are set but TICKPIPE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN",
          "kafka_sasl_username": "u", "kafka_sasl_password": "p", "kafka_ssl_cafile": "/x"},
         "Kafka TLS files are set but TICKPIPE_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/ca.pem"},
         "TICKPIPE_KAFKA_SSL_CAFILE: no such file /no/ca.pem"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k"},
         "TICKPIPE_KAFKA_SSL_KEYFILE is set without TICKPIPE_KAFKA_SSL_CERTFILE"),
        ({"database_sslmode": "require", "database_sslrootcert": "/ca"},
         "TICKPIPE_DATABASE_SSLROOTCERT is only used by TICKPIPE_DATABASE_SSLMODE=verify-ca"),
        ({"database_sslmode": "verify-full", "database_sslcert": "/c"},
         "TICKPIPE_DATABASE_SSLCERT and TICKPIPE_DATABASE_SSLKEY go together"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"},
         "kafka_sasl_mechanism"),
        ({"database_sslmode": "verify"}, "database_sslmode"),
    ],
)  # fmt: skip
def test_impossible_combinations_say_what_is_wrong(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**changes)
    assert message in str(info.value)


def test_validation_errors_never_echo_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_PASSWORD", "topsecret123")
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", "postgresql://app:dbsecret456@db/ticks")
    with pytest.raises(ValidationError) as info:
        Settings()  # a model-level error: pydantic would print the whole input by default
    text = str(info.value)
    assert "SASL credentials are set" in text
    assert "topsecret123" not in text and "dbsecret456" not in text


def test_security_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, pki: dict[str, str]
) -> None:
    monkeypatch.setenv("TICKPIPE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_PASSWORD", "pw")
    monkeypatch.setenv("TICKPIPE_KAFKA_SSL_CAFILE", pki["ca"])
    monkeypatch.setenv("TICKPIPE_DATABASE_SSLMODE", "verify-full")
    monkeypatch.setenv("TICKPIPE_DATABASE_SSLROOTCERT", pki["ca"])
    s = Settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (s.database_sslmode, s.database_sslrootcert) == ("verify-full", pki["ca"])


# --- Kafka clients ----------------------------------------------------------------------------


def test_plaintext_kafka_clients_get_no_tls_and_no_sasl() -> None:
    s = Settings()
    assert kafka_ssl_context(s) is None
    assert kafka_client_kwargs(s) == {
        "bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT",
    }  # fmt: skip
    assert faust_broker_kwargs(s) == {"broker": ["kafka://127.0.0.1:9092"]}


def test_sasl_ssl_kafka_clients_verify_the_broker(pki: dict[str, str]) -> None:
    s = Settings(**_sasl_ssl(kafka_ssl_cafile=pki["ca"], kafka_bootstrap="k1:9094, k2:9094"))
    kwargs = kafka_client_kwargs(s)
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "k1:9094, k2:9094",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tickpipe",
        "sasl_plain_password": "s3cret",
    }
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "tickpipe local CA"),),)
    ]
    faust = faust_broker_kwargs(s)
    assert faust["broker"] == ["kafka://k1:9094", "kafka://k2:9094"]
    credentials = faust["broker_credentials"]
    assert (
        credentials.protocol.value == "SASL_SSL" and credentials.mechanism.value == "SCRAM-SHA-512"
    )
    assert (credentials.username, credentials.password) == ("tickpipe", "s3cret")


def test_ssl_kafka_clients_present_a_client_certificate(pki: dict[str, str]) -> None:
    s = Settings(
        kafka_security_protocol="SSL", kafka_ssl_cafile=pki["ca"],
        kafka_ssl_certfile=pki["cert"], kafka_ssl_keyfile=pki["key"],
        kafka_ssl_check_hostname=False,
    )  # fmt: skip
    context = kafka_ssl_context(s)
    assert context is not None and not context.check_hostname
    assert faust_broker_kwargs(s)["broker_credentials"].protocol.value == "SSL"
    assert "sasl_mechanism" not in kafka_client_kwargs(s)


def test_a_key_that_does_not_match_the_certificate_is_refused(pki: dict[str, str]) -> None:
    s = Settings(
        kafka_security_protocol="SSL", kafka_ssl_certfile=pki["ca"], kafka_ssl_keyfile=pki["key"]
    )
    with pytest.raises(ssl.SSLError):
        kafka_ssl_context(s)


# --- PostgreSQL -------------------------------------------------------------------------------


def test_unset_sslmode_leaves_the_dsn_in_charge() -> None:
    s = Settings()
    assert database_ssl(s) is None and connect_kwargs(s) == {}


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_weak_sslmodes_map_to_asyncpg_values(mode: str) -> None:
    expected = False if mode == "disable" else mode
    assert database_ssl(Settings(database_sslmode=mode)) == expected


def test_require_encrypts_without_verifying() -> None:
    context = database_ssl(Settings(database_sslmode="require"))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname


def test_verify_ca_checks_the_chain_not_the_host(pki: dict[str, str]) -> None:
    context = database_ssl(Settings(database_sslmode="verify-ca", database_sslrootcert=pki["ca"]))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    assert len(context.get_ca_certs()) == 1


def test_verify_full_checks_chain_and_host(pki: dict[str, str]) -> None:
    s = Settings(
        database_sslmode="verify-full", database_sslrootcert=pki["ca"],
        database_sslcert=pki["cert"], database_sslkey=pki["key"], database_password="pw",
    )  # fmt: skip
    kwargs = connect_kwargs(s)
    context = kwargs["ssl"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert kwargs["password"] == "pw"


def test_verify_full_without_a_root_cert_uses_the_system_store() -> None:
    context = database_ssl(Settings(database_sslmode="verify-full"))
    assert isinstance(context, ssl.SSLContext) and context.check_hostname


# --- what the contexts accept, by real handshakes ---------------------------------------------


def _assert_handshake(
    client: ssl.SSLContext, pki: dict[str, str], host: str, accepted: bool
) -> None:
    server = server_context(pki["cert"], pki["key"])
    if accepted:
        handshake(client, server, host)
    else:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(client, server, host)


@pytest.mark.parametrize(
    ("mode", "ca", "host", "accepted"),
    [
        ("verify-full", "ca", "127.0.0.1", True),
        ("verify-full", "ca", "localhost", True),
        ("verify-full", "ca", "db.example", False),  # the certificate names other hosts
        ("verify-full", "wrong_ca", "127.0.0.1", False),
        ("verify-ca", "ca", "db.example", True),  # chain only
        ("verify-ca", "wrong_ca", "127.0.0.1", False),
        ("require", None, "db.example", True),  # encrypted, nothing verified
    ],
)  # fmt: skip
def test_database_sslmodes_in_a_handshake(
    pki: dict[str, str], mode: str, ca: str | None, host: str, accepted: bool
) -> None:
    context = database_ssl(
        Settings(database_sslmode=mode, database_sslrootcert=pki[ca] if ca else None)
    )
    assert isinstance(context, ssl.SSLContext)
    _assert_handshake(context, pki, host, accepted)


@pytest.mark.parametrize(
    ("ca", "host", "check_hostname", "accepted"),
    [
        ("ca", "127.0.0.1", True, True),
        ("ca", "kafka.example", True, False),
        ("ca", "kafka.example", False, True),
        ("wrong_ca", "127.0.0.1", True, False),
        ("wrong_ca", "127.0.0.1", False, False),  # the chain is always checked
    ],
)  # fmt: skip
def test_kafka_tls_in_a_handshake(
    pki: dict[str, str], ca: str, host: str, check_hostname: bool, accepted: bool
) -> None:
    s = Settings(**_sasl_ssl(kafka_ssl_cafile=pki[ca], kafka_ssl_check_hostname=check_hostname))
    context = kafka_ssl_context(s)
    assert context is not None
    _assert_handshake(context, pki, host, accepted)
