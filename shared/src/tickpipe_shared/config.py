"""Settings for every tickpipe process, read from ``TICKPIPE_*`` environment variables.

One settings class serves all services so that an operator sets a variable once (in the local
stack's environment, docker-compose or a Kubernetes ConfigMap) and every stage agrees on it.
Secrets are :class:`pydantic.SecretStr` so that they never reach logs or ``repr``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Ports the local stack gives each service's ``/metrics`` and ``/healthz`` endpoint.
DEFAULT_METRICS_PORTS = {
    "fetcher": 9101,
    "decoder": 9102,
    "validator": 9103,
    "writer": 9104,
    "tracker": 9105,
    "api": 9106,
}


class Settings(BaseSettings):
    """All configuration. Field ``x`` is read from the environment variable ``TICKPIPE_X``.

    Defaults match the local stack (``tickpipe-stack up``), so a laptop needs no configuration.
    """

    model_config = SettingsConfigDict(env_prefix="TICKPIPE_", extra="ignore")

    # --- infrastructure ---------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated"
    )
    database_url: SecretStr = Field(
        SecretStr("postgresql://tickpipe:tickpipe@127.0.0.1:55432/tickpipe"),
        description="PostgreSQL/TimescaleDB DSN (secret: may hold a password)",
    )
    database_timescaledb: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Storage of a new schema: auto (TimescaleDB when the server has it), on "
        "(TimescaleDB or fail), off (plain PostgreSQL tables); an existing schema keeps its own",
    )

    # --- topics -----------------------------------------------------------------------
    topic_prefix: str = Field("tickpipe.", description="Prefix of every tickpipe topic name")
    topic_partitions: int = Field(6, ge=1, description="Partitions of topics created by tickpipe")
    topic_replication: int = Field(1, ge=1, description="Replication factor of created topics")

    # --- sources ----------------------------------------------------------------------
    dukascopy_json_url: str | None = Field(
        None, description="Base URL of the Dukascopy JSON API, up to and including /v1"
    )
    dukascopy_bi5_url: str | None = Field(
        None, description="Base URL of the legacy Dukascopy datafeed, up to and including /datafeed"
    )
    deriv_url: str | None = Field(
        None,
        description="Deriv WebSocket URL without app_id, e.g. wss://ws.derivws.com/websockets/v3 "
        "or the new public gateway",
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
        None, description="Base URL of the Polygon (Massive) REST API, e.g. https://api.polygon.io"
    )
    polygon_api_key: SecretStr | None = Field(
        None, description="Polygon API key, sent as an Authorization: Bearer header (secret)"
    )
    polygon_page_limit: int = Field(
        50_000, ge=1, le=50_000, description="Polygon aggregates 'limit' per page (base bars)"
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
    consumer_group_prefix: str = Field("tickpipe-", description="Prefix of every consumer group id")

    def topic(self, name: str) -> str:
        """Full topic name for a logical topic name such as ``"raw-payloads"``."""
        return f"{self.topic_prefix}{name}"

    def group(self, service: str) -> str:
        """Consumer group id of a service."""
        return f"{self.consumer_group_prefix}{service}"

    def port_for(self, service: str) -> int:
        """The metrics port to bind: the configured one, or the service's default."""
        return self.metrics_port or DEFAULT_METRICS_PORTS.get(service, 9100)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
