"""Keep a service's resident memory at its working set (glibc malloc tuning at start-up).

The stages allocate and free multi-megabyte buffers all the time (Kafka fetches, decoded
columns, COPY streams). glibc serves big allocations with ``mmap`` and gives them back on
``free`` — but it *raises* that threshold after each such free (up to 32 MiB), after which the
same buffers come from the heap, whose freed holes are rarely returned to the system: RSS climbs
to the largest fragmented heap seen instead of the working set. Fixing the threshold keeps big
buffers on ``mmap``; two arenas stop worker threads (the decoder's pool, ``asyncio.to_thread``)
from each growing a heap of their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: ``mallopt`` parameters (glibc ``malloc.h``).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Allocations at least this big are mmapped and returned to the system when freed.
MMAP_THRESHOLD = 1 << 20
#: Free heap above this much is trimmed back to the system.
TRIM_THRESHOLD = 8 << 20
ARENAS = 2


def bound_malloc() -> bool:
    """Apply the settings above; returns False (and changes nothing) without glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    ok &= mallopt(_M_ARENA_MAX, ARENAS) == 1
    return bool(ok)
