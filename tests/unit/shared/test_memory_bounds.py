"""Services give big buffers back to the system once freed (:mod:`tickpipe_shared.memory`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

#: Run in a fresh interpreter, as a service starts: the test process's heap has a history.
_PROGRAM = textwrap.dedent(
    """
    import os
    from tickpipe_shared.memory import MMAP_THRESHOLD, bound_malloc

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    assert bound_malloc()
    before = rss_mb()
    peak = 0.0
    for _ in range(3):  # alloc/free cycles: glibc's dynamic threshold would move to the heap
        buffers = [bytearray(4 * MMAP_THRESHOLD) for _ in range(20)]  # 80 MiB, touched
        peak = max(peak, rss_mb())
        del buffers
    print(round(peak - before), round(rss_mb() - before))
    """
)


def test_freed_big_buffers_leave_rss_where_it_was() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    grown_at_peak, grown_after = map(int, out.split())
    assert grown_at_peak > 60  # the buffers were resident
    assert grown_after < 16  # and left RSS when freed


def test_consumer_fetch_buffers_follow_the_batch_budget() -> None:
    from tickpipe_shared.kafka.runtime import BatchPolicy

    mib = 1024 * 1024
    writer = BatchPolicy(max_records=1000, max_bytes=4_200_000)
    assert writer.partition_fetch_bytes == 2_100_000 and writer.fetch_bytes == 8_400_000
    small = BatchPolicy(max_bytes=64 * 1024)
    assert small.partition_fetch_bytes == mib and small.fetch_bytes == 4 * mib
    big = BatchPolicy(max_bytes=256 * mib)
    assert big.partition_fetch_bytes == 8 * mib and big.fetch_bytes == 32 * mib
