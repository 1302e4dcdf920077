"""``tickpipe_shared.instruments.catalog``, the instrument list: download, cache, stale fallback."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tickpipe_shared.config import Settings
from tickpipe_shared.instruments import catalog
from tickpipe_shared.instruments.catalog import (
    RegistryUnavailableError,
    load_registry,
    probe_registry,
)

DATA: dict[str, Any] = {
    "instruments": [
        {"code": "EUR-USD", "pipValue": 0.0001, "priceScale": 5},
        {"code": "XAU-USD", "pipValue": 0.01, "priceScale": 3},
    ]
}
OLD_DATA: dict[str, Any] = {
    "instruments": [{"code": "GBP-USD", "pipValue": 0.0001, "priceScale": 5}]
}


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "instrument_cache_dir": str(tmp_path / "cache"),
        "dukascopy_json_url": "https://json.test/v1/",
        "instrument_cache_ttl_s": 3600.0,
    }
    base.update(kw)
    return Settings(**base)


def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "dukascopy-instruments.json"


def write_cache(tmp_path: Path, data: dict[str, Any], age_s: float) -> Path:
    path = cache_file(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


class FakeDownload:
    def __init__(self, result: dict[str, Any] | BaseException) -> None:
        self.result = result
        self.urls: list[str] = []

    async def __call__(self, url: str, session: Any) -> dict[str, Any]:
        self.urls.append(url)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


async def test_downloads_and_writes_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload(DATA)
    monkeypatch.setattr(catalog, "_download", fake)
    reg = await load_registry(settings(tmp_path))
    assert fake.urls == ["https://json.test/v1/instruments"]
    assert "EURUSD" in reg and "XAUUSD" in reg and len(reg) == 2
    assert json.loads(cache_file(tmp_path).read_text()) == DATA
    assert [p.name for p in cache_file(tmp_path).parent.iterdir()] == [cache_file(tmp_path).name]


async def test_fresh_cache_is_reused_without_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cache(tmp_path, DATA, age_s=10)
    fake = FakeDownload(AssertionError("must not download"))
    monkeypatch.setattr(catalog, "_download", fake)
    reg = await load_registry(settings(tmp_path))
    assert fake.urls == []
    assert "EURUSD" in reg


async def test_cache_written_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeDownload(DATA)
    monkeypatch.setattr(catalog, "_download", fake)
    s = settings(tmp_path)
    await load_registry(s)
    reg = await load_registry(s)
    assert len(fake.urls) == 1
    assert "XAUUSD" in reg


async def test_stale_cache_refreshed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cache(tmp_path, OLD_DATA, age_s=7200)
    monkeypatch.setattr(catalog, "_download", FakeDownload(DATA))
    reg = await load_registry(settings(tmp_path))
    assert "EURUSD" in reg and "GBPUSD" not in reg
    assert json.loads(cache_file(tmp_path).read_text()) == DATA
    assert time.time() - cache_file(tmp_path).stat().st_mtime < 60


@pytest.mark.parametrize(
    "error",
    [aiohttp.ClientConnectionError("refused"), TimeoutError(), ValueError("HTTP 503 from x")],
    ids=["connection", "timeout", "bad-status"],
)
async def test_stale_cache_used_when_download_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    path = write_cache(tmp_path, OLD_DATA, age_s=7200)
    fake = FakeDownload(error)
    monkeypatch.setattr(catalog, "_download", fake)
    reg = await load_registry(settings(tmp_path))
    assert len(fake.urls) == 1
    assert "GBPUSD" in reg
    assert json.loads(path.read_text()) == OLD_DATA


async def test_unavailable_when_download_fails_and_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "_download", FakeDownload(aiohttp.ClientConnectionError("x")))
    with pytest.raises(RegistryUnavailableError) as info:
        await load_registry(settings(tmp_path))
    assert "TICKPIPE_DUKASCOPY_JSON_URL" in str(info.value)
    assert str(cache_file(tmp_path)) in str(info.value)


async def test_unavailable_without_url_and_cache(tmp_path: Path) -> None:
    with pytest.raises(RegistryUnavailableError, match="TICKPIPE_DUKASCOPY_JSON_URL"):
        await load_registry(settings(tmp_path, dukascopy_json_url=None))


async def test_cache_used_without_url_even_when_stale(tmp_path: Path) -> None:
    write_cache(tmp_path, OLD_DATA, age_s=10**7)
    reg = await load_registry(settings(tmp_path, dukascopy_json_url=None))
    assert "GBPUSD" in reg


async def test_settings_overrides_applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "_download", FakeDownload(DATA))
    reg = await load_registry(settings(tmp_path, bi5_scale_overrides={"XAUUSD": 2}))
    assert reg.get("XAUUSD").bi5_scale == 2


async def test_unusable_download_does_not_replace_good_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_cache(tmp_path, OLD_DATA, age_s=7200)
    monkeypatch.setattr(catalog, "_download", FakeDownload({"error": "maintenance"}))
    reg = await load_registry(settings(tmp_path))
    assert "GBPUSD" in reg


# --- _download against a local aiohttp server --------------------------------------------------


async def _serve(handler: Any) -> TestServer:
    app = web.Application()
    app.router.add_get("/v1/instruments", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_download_from_local_server_end_to_end(tmp_path: Path) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=json.dumps(DATA).encode(), content_type="text/plain")

    server = await _serve(handler)
    try:
        s = settings(tmp_path, dukascopy_json_url=str(server.make_url("/v1")))
        reg = await load_registry(s)
        again = await load_registry(s)
    finally:
        await server.close()
    assert hits == ["/v1/instruments"]
    assert "EURUSD" in reg and "EURUSD" in again


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [(503, b"{}", "HTTP 503 from"), (200, b"[1, 2]", "did not return a JSON object")],
)
async def test_download_rejects_bad_answers(status: int, body: bytes, message: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body)

    server = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError, match=message):
                await catalog._download(str(server.make_url("/v1/instruments")), session)
    finally:
        await server.close()


async def test_probe_counts_instruments_and_bypasses_the_cache(tmp_path: Path) -> None:
    write_cache(tmp_path, OLD_DATA, age_s=1)  # fresh, yet the probe asks the API

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=json.dumps(DATA).encode())

    server = await _serve(handler)
    try:
        s = settings(tmp_path, dukascopy_json_url=str(server.make_url("/v1")))
        assert await probe_registry(s, timeout_s=5) == 2
    finally:
        await server.close()


async def test_probe_gives_a_one_line_reason(tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=503, body=b"{}")

    server = await _serve(handler)
    try:
        s = settings(tmp_path, dukascopy_json_url=str(server.make_url("/v1")))
        with pytest.raises(RegistryUnavailableError, match=r"cannot reach .*HTTP 503") as info:
            await probe_registry(s, timeout_s=5)
    finally:
        await server.close()
    assert "\n" not in str(info.value)
    with pytest.raises(RegistryUnavailableError, match="disabled"):
        await probe_registry(settings(tmp_path, dukascopy_json_url=""), timeout_s=5)
