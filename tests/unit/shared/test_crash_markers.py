"""``tickpipe_shared.kafka.crash``: parsing ``TICKPIPE_CRASH_AT`` and firing the n-th time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from tickpipe_shared.kafka import crash
from tickpipe_shared.kafka.crash import CrashAt, parse


@pytest.fixture(autouse=True)
def disarmed() -> Iterator[None]:
    crash.arm(None)
    yield
    crash.arm(os.environ.get(crash.ENV))


def test_parse_one_and_many() -> None:
    assert parse("writer:after-process:3") == (CrashAt("writer", "after-process", 3),)
    assert parse(" decoder:after-produce:2 , fetcher-planner:before-process:1,") == (
        CrashAt("decoder", "after-produce", 2),
        CrashAt("fetcher-planner", "before-process", 1),
    )
    assert parse("") == () and parse(" , ") == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("writer:after-process", "is not <stage>:<point>:<n>"),
        ("writer:after-process:1:2", "is not <stage>:<point>:<n>"),
        (":after-commit:1", "empty stage"),
        ("writer:after-db-commit:1", "unknown point 'after-db-commit'"),
        ("writer:after-commit:zero", "n must be an integer >= 1"),
        ("writer:after-commit:0", "n must be an integer >= 1"),
    ],
)
def test_parse_rejects_malformed(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(spec)


def test_disarmed_is_a_no_op() -> None:
    for _ in range(3):
        crash.reached("writer", "after-process")
    assert crash._targets is None


def test_counts_per_stage_and_point(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(crash.os, "_exit", exits.append)
    crash.arm("writer:after-process:3")
    crash.reached("writer", "after-process")
    crash.reached("writer", "after-commit")  # another point
    crash.reached("decoder", "after-process")  # another stage
    crash.reached("writer", "after-process")
    assert exits == []
    crash.reached("writer", "after-process")
    assert exits == [137]
    crash.reached("writer", "after-process")  # the 4th time: the marker fired once only
    assert exits == [137]


def _run(code: str, env_value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != crash.ENV}
    if env_value is not None:
        env[crash.ENV] = env_value
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )


CODE = """
from tickpipe_shared.kafka import crash
for i in range(1, 6):
    print(i, flush=True)
    crash.reached("decoder", "after-produce")
print("survived", flush=True)
"""


def test_process_exits_137_the_nth_time_it_passes_the_point() -> None:
    result = _run(CODE, "decoder:after-produce:2")
    assert result.returncode == 137
    assert result.stdout.split() == ["1", "2"]
    assert "crashing at decoder:after-produce:2" in result.stderr


def test_unset_or_other_stage_never_fires() -> None:
    assert _run(CODE, None).stdout.split()[-1] == "survived"
    assert _run(CODE, "writer:after-produce:1").stdout.split()[-1] == "survived"


def test_malformed_value_fails_at_import() -> None:
    result = _run(CODE, "decoder:after-produce")
    assert result.returncode == 1
    assert "is not <stage>:<point>:<n>" in result.stderr
