"""Counting a large CSV file in two halves at once, the second in a forked process.

The exact number of records is needed before anything is applied, and counting means a full
parse: on a large file it was the one step with a core to spare. :func:`cut` finds where a
file can be split (a line feed near its middle); the reader (``CsvFile.count_records``)
counts the first half itself and the second, behind the header's line, in a child process
(:func:`count_at_once`). The first half is the file itself up to the cut, so when it ends
between two records (no record broken, none cut open by the end of the half) the cut is where
a whole read starts a record too, and the second half counts what the whole read would after
it. Anything else leaves the answer, and its messages, to a whole read.
"""

from __future__ import annotations

import codecs
import io
import os
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from bulkops.formats.options import decoding_errors

__all__ = ["SPLIT_COUNT_BYTES", "FileRange", "count_at_once", "cut"]

#: A file at least this large is counted in two halves at once.
SPLIT_COUNT_BYTES = 8 << 20
#: Encodings in which a line-feed byte is always a line feed.
_LINE_FEED_SAFE = frozenset({"utf-8", "utf-8-sig", "ascii", "latin-1", "iso8859-15", "cp1252"})
_PROBE_BYTES = 1 << 20


def cut(fd: int, size: int, encoding: str, header_line: str) -> tuple[bytes, int] | None:
    """Where to split the open file ``fd``: (the header line's bytes, the offset of the
    second half), or None where it cannot be split safely.

    Only on Linux (``fork``), for a file of :data:`SPLIT_COUNT_BYTES` or more in UTF-8 or a
    one-byte encoding, whose header is the one line ``header_line``.
    """
    if (
        sys.platform != "linux"
        or size < SPLIT_COUNT_BYTES
        or codecs.lookup(encoding).name not in _LINE_FEED_SAFE
    ):
        return None
    head = os.pread(fd, _PROBE_BYTES, 0)
    header_end = head.find(b"\n") + 1
    if not header_end or head[:header_end].decode(encoding, decoding_errors(encoding)) != (
        header_line
    ):
        return None  # a header line that ends otherwise (CR alone) or runs on
    middle = size // 2
    found = os.pread(fd, _PROBE_BYTES, middle).find(b"\n") + 1
    if not found or middle + found >= size:
        return None
    return head[:header_end], middle + found


class FileRange(io.RawIOBase):
    """Bytes ``start:end`` of an open file (read with ``pread``), after ``prefix``."""

    def __init__(self, fd: int, start: int, end: int, prefix: bytes) -> None:
        super().__init__()
        self._fd, self._at, self._end, self._prefix = fd, start, end, prefix

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._prefix:
            taken = self._prefix[: len(view)]
            self._prefix = self._prefix[len(taken) :]
            view[: len(taken)] = taken
            return len(taken)
        data = os.pread(self._fd, min(len(view), self._end - self._at), self._at)
        view[: len(data)] = data
        self._at += len(data)
        return len(data)


def count_at_once(
    first: Callable[[], int | None], second: Callable[[], int | None]
) -> int | None:
    """``first()`` here and ``second()`` in a forked process, at once: the sum of their
    counts, or None when either gives None or fails."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's
            os.close(reader)
            try:
                found = second()
            except Exception:
                found = None
            os.write(writer, str(-1 if found is None else found).encode())
        finally:
            os._exit(0)  # never run the parent's clean-up here
    os.close(writer)
    try:
        try:
            head = first()
        except Exception:
            head = None
        if head is None:
            return None
        with os.fdopen(reader, "rb") as answer_pipe:
            reader = -1
            answer = answer_pipe.read()
    finally:
        if reader != -1:
            os.close(reader)
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    tail = int(answer) if answer.strip().lstrip(b"-").isdigit() else -1
    return None if tail < 0 else head + tail
