"""Reading an Arrow IPC stream straight off an HTTP response, batch by batch."""

from __future__ import annotations

import io
from collections.abc import Iterator


def reader(chunks: Iterator[bytes]) -> io.BufferedReader:
    """A buffered file over ``chunks``: its ``read(n)`` returns ``n`` bytes unless the stream
    ends (pyarrow needs whole reads, a raw reader may return fewer)."""
    return io.BufferedReader(IterReader(chunks), buffer_size=1 << 16)


class IterReader(io.RawIOBase):
    """A read-only binary file over an iterator of byte chunks (``httpx.Response.iter_bytes``),
    so that ``pyarrow.ipc.open_stream`` decodes batches while the rest is still arriving."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n
