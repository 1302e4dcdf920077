"""``bin/demo`` without ``../shared`` uses the real Dukascopy JSON API with no variable set; when
the host cannot be reached it says why in one line and exits 3 before starting anything.

The machine's lack of internet is the condition of the first test (it skips where the public
host answers); the second always runs against a closed local port.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from tickpipe_shared.config import DUKASCOPY_JSON_URL

ROOT = Path(__file__).resolve().parents[2]


def _demo(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKPIPE_")}
    env.update(TICKPIPE_SHARED_DIR=str(tmp_path / "no-shared"), UV_OFFLINE="1", **extra)
    return subprocess.run(
        [str(ROOT / "bin" / "demo")], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip


def _public_host_resolves() -> bool:
    try:
        socket.getaddrinfo("jetta.dukascopy.com", 443)
    except OSError:
        return False
    return True


def _assert_one_line_reason(done: subprocess.CompletedProcess[str], url: str) -> None:
    assert done.returncode == 3, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"demo: dukascopy-json: cannot reach {url}/instruments: ")
    assert "needs internet access" in lines[0]
    # Nothing was started: the check comes before tickpipe-stack up.
    assert "kafka" not in done.stdout.lower()


def test_demo_without_shared_reaches_for_the_public_json_api(tmp_path: Path) -> None:
    if _public_host_resolves():
        pytest.skip("jetta.dukascopy.com resolves here: the unreachable case needs no internet")
    done = _demo(tmp_path)
    assert "using the real Dukascopy JSON API" in done.stdout
    _assert_one_line_reason(done, DUKASCOPY_JSON_URL)


def test_demo_says_why_when_the_configured_host_refuses(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    done = _demo(tmp_path, TICKPIPE_DUKASCOPY_JSON_URL=url)
    _assert_one_line_reason(done, url)
