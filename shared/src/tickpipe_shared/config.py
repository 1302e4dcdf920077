"""Settings for every tickpipe process, read from ``TICKPIPE_*`` environment variables and the
configuration file ``TICKPIPE_CONFIG`` names (:mod:`tickpipe_shared.config_file`): environment >
file > defaults.

One settings class serves all services so that an operator sets a variable once (in the local
stack's environment, docker-compose or a Kubernetes ConfigMap) and every stage agrees on it.
Secrets are :class:`pydantic.SecretStr` so that they never reach logs or ``repr``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from tickpipe_shared.config_file import SectionedYamlSource

#: Ports the local stack gives each service's ``/metrics`` and ``/healthz`` endpoint.
DEFAULT_METRICS_PORTS = {
    "fetcher": 9101,
    "decoder": 9102,
    "validator": 9103,
    "writer": 9104,
    "tracker": 9105,
    "api": 9106,
}


ENV_PREFIX = "TICKPIPE_"
#: Suffix of the variable naming a file that holds a secret (Kubernetes secrets mounted as files).
FILE_SUFFIX = "_FILE"

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
#: libpq's sslmode values, weakest first.
DatabaseSslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


class SettingsError(ValueError):
    """Configuration that cannot work; the message names the variables involved."""


def _is_secret(field: FieldInfo) -> bool:
    annotation = field.annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


class SecretFilesSource(PydanticBaseSettingsSource):
    """Reads every :class:`SecretStr` field ``x`` from the file named by ``TICKPIPE_X_FILE``.

    The file's content is the value, one trailing newline stripped (``echo`` and ``kubectl
    create secret --from-file`` both add one). Setting both ``TICKPIPE_X`` and ``TICKPIPE_X_FILE``
    is an error: which one wins would be a guess. Raises :class:`SettingsError` when the file
    cannot be read.
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads every field at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """Values of the secret fields whose ``*_FILE`` variable is set."""
        env = {k.upper(): v for k, v in os.environ.items()}
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            if not _is_secret(field):
                continue
            var = f"{ENV_PREFIX}{name.upper()}"
            path = env.get(var + FILE_SUFFIX)
            if not path:
                continue
            if var in env:
                raise SettingsError(
                    f"both {var} and {var}{FILE_SUFFIX} are set; set only one of them"
                )
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise SettingsError(
                    f"{var}{FILE_SUFFIX}: cannot read {path}: {type(e).__name__}: {e.args[-1]}"
                ) from None
            values[name] = text[:-1] if text.endswith("\n") else text
        return values


#: The sources' public endpoints: the production defaults. Only the local stack's stand-in mode
#: (``tickpipe-stack up`` with ``../shared``) points the services elsewhere.
DUKASCOPY_JSON_URL = "https://jetta.dukascopy.com/v1"
DUKASCOPY_BI5_URL = "https://datafeed.dukascopy.com/datafeed"
DERIV_URL = "wss://ws.derivws.com/websockets/v3"
POLYGON_URL = "https://api.polygon.io"


class Settings(BaseSettings):
    """All configuration. Field ``x`` is read from the environment variable ``TICKPIPE_X``.

    Infrastructure defaults match the local stack (``tickpipe-stack up``) and source URLs
    default to the sources' public endpoints, so a laptop with internet needs no configuration.
    """

    # Validation errors name field and problem but never echo inputs: a model-level error
    # would otherwise print every setting, secrets included. An empty variable counts as unset
    # (compose and ConfigMaps write ``VAR: ""`` for "not set"), so it never turns a public
    # source URL into nothing.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True, env_ignore_empty=True
    )

    # --- infrastructure ---------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated"
    )
    database_url: SecretStr = Field(
        SecretStr("postgresql://tickpipe:tickpipe@127.0.0.1:55432/tickpipe"),
        description="PostgreSQL/TimescaleDB DSN (secret: may hold a password)",
    )
    database_password: SecretStr | None = Field(
        None,
        description="Password of the database user, overriding the one in database_url (so "
        "that the DSN can live in a ConfigMap and the password in a secret)",
    )
    database_sslmode: DatabaseSslMode | None = Field(
        None,
        description="TLS to PostgreSQL as libpq's sslmode: disable, allow, prefer, require "
        "(encrypted, server not verified), verify-ca (certificate chain checked against "
        "database_sslrootcert), verify-full (chain and host name); unset: the DSN's sslmode "
        "(asyncpg's default: prefer)",
    )
    database_sslrootcert: str | None = Field(
        None, description="CA certificate(s) (PEM) verify-ca/verify-full check the server against"
    )
    database_sslcert: str | None = Field(
        None, description="Client certificate (PEM) for certificate authentication"
    )
    database_sslkey: str | None = Field(None, description="Private key (PEM) of database_sslcert")
    database_sslkey_password: SecretStr | None = Field(
        None, description="Password of an encrypted database_sslkey (secret)"
    )
    database_timescaledb: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Storage of a new schema: auto (TimescaleDB when the server has it), on "
        "(TimescaleDB or fail), off (plain PostgreSQL tables); an existing schema keeps its own",
    )

    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT, "
        "SASL_SSL (authenticated over TLS)",
    )
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="SASL mechanism of SASL_*: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (secret)")
    kafka_ssl_cafile: str | None = Field(
        None,
        description="CA certificate(s) (PEM) the broker certificates are checked against "
        "(unset: the system's trust store)",
    )
    kafka_ssl_certfile: str | None = Field(
        None, description="Client certificate (PEM) for mutual TLS"
    )
    kafka_ssl_keyfile: str | None = Field(None, description="Private key (PEM) of the client cert")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted kafka_ssl_keyfile (secret)"
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that the broker certificate names the host connected to"
    )

    # --- topics -----------------------------------------------------------------------
    topic_prefix: str = Field("tickpipe.", description="Prefix of every tickpipe topic name")
    topic_partitions: int = Field(6, ge=1, description="Partitions of topics created by tickpipe")
    topic_replication: int = Field(1, ge=1, description="Replication factor of created topics")
    topic_batch_retention_ms: int = Field(
        3 * 86_400_000,
        ge=-1,
        description="retention.ms of the batch topics (decoded-batches, validated-batches) when "
        "created: how far back 'tickpipe replay validator|writer --since' can go (the decoder "
        "replays from raw-payloads, kept forever); -1 keeps them forever",
    )
    topic_max_message_bytes: int = Field(
        8 * 1024 * 1024,
        ge=65_536,
        description="Largest record: topics' max.message.bytes when created, the producers' "
        "max_request_size, hence the raw-payload size limit; a bigger output record fails its "
        "unit with the reason instead of being retried",
    )

    # --- sources ----------------------------------------------------------------------
    dukascopy_json_url: str | None = Field(
        DUKASCOPY_JSON_URL,
        description="Base URL of the Dukascopy JSON API, up to and including /v1",
    )
    dukascopy_bi5_url: str | None = Field(
        DUKASCOPY_BI5_URL,
        description="Base URL of the legacy Dukascopy datafeed, up to and including /datafeed",
    )
    deriv_url: str | None = Field(
        DERIV_URL,
        description="Deriv WebSocket URL without app_id",
    )
    deriv_app_id: str = Field(
        "1089", description="Deriv application id sent as ?app_id= (1089: the public test id)"
    )
    deriv_token: SecretStr | None = Field(
        None, description="Optional Deriv API token, sent with 'authorize' (secret)"
    )
    deriv_page_count: int = Field(
        5000, ge=1, le=5000, description="Items per Deriv ticks_history page ('count')"
    )
    deriv_ping_interval_s: float = Field(
        30.0, gt=0, description="Keep-alive ping interval on an idle Deriv WebSocket"
    )
    polygon_url: str | None = Field(
        POLYGON_URL,
        description="Base URL of the Polygon (Massive) REST API; the public host needs "
        "polygon_api_key",
    )
    polygon_api_key: SecretStr | None = Field(
        None, description="Polygon API key, sent as an Authorization: Bearer header (secret)"
    )
    polygon_page_limit: int = Field(
        50_000, ge=1, le=50_000, description="Polygon aggregates 'limit' per page (base bars)"
    )
    synthetic_source: bool = Field(
        False,
        description="Serve source 'synthetic' (generated ticks for volume runs, no network); "
        "the local stack turns it on",
    )
    synthetic_ticks_per_hour: float = Field(
        36_000.0, ge=0, description="Mean ticks per open hour of the synthetic source"
    )
    synthetic_volatility: float = Field(
        0.001, ge=0, description="Synthetic price standard deviation over an hour, a fraction"
    )
    synthetic_spread_points: int = Field(
        8, ge=0, description="Smallest synthetic spread (ask - bid), in points"
    )
    synthetic_seed: int = Field(0, ge=0, description="Seed of the synthetic source")
    synthetic_lzma_preset: int = Field(
        0, ge=0, le=9, description="LZMA preset of the synthetic .bi5 payloads (0: fastest)"
    )
    default_source: str = Field("dukascopy-json", description="Source of requests that name none")
    instrument_cache_dir: str = Field(
        ".local/cache/instruments", description="Where instrument metadata from sources is cached"
    )
    bi5_scale_overrides: dict[str, int] = Field(
        default_factory=dict,
        description='Price scale per instrument for .bi5 files, e.g. {"XAUUSD": 3}, when the '
        "scale derived from the JSON API's pipValue is wrong for the legacy datafeed",
    )
    instrument_cache_ttl_s: float = Field(
        86400.0, ge=0, description="Age after which it is refetched"
    )
    instrument_detail_retry_s: float = Field(
        60.0,
        ge=0,
        description="After a failed instrument-detail download: seconds before it is asked "
        "again, doubling per failure up to instrument_detail_retry_max_s (not the cache TTL)",
    )
    instrument_detail_retry_max_s: float = Field(
        1800.0, ge=0, description="Longest wait between instrument-detail download attempts"
    )

    # --- fetcher ----------------------------------------------------------------------
    fetch_concurrency: int = Field(
        4,
        ge=1,
        description="Requests in flight at once per fetcher (over all hosts)",
    )
    fetch_concurrency_per_host: int = Field(
        2,
        ge=1,
        description="Units of one source host downloading at once per fetcher; below "
        "fetch_concurrency so that a stalled host leaves slots to the others",
    )
    fetch_attempts: int = Field(5, ge=1, description="Attempts per unit before it goes to failures")
    fetch_backoff_base_s: float = Field(0.5, ge=0, description="First retry backoff (full jitter)")
    fetch_backoff_max_s: float = Field(30.0, ge=0, description="Cap of the retry backoff")
    fetch_delayed_retries: int = Field(
        3,
        ge=0,
        description="Delayed retries of a unit whose attempts all failed for a transient "
        "reason, each with the full attempt budget, before it goes to failures",
    )
    fetch_delayed_retry_s: float = Field(
        60.0, ge=0, description="Wait before the first delayed retry; doubles every round"
    )
    fetch_pipeline_units: int = Field(
        64,
        ge=1,
        description="Units the downloader pipeline holds at once per fetcher (downloading, "
        "waiting for their host, or for a delayed retry)",
    )
    fetch_connect_timeout_s: float = Field(10.0, gt=0)
    fetch_read_timeout_s: float = Field(30.0, gt=0)
    fetch_total_timeout_s: float = Field(60.0, gt=0)
    http_proxy: str | None = Field(None, description="Optional HTTP(S) proxy for source requests")
    http_proxy_by_source: dict[str, str] = Field(
        default_factory=dict,
        description='Proxy per source overriding http_proxy, e.g. {"dukascopy-bi5": '
        '"http://proxy:3128"}; an empty string means a direct connection',
    )
    fetch_rate_per_host: float = Field(
        10.0,
        ge=0,
        description="Requests per second to one source host, in total over all fetcher "
        "replicas (each uses this / fetch_replicas); 0 disables rate limiting",
    )
    fetch_rate_burst: float = Field(
        10.0, ge=1, description="Token-bucket burst per host, in total over all replicas"
    )
    fetch_replicas: int = Field(
        1, ge=1, description="Fetcher replicas sharing fetch_rate_per_host and fetch_rate_burst"
    )
    fetch_rate_recovery_s: float = Field(
        60.0, gt=0, description="After a 429/503 halved the rate: seconds to regain the full rate"
    )
    fetch_breaker_failures: int = Field(
        10,
        ge=1,
        description="Consecutive failures to one host that open its circuit breaker (high "
        "enough that faults spread over units of a healthy-but-flaky host never line up so)",
    )
    fetch_breaker_failure_ratio: float = Field(
        0.8, gt=0, le=1, description="Failure ratio over the window that opens the breaker"
    )
    fetch_breaker_window: int = Field(
        20, ge=1, description="Recent requests per host the failure ratio is computed over"
    )
    fetch_breaker_cooldown_s: float = Field(
        30.0, gt=0, description="How long an open breaker stays open before a half-open probe"
    )
    fetch_breaker_max_wait_s: float = Field(
        300.0, ge=0, description="Longest a unit waits for an open breaker before it fails"
    )

    # --- decoder ----------------------------------------------------------------------
    max_batch_bytes: int = Field(
        900_000, ge=4096, description="Largest encoded batch; bigger units are split into parts"
    )

    # --- validator --------------------------------------------------------------------
    validator_actions: dict[str, str] = Field(
        default_factory=dict,
        description="Action per validation rule, overriding its default, e.g. "
        '{"crossed_quote": "drop"}; actions are flag, drop and reject',
    )
    validator_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Threshold per validation rule, overriding its default, e.g. "
        '{"spread_outlier": 100, "gap": 600}; checked against each rule\'s range at start-up',
    )

    # --- writer -----------------------------------------------------------------------
    writer_batch_rows: int = Field(100_000, ge=1, description="Rows per DB transaction (soft cap)")
    writer_batch_seconds: float = Field(1.0, gt=0, description="Longest wait to fill a transaction")
    writer_db_error_attempts: int = Field(
        5,
        ge=1,
        description="Attempts of a write failing with a database error that waiting does not fix "
        "(a limit, a timeout) before its units go to failures; availability errors are retried "
        "indefinitely",
    )
    writer_ohlcv_refresh_seconds: float = Field(
        2.0,
        gt=0,
        description="The writer refreshes the OHLCV continuous aggregates over the windows "
        "written since (TimescaleDB; ohlcv_pending) once it has been idle this long, and at "
        "least every ten such periods while it keeps writing",
    )
    writer_max_decompressed_tuples: int = Field(
        0,
        ge=0,
        description="TimescaleDB's timescaledb.max_tuples_decompressed_per_dml_transaction for "
        "the writer's sessions (0: unlimited; a transaction is bounded by the writer's batch)",
    )

    # --- process ----------------------------------------------------------------------
    metrics_port: int = Field(
        0, ge=0, le=65535, description="/metrics + /healthz port (0: service default)"
    )
    metrics_host: str = Field("0.0.0.0", description="Interface the metrics endpoint binds")
    log_level: str = Field("INFO")
    consumer_lag_interval_s: float = Field(
        10.0,
        gt=0,
        description="Seconds between updates of tickpipe_consumer_lag (one ListOffsets and one "
        "OffsetFetch request per consumer and update)",
    )
    consumer_group_prefix: str = Field("tickpipe-", description="Prefix of every consumer group id")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Sources, highest priority first: arguments, ``TICKPIPE_*`` variables,
        ``TICKPIPE_*_FILE`` secret files, .env, the configuration file (``TICKPIPE_CONFIG``),
        secret directories."""
        return (
            init_settings,
            env_settings,
            SecretFilesSource(settings_cls),
            dotenv_settings,
            SectionedYamlSource(settings_cls),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _check_security(self) -> Self:
        """Reject TLS/SASL combinations that cannot work, naming the variables to fix."""
        problems = security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic name such as ``"raw-payloads"``."""
        return f"{self.topic_prefix}{name}"

    def group(self, service: str) -> str:
        """Consumer group id of a service."""
        return f"{self.consumer_group_prefix}{service}"

    def port_for(self, service: str) -> int:
        """The metrics port to bind: the configured one, or the service's default."""
        return self.metrics_port or DEFAULT_METRICS_PORTS.get(service, 9100)


def security_problems(settings: Settings) -> list[str]:
    """What is wrong with the Kafka and PostgreSQL TLS/SASL settings (empty: nothing)."""
    s, p = settings, ENV_PREFIX
    problems = []
    if s.kafka_security_protocol.startswith("SASL_"):
        missing = [
            f"{p}KAFKA_SASL_{name.upper()}"
            for name, value in (
                ("mechanism", s.kafka_sasl_mechanism),
                ("username", s.kafka_sasl_username),
                ("password", s.kafka_sasl_password),
            )
            if not value
        ]
        if missing:
            problems.append(
                f"{p}KAFKA_SECURITY_PROTOCOL={s.kafka_security_protocol} needs "
                + ", ".join(missing)
            )
    elif s.kafka_sasl_username or s.kafka_sasl_password or s.kafka_sasl_mechanism:
        problems.append(
            f"SASL credentials are set but {p}KAFKA_SECURITY_PROTOCOL="
            f"{s.kafka_security_protocol} does not authenticate (use SASL_SSL or SASL_PLAINTEXT)"
        )
    if not s.kafka_security_protocol.endswith("SSL") and (
        s.kafka_ssl_cafile or s.kafka_ssl_certfile
    ):
        problems.append(
            f"Kafka TLS files are set but {p}KAFKA_SECURITY_PROTOCOL="
            f"{s.kafka_security_protocol} does not use TLS (use SSL or SASL_SSL)"
        )
    if bool(s.kafka_ssl_certfile) != bool(s.kafka_ssl_keyfile) and s.kafka_ssl_keyfile:
        problems.append(f"{p}KAFKA_SSL_KEYFILE is set without {p}KAFKA_SSL_CERTFILE")
    if bool(s.database_sslcert) != bool(s.database_sslkey):
        problems.append(f"{p}DATABASE_SSLCERT and {p}DATABASE_SSLKEY go together")
    if s.database_sslrootcert and s.database_sslmode not in ("verify-ca", "verify-full"):
        problems.append(
            f"{p}DATABASE_SSLROOTCERT is only used by {p}DATABASE_SSLMODE=verify-ca or "
            f"verify-full (it is {s.database_sslmode or 'unset'}): the server would not be checked"
        )
    for name in (
        "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile",
        "database_sslrootcert", "database_sslcert", "database_sslkey",
    ):  # fmt: skip
        path = getattr(s, name)
        if path and not Path(path).is_file():
            problems.append(f"{p}{name.upper()}: no such file {path}")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
