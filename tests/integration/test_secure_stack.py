"""The secure local stack (``tickpipe-stack up --secure``): Kafka's SASL_SSL listener and
PostgreSQL with TLS only refuse clients without credentials, with a wrong password or a wrong CA;
an ingest runs over both with every secret configured (from ``*_FILE`` files where Kubernetes
would mount them), and no service's log holds any secret's value in any obvious encoding."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka.errors import KafkaError
from support.api import api_process
from support.golden_db import assert_hour_equals_golden, golden_tick_hours
from support.pipeline import Pipeline, pipeline_on_fresh_database
from support.secrets import encodings, find_secrets
from support.shared_data import locate_shared_dir
from tickpipe_dev.stack import api, postgres, secure
from tickpipe_dev.stack.paths import StackPaths
from tickpipe_dev.stack.processes import Reporter
from tickpipe_shared.config import Settings
from tickpipe_shared.db.connect import connect
from tickpipe_shared.kafka.producer import make_producer
from tickpipe_shared.kafka.topics import FAILURES

pytestmark = [pytest.mark.integration]

SHARED = locate_shared_dir()
SAMPLE_HOUR = "bi5/EURUSD/2019/02/18/00h_ticks.bi5"  # EURUSD 2019-03-18 00h, zero-based month


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[Settings, secure.SecureFiles]]:
    """Kafka with SASL_SSL and PostgreSQL with TLS only; the settings of a secure client.
    Afterwards the stack leaves secure mode, as the other tests expect it."""
    paths = StackPaths.discover()
    was_secure = secure.active(paths) is not None
    try:
        settings = api.up(infra_only=True, secure_mode=True, reporter=Reporter())
    except api.StackError as exc:
        pytest.fail(f"tickpipe-stack up --infra-only --secure failed:\n{exc}", pytrace=False)
    yield settings, secure.secure_files(paths)
    if not was_secure:
        secure.leave(paths, Reporter())


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA certificate that signed neither server."""
    path = tmp_path_factory.mktemp("wrong-ca") / "ca.crt"
    path.write_bytes(secure.make_ca("not the tickpipe CA")[0])
    return str(path)


def _with(settings: Settings, **changes: object) -> Settings:
    # Validated again, so that a combination the settings refuse cannot sneak in.
    return Settings(**{**settings.model_dump(), **changes})


async def _produce_one(settings: Settings) -> None:
    producer = make_producer(settings, client_id="tickpipe-secure-test")
    try:
        await asyncio.wait_for(producer.start(), timeout=30)
        await producer.send_and_wait(settings.topic(FAILURES), b"{}", key=b"secure-test")
    finally:
        await producer.stop()


def _broker_log_count(text: str) -> int:
    return StackPaths.discover().log_file("kafka").read_text(errors="replace").count(text)


async def test_kafka_accepts_the_stack_credentials(
    stack: tuple[Settings, secure.SecureFiles],
) -> None:
    await _produce_one(stack[0])


async def test_kafka_refuses_a_client_without_credentials(
    stack: tuple[Settings, secure.SecureFiles],
) -> None:
    settings = stack[0]
    tls_only = _with(
        settings, kafka_security_protocol="SSL", kafka_sasl_mechanism=None,
        kafka_sasl_username=None, kafka_sasl_password=None,
    )  # fmt: skip
    with pytest.raises(KafkaError):
        await _produce_one(tls_only)
    plaintext = _with(tls_only, kafka_security_protocol="PLAINTEXT", kafka_ssl_cafile=None)
    with pytest.raises(KafkaError):
        await _produce_one(plaintext)


async def test_kafka_refuses_a_wrong_password(stack: tuple[Settings, secure.SecureFiles]) -> None:
    failed = "Authentication failed during authentication due to invalid credentials"
    before = _broker_log_count(failed)
    with pytest.raises(KafkaError):
        await _produce_one(_with(stack[0], kafka_sasl_password="not-the-password"))
    # The broker says why: the credentials, not the network or TLS.
    assert _broker_log_count(failed) > before


async def test_kafka_refuses_a_wrong_ca(
    stack: tuple[Settings, secure.SecureFiles], wrong_ca: str
) -> None:
    with pytest.raises(KafkaError):
        await _produce_one(_with(stack[0], kafka_ssl_cafile=wrong_ca))


async def test_postgres_verify_full_with_the_stack_ca(
    stack: tuple[Settings, secure.SecureFiles],
) -> None:
    conn = await connect(stack[0])
    try:
        assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()


async def test_postgres_refuses_a_wrong_ca_under_verify_full(
    stack: tuple[Settings, secure.SecureFiles], wrong_ca: str
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(_with(stack[0], database_sslrootcert=wrong_ca))


async def test_postgres_refuses_plaintext(stack: tuple[Settings, secure.SecureFiles]) -> None:
    plain = _with(stack[0], database_sslmode="disable", database_sslrootcert=None)
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await connect(plain)


# --- an ingest over both, every secret configured, logs scanned --------------------------------


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Secret files as Kubernetes mounts them (one value each, trailing newline)."""
    return tmp_path_factory.mktemp("secrets")


@pytest.fixture(scope="module")
def run(
    stack: tuple[Settings, secure.SecureFiles],
    secrets_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Pipeline, dict[str, str]]]:
    """The services (and the stand-in) on the secure stack, as their own database role with a
    random password; yields the pipeline and the secrets configured, by name."""
    if SHARED is None:
        pytest.skip("../shared (recorded payloads and golden CSVs) is absent beside the repo")
    settings, files = stack
    values = {
        "database password": uuid.uuid4().hex,
        "kafka sasl password": files.kafka_sasl_password.read_text(),
        "polygon api key": f"pk_{uuid.uuid4().hex}",
        "deriv token": f"a1-{uuid.uuid4().hex[:24]}",
    }
    for name, value in values.items():
        (secrets_dir / name.replace(" ", "-")).write_text(value + "\n")
    role = f"tp_sec_{uuid.uuid4().hex[:8]}"
    paths = StackPaths.discover()
    bin_dir = postgres.stack_bin_dir(paths)
    postgres._psql(
        paths, bin_dir, f"CREATE ROLE {role} LOGIN PASSWORD '{values['database password']}'"
    )
    postgres._psql(paths, bin_dir, f"GRANT {role} TO {postgres.ROLE}")
    root = tmp_path_factory.mktemp("standin")
    shutil.copytree(SHARED / "data" / "dukascopy" / "bi5", root / "bi5")
    shutil.copytree(SHARED / "data" / "dukascopy" / "meta", root / "meta")
    env = {
        **secure.client_env(files),
        "TICKPIPE_DATABASE_PASSWORD_FILE": str(secrets_dir / "database-password"),
        "TICKPIPE_POLYGON_API_KEY_FILE": str(secrets_dir / "polygon-api-key"),
        "TICKPIPE_DERIV_TOKEN_FILE": str(secrets_dir / "deriv-token"),
    }
    logs = tmp_path_factory.mktemp("logs")
    try:
        with pipeline_on_fresh_database(settings, root, logs, env=env, prefix="tp_sec") as p:
            database = p.env["TICKPIPE_DATABASE_URL"].rsplit("/", 1)[1]
            postgres._psql(paths, bin_dir, f'ALTER DATABASE "{database}" OWNER TO {role}')
            # No password in the DSN: it comes from TICKPIPE_DATABASE_PASSWORD_FILE.
            p.env["TICKPIPE_DATABASE_URL"] = f"postgresql://{role}@127.0.0.1:55432/{database}"
            # The stand-in answers Polygon only with the key: a stored unit proves it was sent.
            p.standin_args = ["--polygon-api-key", values["polygon api key"]]
            p.start_all()
            yield p, values
    finally:
        postgres._psql(paths, bin_dir, f"DROP ROLE IF EXISTS {role}")


def test_an_ingest_over_sasl_ssl_and_verify_full_leaks_no_secret(
    run: tuple[Pipeline, dict[str, str]], tmp_path: Path
) -> None:
    p, values = run
    assert SHARED is not None
    result = p.cli("request", "EURUSD", "--from", "2019-03-18T00:00", "--to", "2019-03-18T01:00",
                   "--source", "dukascopy-bi5", "--wait", "--timeout", "300")  # fmt: skip
    assert result.returncode == 0, f"request failed:\n{result.stdout}\n{result.stderr}"
    assert "1 stored" in result.stdout
    polygon = p.cli("request", "C:EURUSD", "--source", "polygon", "--kind", "candles",
                    "--timeframe", "1d", "--from", "2023-01-01", "--to", "2023-01-10",
                    "--wait", "--timeout", "300")  # fmt: skip
    assert polygon.returncode == 0 and "1 stored" in polygon.stdout, polygon.stdout + polygon.stderr
    (golden,) = [
        g for g in golden_tick_hours(SHARED / "data" / "dukascopy") if g.instrument == "EURUSD"
        and f"{g.hour:%Y/%m/%d/%H}" == "2019/03/18/00"
    ]  # fmt: skip
    settings = Settings(
        **{
            k.removeprefix("TICKPIPE_").lower(): v
            for k, v in p.env.items()
            if k.startswith("TICKPIPE_") and not k.endswith("_FILE")
        },
        database_password=values["database password"],
        kafka_sasl_password=values["kafka sasl password"],
    )

    async def check() -> None:
        conn = await connect(settings)
        try:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            await assert_hour_equals_golden(conn, golden)
        finally:
            await conn.close()

    asyncio.run(check())
    # The API on the same secure infrastructure, with a key of its own used and one refused.
    created = p.cli("api-key", "create", "secret-scan", "--scope", "read")
    assert created.returncode == 0, created.stderr
    values["api key"] = created.stdout.strip()
    with api_process(p.env["TICKPIPE_DATABASE_URL"], tmp_path, p.env, auth="on") as server:
        ok = httpx.get(f"{server.url}/v1/instruments", headers={"X-API-Key": values["api key"]})
        assert ok.status_code == 200, ok.text
        refused = httpx.get(f"{server.url}/v1/instruments", headers={"X-API-Key": "tp_wrong"})
        assert refused.status_code == 401
    p.stop_all()
    # Every service's log (the stand-in plays the source: not ours) and the CLI's output.
    logs = {
        f"{name}.log": (p.log_dir / f"{name}.log").read_text(errors="replace")
        for name in ("fetcher", "decoder", "validator", "writer", "tracker")
    }
    logs["api.log"] = (tmp_path / "api.log").read_text(errors="replace")
    for name, cli in (("request", result), ("polygon request", polygon)):
        logs[f"tickpipe {name} (CLI output)"] = cli.stdout + cli.stderr
    # Not vacuous: every service logged its run (JSON lines with its name).
    for service in ("fetcher", "decoder", "validator", "writer", "tracker", "api"):
        assert f'"service": "{service}"' in logs[f"{service}.log"], logs[f"{service}.log"][-2000:]
    assert find_secrets(logs, values) == []
    assert all(len(encodings(v)) >= 4 for v in values.values())
