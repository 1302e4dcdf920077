"""Services give big buffers back to the system once freed (:mod:`tickpipe_shared.memory`)."""

from __future__ import annotations

import os
import sys

import pytest
from tickpipe_shared.memory import MMAP_THRESHOLD, bound_malloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def test_freed_big_buffers_leave_rss_where_it_was() -> None:
    assert bound_malloc()
    before = _rss_mb()
    for _ in range(3):  # alloc/free cycles: glibc's dynamic threshold would move to the heap
        buffers = [bytearray(4 * MMAP_THRESHOLD) for _ in range(20)]  # 80 MiB, touched
        assert _rss_mb() > before + 60
        del buffers
    assert _rss_mb() < before + 16
