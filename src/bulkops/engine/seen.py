"""Which natural keys a file has already shown, and on which row, in bounded memory.

A Python dict of a million keys costs ~100 MB; this open-addressing table keeps only a 64-bit
hash and the row number per key (12 bytes a slot, filled to 85 %: ~15 MB at a million
keys). The runner
reserves the room once, from the file's size, so the table does not grow (and briefly
double) while the file streams through. Two different
keys with the same 64-bit hash would be reported as a duplicate; for a file of a million
distinct keys the chance of that is about 3 in 100 million.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

__all__ = ["SeenKeys"]

_EMPTY = 0


class SeenKeys:
    def __init__(self, capacity: int = 1 << 12) -> None:
        self._used = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self._hashes = array("q", [_EMPTY]) * capacity
        self._rows = array("i", [0]) * capacity
        self._capacity = capacity
        self._limit = capacity * 17 // 20

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *_: object) -> None:
        self._alloc(1)

    def reserve(self, keys: int) -> None:
        """Make room for ``keys`` keys in all (an estimate; the table still grows if needed)."""
        if keys > self._limit:
            self._rehash(keys * 20 // 17 + 1)

    def _rehash(self, capacity: int) -> None:
        old_hashes, old_rows = self._hashes, self._rows
        self._alloc(capacity)
        hashes, rows = self._hashes, self._rows
        for slot, h in enumerate(old_hashes):
            if h == _EMPTY:
                continue
            i = h % capacity
            while hashes[i] != _EMPTY:
                i = (i + 1) % capacity
            hashes[i] = h
            rows[i] = old_rows[slot]

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Register (key text, row) pairs in file order; returns {row: earlier row} for repeats."""
        if self._used + len(keys) > self._limit:
            self._rehash(max(self._capacity * 3 // 2, (self._used + len(keys)) * 20 // 17 + 1))
        hashes, rows, capacity = self._hashes, self._rows, self._capacity
        repeats: dict[int, int] = {}
        added = 0
        for key, row in keys:
            h = hash(key) or 1
            i = h % capacity
            while True:
                current = hashes[i]
                if current == _EMPTY:
                    hashes[i] = h
                    rows[i] = row
                    added += 1
                    break
                if current == h:
                    repeats[row] = rows[i]
                    break
                i = (i + 1) % capacity
        self._used += added
        return repeats
