"""Batch metadata for tests and benches: a unit's part, the fields a test does not care about
filled in."""

from __future__ import annotations

from typing import Any

from tickpipe_shared.units import Unit
from tickpipe_shared.wire.batch import BatchMeta


def unit_meta(
    unit: Unit,
    rows: int,
    price_scale: int,
    *,
    part: int = 0,
    part_count: int = 1,
    request_id: str = "test",
    sha: str = "0" * 64,
    fetched_at_ms: int | None = None,
    **fields: Any,
) -> BatchMeta:
    """The metadata of part ``part`` of ``part_count`` (default: the only one) of ``unit``,
    ``rows`` rows at ``price_scale``, fetched and
    decoded at ``fetched_at_ms`` (default: the unit's end, so it is closed); ``fields`` sets any
    other :class:`BatchMeta` field (``columns``, ``source_code``, ``asset_class`` …)."""
    at = unit.end_ms if fetched_at_ms is None else fetched_at_ms
    return BatchMeta(
        unit=unit,
        part=part,
        part_count=part_count,
        rows=rows,
        price_scale=price_scale,
        payload_sha256=sha,
        request_id=request_id,
        fetched_at_ms=at,
        decoded_at_ms=at,
        **fields,
    )
