"""Which natural keys a file has already shown, and on which row, in bounded memory.

A Python dict of a million keys costs ~100 MB; this open-addressing table keeps only a 64-bit
hash and the row number per key (12 bytes a slot, ~17 MB at a million keys). Two different
keys with the same 64-bit hash would be reported as a duplicate; for a file of a million
distinct keys the chance of that is about 3 in 100 million.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

__all__ = ["SeenKeys"]

_EMPTY = 0


class SeenKeys:
    def __init__(self, capacity: int = 1 << 16) -> None:
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self._hashes = array("q", bytes(8 * capacity))
        self._rows = array("i", bytes(4 * capacity))
        self._mask = capacity - 1
        self._used = 0
        self._limit = capacity * 7 // 10

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *_: object) -> None:
        self._alloc(1)

    def _grow(self) -> None:
        old_hashes, old_rows = self._hashes, self._rows
        self._alloc((self._mask + 1) * 2)
        hashes, rows, mask = self._hashes, self._rows, self._mask
        for slot, h in enumerate(old_hashes):
            if h == _EMPTY:
                continue
            i = h & mask
            while hashes[i] != _EMPTY:
                i = (i + 1) & mask
            hashes[i] = h
            rows[i] = old_rows[slot]
            self._used += 1

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Register (key text, row) pairs in file order; returns {row: earlier row} for repeats."""
        while self._used + len(keys) > self._limit:
            self._grow()
        hashes, rows, mask = self._hashes, self._rows, self._mask
        repeats: dict[int, int] = {}
        added = 0
        for key, row in keys:
            h = hash(key) or 1
            i = h & mask
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
                i = (i + 1) & mask
        self._used += added
        return repeats
