"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against
a running pipeline and API: the page loads the stored instruments, the chart draws bars of the
recorded EURUSD hour, and a fetch request submitted from the page completes. Saves a
screenshot (``dashboard.png`` in the test's temporary directory)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.api import ApiProcess, api_process
from support.pipeline import Pipeline, pipeline_on_fresh_database
from tickpipe_shared.config import Settings

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def stack(
    infra: Settings, dukascopy_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, ApiProcess]]:
    """Stand-in + the five services on a fresh database with one recorded EURUSD hour stored,
    and ``tickpipe-api`` (auth off, like the local stack) on the same database and topics."""
    logs = tmp_path_factory.mktemp("logs")
    with pipeline_on_fresh_database(infra, dukascopy_dir, logs) as p:
        p.start_all()
        done = p.cli(
            "request", "EURUSD", "--from", "2019-02-04T10:00", "--to", "2019-02-04T11:00",
            "--source", "dukascopy-bi5", "--wait", "--timeout", "300",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        env = {k: v for k, v in p.env.items() if k != "TICKPIPE_DATABASE_URL"}
        with api_process(p.env["TICKPIPE_DATABASE_URL"], logs, env, auth="off") as api:
            yield p, api


@pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium: run bin/bootstrap")
@pytest.mark.timeout(600)
def test_dashboard_loads_draws_candles_and_submits_a_request(
    stack: tuple[Pipeline, ApiProcess], tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    _, api = stack
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1600})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{api.url}/dashboard/")
            # The instruments table lists what the pipeline stored.
            expect(page.locator("#instruments tbody")).to_contain_text("EURUSD", timeout=30_000)
            # Coverage heatmap: the day of the stored hour.
            page.click("#cov-load")
            expect(page.locator('#heatmap .cell[data-day="2019-02-04"]')).to_have_count(1)
            # Candle chart of the stored hour: 5-minute bars, drawn on a canvas.
            page.fill("#chart-start", "2019-02-04T10:00Z")
            page.fill("#chart-end", "2019-02-04T11:00Z")
            page.select_option("#chart-timeframe", "5m")
            page.click("#chart-draw")
            expect(page.locator("#chart")).not_to_have_attribute("data-bars", "0", timeout=30_000)
            bars = int(page.get_attribute("#chart", "data-bars") or 0)
            assert bars == 12
            assert page.locator("#chart canvas").count() > 0
            # A fetch request from the form, followed until the tracker says completed.
            page.fill("#req-instrument", "EURUSD")
            page.select_option("#req-source", "dukascopy-bi5")
            page.fill("#req-start", "2019-02-04T11:00Z")
            page.fill("#req-end", "2019-02-04T12:00Z")
            page.click("#req-submit")
            status = page.locator("#request-status")
            expect(status).to_have_attribute("data-status", "completed", timeout=300_000)
            expect(status).to_contain_text("1 stored")
            page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            assert (tmp_path / "dashboard.png").stat().st_size > 10_000
            assert not errors, errors
        finally:
            browser.close()
