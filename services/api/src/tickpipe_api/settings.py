"""Settings of the Market Data API, read from ``TICKPIPE_API_*`` environment variables and the
``api`` section of the configuration file (``TICKPIPE_CONFIG``): environment > file > defaults.

The infrastructure settings (database, Kafka, topics, log level) are the shared ones
(:class:`tickpipe_shared.config.Settings`); these are the API's own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from tickpipe_shared.config_file import SectionedYamlSource


class ApiSettings(BaseSettings):
    """Field ``x`` is read from ``TICKPIPE_API_X``. Defaults suit one replica on a laptop."""

    model_config = SettingsConfigDict(env_prefix="TICKPIPE_API_", extra="ignore")
    #: Every field is key ``api.<field>`` of the configuration file.
    FILE_SECTION: ClassVar[str] = "api"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, environment, .env, the ``api`` section of the file, secret files."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            SectionedYamlSource(settings_cls),
            file_secret_settings,
        )

    host: str = Field("0.0.0.0", description="Interface the HTTP API binds")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port of the API")
    auth: Literal["on", "off"] = Field(
        "on",
        description="'off' serves every request without a key, with every scope and no rate "
        "limit: only for a local stack",
    )
    rate_limit: float = Field(
        20.0, gt=0, description="Requests/s per key for keys without their own limit (all replicas)"
    )
    rate_burst_s: float = Field(
        5.0, gt=0, description="Bucket capacity in seconds of the key's rate (burst = rate × this)"
    )
    replicas: int = Field(
        1, ge=1, description="Replicas behind the load balancer; each allows rate / replicas"
    )
    key_cache_s: float = Field(
        5.0,
        ge=0,
        description="How long a verified key is trusted without the database (revocation delay)",
    )
    cache_ttl_s: float = Field(300.0, ge=0, description="Lifetime of a cached answer")
    cache_max_entries: int = Field(256, ge=0, description="Cached answers kept at most (0: off)")
    cache_max_entry_bytes: int = Field(
        8 * 1024 * 1024, ge=0, description="Larger answers are not cached"
    )
    json_max_rows: int = Field(
        1_000_000,
        ge=1,
        description="A json answer's range may hold at most this many rows (estimate); larger "
        "ranges need a streaming format",
    )
    page_limit_max: int = Field(10_000, ge=1, description="Largest 'limit' of a json page")
    stream_batch_rows: int = Field(
        65_536, ge=1024, description="Rows per Arrow record batch / streamed chunk"
    )
    pool_min: int = Field(1, ge=0, description="Database pool: connections kept open")
    pool_max: int = Field(10, ge=1, description="Database pool: connections at most")
    requests_lookback_s: float = Field(
        7 * 86400.0, ge=0, description="Request events read back at start (GET /v1/requests/{id})"
    )
    public_url: str = Field(
        "", description="Base URL clients reach the API at (status URLs); default: the request's"
    )


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    """Process-wide API settings, read once from the environment."""
    return ApiSettings()
