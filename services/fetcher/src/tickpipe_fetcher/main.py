"""Fetcher service entry point: a planner (``fetch-requests`` → ``fetch-units``) and a
downloader (``fetch-units`` → ``raw-payloads``) in one process."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from tickpipe_shared import service
from tickpipe_shared.config import POLYGON_URL, Settings
from tickpipe_shared.instruments import InstrumentRegistry
from tickpipe_shared.instruments.catalog import load_registry
from tickpipe_shared.kafka.failure_records import FailureRecords
from tickpipe_shared.kafka.runtime import StageRunner
from tickpipe_shared.kafka.topics import FETCH_REQUESTS, FETCH_UNITS
from tickpipe_shared.metrics import Health
from tickpipe_shared.service import Runner
from tickpipe_shared.synthetic.ticks import SyntheticParams

from tickpipe_fetcher.cancellations import CancellationRegistry
from tickpipe_fetcher.downloader import Downloader
from tickpipe_fetcher.http import AiohttpTransport
from tickpipe_fetcher.pipeline import PipelineRunner
from tickpipe_fetcher.planner import Planner
from tickpipe_fetcher.sources import (
    DerivSource,
    DukascopyBi5,
    DukascopyJson,
    PacedSource,
    PolygonSource,
    Source,
    SyntheticSource,
)

log = structlog.get_logger()


def configured_sources(settings: Settings) -> dict[str, Source]:
    """The sources whose base URL is configured (non-empty), by name. Polygon's public host
    needs an API key: without ``polygon_api_key`` it is left out (with a warning), so a
    request for it is rejected as not configured instead of failing unit by unit with 401."""
    sources: dict[str, Source] = {}
    if settings.dukascopy_json_url:
        sources["dukascopy-json"] = DukascopyJson(settings.dukascopy_json_url)
    if settings.dukascopy_bi5_url:
        sources["dukascopy-bi5"] = DukascopyBi5(settings.dukascopy_bi5_url)
    if settings.polygon_url and not settings.polygon_api_key and _is_public_polygon(settings):
        log.warning("polygon: no TICKPIPE_POLYGON_API_KEY for the public host; source disabled")
    elif settings.polygon_url:
        sources["polygon"] = PolygonSource(
            settings.polygon_url, settings.polygon_api_key, settings.polygon_page_limit
        )
    if settings.deriv_url:
        sources["deriv"] = PacedSource(DerivSource(settings))
    if settings.synthetic_source:
        sources["synthetic"] = SyntheticSource(
            synthetic_params(settings), settings.synthetic_lzma_preset
        )
    return sources


def synthetic_params(settings: Settings) -> SyntheticParams:
    """The synthetic source's parameters from ``TICKPIPE_SYNTHETIC_*``."""
    return SyntheticParams(
        ticks_per_hour=settings.synthetic_ticks_per_hour,
        volatility=settings.synthetic_volatility,
        spread_points=settings.synthetic_spread_points,
        seed=settings.synthetic_seed,
    )


def _is_public_polygon(settings: Settings) -> bool:
    return (settings.polygon_url or "").rstrip("/") == POLYGON_URL


def source_proxies(settings: Settings, sources: Mapping[str, Source]) -> dict[str, str]:
    """Base URL → proxy for the HTTP sources named in ``TICKPIPE_HTTP_PROXY_BY_SOURCE``
    (sources with their own connections, such as the Deriv WebSocket, apply theirs)."""
    proxies: dict[str, str] = {}
    for name, proxy in settings.http_proxy_by_source.items():
        source = sources.get(name)
        if source is None:
            log.warning("proxy configured for an unknown source, ignored", source=name)
            continue
        base = getattr(source, "base_url", None)
        if isinstance(base, str):
            proxies[base] = proxy
    return proxies


async def build(settings: Settings, health: Health) -> Sequence[Runner]:
    """The planner and downloader runners."""
    sources = configured_sources(settings)

    async def registry() -> InstrumentRegistry:
        return await load_registry(settings)

    cancellations = CancellationRegistry(settings)
    planner_failures = FailureRecords(settings, "fetcher-planner")
    planner = Planner(
        settings,
        registry,
        set(sources),
        lambda r, e, rid: planner_failures.record(r, e, request_id=rid),
        cancelled=cancellations.is_cancelled,
    )
    planner_runner = StageRunner(
        settings,
        planner_failures.stage,
        FETCH_REQUESTS,
        planner,
        health,
        group=settings.group(planner_failures.stage),
        failures=planner_failures,
    )
    downloader_failures = FailureRecords(settings, "fetcher")
    downloader = Downloader(
        settings,
        sources,
        AiohttpTransport(settings, source_proxies(settings, sources)),
        downloader_failures.record,
        cancelled=cancellations.is_cancelled,
    )
    # No rounds: units stream through the pipeline, offsets commit as contiguous work ends.
    downloader_runner = PipelineRunner(
        settings,
        downloader_failures.stage,
        FETCH_UNITS,
        downloader.download,
        health,
        group=settings.group(downloader_failures.stage),
        capacity=settings.fetch_pipeline_units,
    )
    return [planner_runner, downloader_runner]


def main() -> None:
    """``tickpipe-fetcher``."""
    service.main("fetcher", build)
