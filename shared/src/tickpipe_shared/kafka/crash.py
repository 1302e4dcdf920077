"""Explicit crash markers for crash-recovery tests (in the spirit of Bytewax's ``testing.py``).

Set ``TICKPIPE_CRASH_AT`` in a process's environment to make it die abruptly — ``os._exit(137)``,
the exit status of a SIGKILL: no ``finally``, no consumer-group leave, no flush — the *n*-th time
one of its stages passes a step of the commit protocol (:meth:`StageRunner.checkpoint`)::

    TICKPIPE_CRASH_AT="<stage>:<point>:<n>"[,"<stage>:<point>:<n>"…]

    TICKPIPE_CRASH_AT=writer:after-process:3      # 3rd DB commit, before its offsets are committed
    TICKPIPE_CRASH_AT=decoder:after-produce:2     # 2nd batch acknowledged, offsets not committed

``stage`` is the runner's stage name (``fetcher-planner``, ``fetcher``, ``decoder``,
``validator``, ``writer``, or a test's own); ``n`` counts checkpoints (batches) from 1, per
stage and point, in this process. The points, in checkpoint order:

``before-process``
    a batch was polled; nothing processed yet.
``after-process``
    the processor returned its output records; nothing produced. For the writer the database
    transaction has committed: this is "after the DB commit, before the offset commit".
``after-produce``
    every output record was acknowledged by the broker; offsets not committed. A restart
    re-processes the batch: duplicates downstream (at-least-once).
``after-commit``
    the batch's offsets are committed. A restart does not see the batch again.

The variable is read once, at import; a malformed value raises :class:`ValueError` then, so a
mistyped marker fails loudly instead of never firing. Unset, :func:`reached` is a single
module-level ``None`` check. Never set it in production.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV = "TICKPIPE_CRASH_AT"
POINTS: tuple[str, ...] = ("before-process", "after-process", "after-produce", "after-commit")
#: Exit status of a crash: what a shell reports for a process killed by SIGKILL (128 + 9).
EXIT_STATUS = 137


@dataclass(frozen=True, slots=True)
class CrashAt:
    """Die the ``n``-th time stage ``stage`` passes ``point``."""

    stage: str
    point: str
    n: int


def parse(spec: str) -> tuple[CrashAt, ...]:
    """Parse a ``TICKPIPE_CRASH_AT`` value (comma-separated ``stage:point:n``; blank: none).

    Raises :class:`ValueError` naming the bad entry and the accepted points.
    """
    out = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) != 3:
            raise ValueError(f"{ENV}: {entry!r} is not <stage>:<point>:<n>")
        stage, point, count = (p.strip() for p in parts)
        if not stage:
            raise ValueError(f"{ENV}: {entry!r} has an empty stage")
        if point not in POINTS:
            raise ValueError(f"{ENV}: unknown point {point!r} in {entry!r}; one of {POINTS}")
        try:
            n = int(count)
        except ValueError:
            raise ValueError(f"{ENV}: {entry!r}: n must be an integer >= 1") from None
        if n < 1:
            raise ValueError(f"{ENV}: {entry!r}: n must be an integer >= 1")
        out.append(CrashAt(stage, point, n))
    return tuple(out)


def _from_env() -> dict[tuple[str, str], int] | None:
    targets = parse(os.environ.get(ENV, ""))
    if not targets:
        return None
    return {(t.stage, t.point): t.n for t in targets}


#: ``(stage, point) → n`` from the environment; ``None`` (the production case) disarms it all.
_targets: dict[tuple[str, str], int] | None = _from_env()
_passed: dict[tuple[str, str], int] = {}


def reached(stage: str, point: str) -> None:
    """Mark that ``stage`` passed ``point``; exit 137 if that is the armed crash."""
    if _targets is None:
        return
    _count(stage, point)


def _count(stage: str, point: str) -> None:
    assert _targets is not None
    key = (stage, point)
    if key not in _targets:
        return
    _passed[key] = _passed.get(key, 0) + 1
    if _passed[key] == _targets[key]:
        os.write(2, f"{ENV}: crashing at {stage}:{point}:{_passed[key]}\n".encode())
        os._exit(EXIT_STATUS)


def arm(spec: str | None) -> None:
    """Replace the armed markers (``None`` disarms) and reset the counts; for tests."""
    global _targets
    targets = parse(spec or "")
    _targets = {(t.stage, t.point): t.n for t in targets} if targets else None
    _passed.clear()
