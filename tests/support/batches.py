"""Batch metadata for tests and benches: one single-part unit, the fields a test does not care
about filled in."""

from __future__ import annotations

from typing import Any

from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta


def unit_meta(
    unit: Unit,
    rows: int,
    price_scale: int,
    *,
    request_id: str = "test",
    sha: str = "0" * 64,
    fetched_at_ms: int | None = None,
    **fields: Any,
) -> BatchMeta:
    """The metadata of ``unit`` as one part of ``rows`` rows at ``price_scale``, fetched and
    decoded at ``fetched_at_ms`` (default: the unit's end, so it is closed); ``fields`` sets any
    other :class:`BatchMeta` field (``columns``, ``source_code``, ``asset_class`` …)."""
    at = unit.end_ms if fetched_at_ms is None else fetched_at_ms
    return BatchMeta(
        unit=unit,
        part=0,
        part_count=1,
        rows=rows,
        price_scale=price_scale,
        payload_sha256=sha,
        request_id=request_id,
        fetched_at_ms=at,
        decoded_at_ms=at,
        **fields,
    )
