"""Recorded Deriv replies (``../shared/data/deriv/``) and which request each one answers."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Capture:
    """A recorded ``ticks_history`` reply and the request window it answers (epochs, s)."""

    file: str
    symbol: str
    style: str
    granularity: int | None
    start: int
    end: int
    items: int
    reply: Mapping[str, Any]

    def matches(self, symbol: str, style: str, granularity: int | None, start: int | None,
                end: int, count: int) -> bool:  # fmt: skip
        """Whether a request for this window, style and granularity gets this reply."""
        return (
            (symbol, style, granularity, start, end) ==
            (self.symbol, self.style, self.granularity, self.start, self.end)
            and count >= self.items
        )  # fmt: skip


def item_epochs(reply: Mapping[str, Any]) -> list[int]:
    if reply.get("msg_type") == "history":
        return [int(t) for t in reply["history"]["times"]]
    return [int(c["epoch"]) for c in reply["candles"]]


def load_captures(root: Path) -> list[Capture]:
    """The ``ticks_history`` data replies listed in ``root/MANIFEST.csv`` (error captures are
    reproduced by the request checks instead). Raises :class:`ValueError` naming a file whose
    manifest row or body cannot be read."""
    manifest = root / "MANIFEST.csv"
    if not manifest.is_file():
        return []
    out: list[Capture] = []
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        name = row.get("file") or ""
        try:
            request = json.loads(row.get("request") or "{}")
            if not isinstance(request, dict) or "ticks_history" not in request:
                continue
            reply = json.loads((root / name).read_text())
            if reply.get("msg_type") not in ("history", "candles"):
                continue
            epochs = item_epochs(reply)
            style = str(request.get("style", "ticks"))
            granularity = int(request.get("granularity", 60)) if style == "candles" else None
            if request.get("end") == "latest":
                if not epochs:
                    continue
                start, end = min(epochs), max(epochs)
            else:
                start, end = int(request["start"]), int(request["end"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"deriv capture {name!r} in {manifest}: {exc}") from None
        out.append(Capture(name, str(request["ticks_history"]), style, granularity, start, end,
                           len(epochs), reply))  # fmt: skip
    return out
