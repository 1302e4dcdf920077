"""One GET of a JSON object from a source's metadata endpoint (instrument list, details)."""

from __future__ import annotations

from typing import Any

import aiohttp


async def get_json(
    url: str, session: aiohttp.ClientSession | None, timeout_s: float
) -> dict[str, Any]:
    """The JSON object at ``url``, through ``session`` (or a new one with a ``timeout_s`` total
    timeout). Raises :class:`ValueError` for a non-200 status or a body that is not a JSON
    object, :class:`aiohttp.ClientError` / :class:`TimeoutError` for network failures."""
    own = session is None
    s = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        async with s.get(url) as resp:
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status} from {url}")
            data = await resp.json(content_type=None)
            if not isinstance(data, dict):
                raise ValueError(f"{url} did not return a JSON object")
            return data
    finally:
        if own:
            await s.close()
