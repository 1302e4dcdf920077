"""What a rule is."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from tickpipe_shared.columns import Ticks
from tickpipe_shared.wire.batch import BatchMeta

ACTIONS = ("flag", "drop", "reject")

Check = Callable[[Ticks, BatchMeta], NDArray[np.bool_]]


@dataclass(frozen=True, slots=True)
class Rule:
    """A data-quality rule.

    ``bit``: its bit in the uint16 ``flags`` column (``flags & (1 << bit)``). ``action``: the
    default action. ``allowed``: actions that make sense (a tick outside its unit cannot be
    kept: the writer replaces units by time window). ``check``: the pure function.
    """

    name: str
    bit: int
    action: str
    check: Check
    description: str
    allowed: tuple[str, ...] = ACTIONS

    @property
    def mask(self) -> int:
        """The rule's bit as an integer mask."""
        return 1 << self.bit
