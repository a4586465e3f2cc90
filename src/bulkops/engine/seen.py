"""Which natural keys a file has already shown, and on which row, in bounded memory.

A Python dict of a million keys costs ~100 MB; this open-addressing table keeps per key only
a 64-bit hash of its *folded* text (``str.casefold``: case twins share it), a 16-bit
fingerprint of its exact text and the row number (14 bytes a slot, filled to 85 %: ~17 MB at
a million keys). The runner reserves the room once, from the file's size, so the table does
not grow (and briefly double) while the file streams through.

A folded key seen before is either the same key again (a duplicate) or a *case twin* (the
same letters in another case): the fingerprints tell them apart. Keeping the earlier key's
text instead would cost its length for every key of the file; the caller names the earlier
spelling when that row is in the chunk at hand (see ``Evaluator.prepare``).

Two different keys with the same 64-bit hash would be reported as a repeat; for a file of a
million distinct keys the chance of that is about 3 in 100 million. A case twin whose
fingerprint matches the earlier spelling's (1 in 65,536) is reported as a plain duplicate:
still an error on the later row, naming the earlier row.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

__all__ = ["CaseTwinRow", "SeenKeys"]

_EMPTY = 0
_FINGERPRINT_MASK = 0xFFFF


class CaseTwinRow(int):
    """The earlier row of a repeated key whose spelling differs only by letter case."""

    __slots__ = ()


class SeenKeys:
    def __init__(self, capacity: int = 1 << 12) -> None:
        self._used = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        self._hashes = array("q", [_EMPTY]) * capacity
        self._fingerprints = array("H", [0]) * capacity
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
        old_hashes, old_fingerprints, old_rows = self._hashes, self._fingerprints, self._rows
        self._alloc(capacity)
        hashes, fingerprints, rows = self._hashes, self._fingerprints, self._rows
        for slot, h in enumerate(old_hashes):
            if h == _EMPTY:
                continue
            i = h % capacity
            while hashes[i] != _EMPTY:
                i = (i + 1) % capacity
            hashes[i] = h
            fingerprints[i] = old_fingerprints[slot]
            rows[i] = old_rows[slot]

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Register (key text, row) pairs in file order; returns {row: earlier row} for repeats.

        The earlier row is a :class:`CaseTwinRow` when the two keys differ only by letter
        case. Key texts are expected in NFC (as validation stores them).
        """
        if self._used + len(keys) > self._limit:
            self._rehash(max(self._capacity * 3 // 2, (self._used + len(keys)) * 20 // 17 + 1))
        hashes, fingerprints = self._hashes, self._fingerprints
        rows, capacity = self._rows, self._capacity
        repeats: dict[int, int] = {}
        added = 0
        for key, row in keys:
            h = hash(key.casefold()) or 1
            fingerprint = hash(key) & _FINGERPRINT_MASK
            i = h % capacity
            while True:
                current = hashes[i]
                if current == _EMPTY:
                    hashes[i] = h
                    fingerprints[i] = fingerprint
                    rows[i] = row
                    added += 1
                    break
                if current == h:
                    earlier = rows[i]
                    repeats[row] = (
                        earlier if fingerprints[i] == fingerprint else CaseTwinRow(earlier)
                    )
                    break
                i = (i + 1) % capacity
        self._used += added
        return repeats
