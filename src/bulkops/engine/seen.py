"""Which natural keys a file has already shown, and on which row, in bounded memory.

A Python dict of a million keys costs ~100 MB; this open-addressing table keeps per key only
a 64-bit hash of its *folded* text (``str.casefold``: case twins share it), a 16-bit
fingerprint of its exact text and the row number (16 bytes a slot, in a power-of-two table
filled to at most 60 %: 32 MB at a million keys). The runner reserves the room once, from
the file's size, so the table does not grow (and briefly double) while the file streams
through.

A batch of keys is placed with NumPy, all of its keys at once: each round looks at one slot
of every key still unplaced, places those that found an empty slot (one key a slot), answers
those that found their own hash, and sends the others on to their next slot (double hashing:
the step comes from the hash, so keys that met once part ways). The last few keys of a batch
are placed one by one. Measured: a million keys in chunks of 1,000 into a table reserved for
them, 0.6 ms a chunk against 1.0 ms for the same table walked key by key in Python; in the
reader of a 1M-product file, whose other work leaves less of the table in the caches, 1.0
against 1.9-2.4 ms.

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

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CaseTwinRow", "SeenKeys"]

_FINGERPRINT_MASK = 0xFFFF
#: The table holds at most this share of its slots (numerator, denominator).
_FILL = (3, 5)
#: Keys of a batch still unplaced when this few are left go one by one (a vectorised round
#: costs about as much as placing a few dozen keys in Python).
_FEW = 24
_SMALLEST = 8


def _room(keys: int) -> int:
    """The capacity (a power of two) that holds ``keys`` keys within the fill limit."""
    need = keys * _FILL[1] // _FILL[0] + 1
    return max(_SMALLEST, 1 << (need - 1).bit_length())


class CaseTwinRow(int):
    """The earlier row of a repeated key whose spelling differs only by letter case."""

    __slots__ = ()


class SeenKeys:
    def __init__(self, capacity: int = 1 << 12) -> None:
        import numpy  # here, not at the top: a command that reads no file starts without it

        self._np = numpy
        self._used = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        capacity = max(_SMALLEST, 1 << (capacity - 1).bit_length())
        # One slot is a row of two 64-bit words: the folded hash (0: empty), then the row and
        # the fingerprint packed as ``row << 16 | fingerprint``.
        self._slots = self._np.zeros((capacity, 2), dtype=self._np.int64)
        self._capacity = capacity
        self._mask = capacity - 1
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
        held = old[old[:, 0] != 0]
        self._alloc(capacity)
        self._place(held[:, 0].copy(), held[:, 1].copy())

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Register (key text, row) pairs in file order; returns {row: earlier row} for repeats.

        The earlier row is a :class:`CaseTwinRow` when the two keys differ only by letter
        case. Key texts are expected in NFC (as validation stores them).
        """
        return self._add([key for key, _ in keys], [row for _, row in keys])

    def check_and_add_columns(self, texts: Sequence[str], rows: Sequence[int]) -> dict[int, int]:
        """:meth:`check_and_add` of the keys ``texts`` on the rows ``rows`` (as long)."""
        if len(rows) != len(texts):
            raise ValueError(f"{len(texts)} keys, {len(rows)} rows")
        return self._add(texts, rows)

    def _add(self, texts: Sequence[str], rows: Sequence[int]) -> dict[int, int]:
        count = len(texts)
        if not count:
            return {}
        np = self._np
        if self._used + count > self._limit:
            self._rehash(max(self._capacity * 2, _room(self._used + count)))
        folded = np.fromiter(map(hash, map(str.casefold, texts)), np.int64, count)
        folded[folded == 0] = 1  # 0 marks an empty slot
        fingerprints = np.fromiter(map(hash, texts), np.int64, count) & _FINGERPRINT_MASK
        packed = np.fromiter(rows, np.int64, count) << 16 | fingerprints
        # A key that repeats within the batch walks the table in step with its first
        # occurrence, which takes the slot first (the earliest claim of a slot wins), and is
        # answered by it a round later.
        found_at, found = self._place(folded, packed)
        return {
            int(rows[at]): _earlier_row(value, int(packed[at]))
            for at, value in zip(found_at, found, strict=True)
        }

    def _place(
        self, hashes: np.ndarray[Any, Any], packed: np.ndarray[Any, Any]
    ) -> tuple[list[int], list[int]]:
        """Put the keys ``hashes`` with their ``packed`` rows where they are not yet; returns the
        positions in ``hashes`` of those that were, and what their slots hold. Of several
        equal hashes, the first takes the slot and the others find it."""
        np = self._np
        slots, mask = self._slots, self._mask
        at = np.arange(len(hashes))
        index = hashes & mask
        step = (hashes >> 32 | 1) & mask  # odd: the walk reaches every slot of the table
        found_at: list[Any] = []
        found: list[Any] = []
        placed = 0
        while len(at) > _FEW:
            current = slots[index, 0]
            settled = current == hashes
            if settled.any():
                found_at.append(at[settled])
                found.append(slots[index[settled], 1])
            empty = current == 0
            if empty.any():
                candidates = np.flatnonzero(empty)
                # One key a slot, the first to claim it: the others try it again (a key equal
                # to the first finds it there) or move on.
                _, first = np.unique(index[candidates], return_index=True)
                won = candidates[first]
                slots[index[won], 0] = hashes[won]
                slots[index[won], 1] = packed[won]
                placed += len(won)
                settled[won] = True
            moving = ~(settled | empty)
            index[moving] = (index[moving] + step[moving]) & mask
            left = ~settled
            at, hashes, packed, index, step = (
                at[left], hashes[left], packed[left], index[left], step[left]
            )
        hits = [a.tolist() for a in found_at]
        values = [v.tolist() for v in found]
        for a, h, p, i, s in zip(
            at.tolist(), hashes.tolist(), packed.tolist(), index.tolist(), step.tolist(),
            strict=True,
        ):
            while True:
                current = int(slots[i, 0])
                if current == 0:
                    slots[i, 0] = h
                    slots[i, 1] = p
                    placed += 1
                    break
                if current == h:
                    hits.append([a])
                    values.append([int(slots[i, 1])])
                    break
                i = (i + s) & mask
        self._used += placed
        return [a for part in hits for a in part], [v for part in values for v in part]


def _earlier_row(stored: int, later: int) -> int:
    """The earlier row a repeat names, from the two packed slots (a case twin's when the
    fingerprints differ)."""
    row = stored >> 16
    same = stored & _FINGERPRINT_MASK == later & _FINGERPRINT_MASK
    return row if same else CaseTwinRow(row)
