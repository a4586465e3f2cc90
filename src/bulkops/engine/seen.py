"""Which natural keys a file has already shown, and on which row, in bounded memory.

A Python dict of a million keys costs ~100 MB; this open-addressing table keeps per key only
a 64-bit hash of its *folded* text (``str.casefold``: case twins share it), a 16-bit
fingerprint of its exact text and the row number (16 bytes a slot, filled to at most 60 %:
~27 MB at a million keys). Fuller, the probes grow longer: filled to 85 % (19 MB), a million
keys took 0.71 s instead of 0.62 s (measured). The runner reserves the room once, from the
file's size, so the table does not grow (and briefly double) while the file streams through.

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
from collections.abc import Iterable, Sequence

__all__ = ["CaseTwinRow", "SeenKeys"]

_EMPTY = 0
_FINGERPRINT_MASK = 0xFFFF
#: The table holds at most this share of its slots (numerator, denominator).
_FILL = (3, 5)


def _room(keys: int) -> int:
    """The capacity that holds ``keys`` keys within the fill limit."""
    return keys * _FILL[1] // _FILL[0] + 1


class CaseTwinRow(int):
    """The earlier row of a repeated key whose spelling differs only by letter case."""

    __slots__ = ()


class SeenKeys:
    def __init__(self, capacity: int = 1 << 12) -> None:
        self._used = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        # One slot is two neighbouring 64-bit words: the folded hash, then the row and the
        # fingerprint packed as ``row << 16 | fingerprint``. A key's look-up then touches
        # one place in memory, not one in each of three arrays: at a million keys the table
        # is far larger than the processor's caches (measured in the reader of a 1M-row
        # import: 3.8 s for its keys with three arrays, 3.1 s with one).
        self._slots = array("q", [_EMPTY]) * (2 * capacity)
        self._capacity = capacity
        self._limit = capacity * _FILL[0] // _FILL[1]

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *_: object) -> None:
        self._alloc(1)

    def reserve(self, keys: int) -> None:
        """Make room for ``keys`` keys in all (an estimate; the table still grows if needed)."""
        if keys > self._limit:
            self._rehash(_room(keys))

    def _rehash(self, capacity: int) -> None:
        old = self._slots
        self._alloc(capacity)
        slots, end = self._slots, 2 * capacity
        for at in range(0, len(old), 2):
            h = old[at]
            if h == _EMPTY:
                continue
            i = (h % capacity) << 1
            while slots[i] != _EMPTY:
                i += 2
                if i == end:
                    i = 0
            slots[i] = h
            slots[i + 1] = old[at + 1]

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Register (key text, row) pairs in file order; returns {row: earlier row} for repeats.

        The earlier row is a :class:`CaseTwinRow` when the two keys differ only by letter
        case. Key texts are expected in NFC (as validation stores them).
        """
        return self._add(keys, len(keys))

    def check_and_add_columns(self, texts: Sequence[str], rows: Sequence[int]) -> dict[int, int]:
        """:meth:`check_and_add` of the keys ``texts`` on the rows ``rows`` (as long)."""
        if len(rows) != len(texts):
            raise ValueError(f"{len(texts)} keys, {len(rows)} rows")
        return self._add(zip(texts, rows), len(texts))  # noqa: B905 - as long, checked above

    def _add(self, keys: Iterable[tuple[str, int]], count: int) -> dict[int, int]:
        if self._used + count > self._limit:
            self._rehash(max(self._capacity * 3 // 2, _room(self._used + count)))
        slots, capacity = self._slots, self._capacity
        end = 2 * capacity
        repeats: dict[int, int] = {}
        added = 0
        # One plain loop: measured against hashing, placing and packing a whole batch in C
        # (map over built-in callables), it takes half the time, since every step of the
        # batched form makes a new 64-bit int for each key.
        for key, row in keys:
            h = hash(key.casefold()) or 1
            i = (h % capacity) << 1
            while True:
                current = slots[i]
                if current == _EMPTY:
                    slots[i] = h
                    slots[i + 1] = row << 16 | (hash(key) & _FINGERPRINT_MASK)
                    added += 1
                    break
                if current == h:
                    packed = slots[i + 1]
                    earlier = packed >> 16
                    same = packed & _FINGERPRINT_MASK == hash(key) & _FINGERPRINT_MASK
                    repeats[row] = earlier if same else CaseTwinRow(earlier)
                    break
                i += 2
                if i == end:
                    i = 0
        self._used += added
        return repeats
