"""Which natural keys a file has already shown, and on which row, in bounded memory.

A Python dict of a million keys costs ~100 MB; this open-addressing table keeps per key only
a 64-bit hash of its *folded* text (``str.casefold``: case twins share it), a 16-bit
fingerprint of its exact text and the row number (14 bytes a slot, in a table of a prime
number of slots filled to at most 60 %: 24 MB at a million keys). The runner reserves the
room once, from the file's size, so the table does not grow (and briefly double) while the
file streams through.

A table for more than 50,000 keys (a large file's) is NumPy's, and a batch of keys is placed
all at once: each round looks at one slot of every key still unplaced, places those that
found an empty slot (one key a slot), answers those that found their own hash, and sends the
others on to their next slot (double hashing: the step comes from the hash, so keys that met
once part ways; the number of slots is prime, so every step reaches every slot). A round
reads only the hashes (8 bytes of the 14). The last few keys of a batch, and every key of a
smaller table (which then never imports NumPy, 0.1 s), are placed one by one in Python, on
the same slots. Measured: a million keys in chunks of 1,000 into a table reserved for them,
0.55 ms a chunk against 1.0 ms key by key; in the reader of a 1M-product file, whose other
work leaves less of the table in the caches, 1.0 against 1.9-2.4 ms.

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
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CaseTwinRow", "SeenKeys"]

_FINGERPRINT_MASK = 0xFFFF
#: The largest row a slot holds (32 bits): a file of more rows is far over any size limit.
_MAX_ROW = 2**32 - 1
#: The table holds at most this share of its slots (numerator, denominator).
_FILL = (3, 5)
#: Keys of a batch still unplaced when this few are left go one by one (a vectorised round
#: costs about as much as placing a few dozen keys in Python).
_FEW = 24
#: A table for more keys than this is NumPy's (a file this large pays the 0.1 s of its
#: import back many times); a smaller one is walked key by key in Python.
_VECTOR_KEYS = 50_000


def _room(keys: int) -> int:
    """The capacity that holds ``keys`` keys within the fill limit."""
    return keys * _FILL[1] // _FILL[0] + 1


def _prime_from(n: int) -> int:
    """The smallest prime of at least ``n`` (and at least 3)."""
    n = max(n, 3) | 1
    while any(n % d == 0 for d in range(3, int(n**0.5) + 1, 2)):
        n += 2
    return n


class CaseTwinRow(int):
    """The earlier row of a repeated key whose spelling differs only by letter case."""

    __slots__ = ()


class SeenKeys:
    def __init__(self, capacity: int = 1 << 12) -> None:
        self._np: Any = None
        self._used = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        capacity = _prime_from(capacity)
        # A slot: the folded hash (0: empty), the row, the fingerprint; an array each.
        if capacity < _room(_VECTOR_KEYS):
            self._hashes: Any = array("q", bytes(8 * capacity))
            self._rows: Any = array("I", bytes(4 * capacity))
            self._prints: Any = array("H", bytes(2 * capacity))
        else:
            if self._np is None:
                import numpy  # only for a large file: importing it takes 0.1 s

                self._np = numpy
            np = self._np
            self._hashes = np.zeros(capacity, dtype=np.int64)
            self._rows = np.zeros(capacity, dtype=np.uint32)
            self._prints = np.zeros(capacity, dtype=np.uint16)
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
        old = self._hashes, self._rows, self._prints
        self._alloc(capacity)
        self._used = 0
        if isinstance(self._hashes, array):
            self._place_each([(-1, h, r, f) for h, r, f in zip(*old, strict=True) if h], [], [], [])
            return
        np = self._np
        hashes = np.asarray(old[0], dtype=np.int64)
        kept = hashes != 0
        self._place(
            hashes[kept],
            np.asarray(old[1], dtype=np.uint32)[kept],
            np.asarray(old[2], dtype=np.uint16)[kept],
        )

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
        if self._used + count > self._limit:
            self._rehash(max(self._capacity * 3 // 2, _room(self._used + count)))
        if max(rows) > _MAX_ROW or min(rows) < 0:
            raise ValueError(f"a row number outside 0-{_MAX_ROW:,}")
        found_at: list[int] = []
        earlier: list[int] = []
        earlier_prints: list[int] = []
        np = self._np
        if isinstance(self._hashes, array):  # a small table: key by key
            keys = [
                (at, hash(text.casefold()) or 1, row, hash(text) & _FINGERPRINT_MASK)
                for at, (text, row) in enumerate(zip(texts, rows, strict=True))
            ]
            self._place_each(keys, found_at, earlier, earlier_prints)
            later_prints = [keys[at][3] for at in found_at]
        else:
            hashes = np.fromiter(map(hash, map(str.casefold, texts)), np.int64, count)
            hashes[hashes == 0] = 1  # 0 marks an empty slot
            prints = np.fromiter(map(hash, texts), np.int64, count) & _FINGERPRINT_MASK
            numbers = np.fromiter(rows, np.int64, count).astype(np.uint32)
            # A key that repeats within the batch walks the table in step with its first
            # occurrence, which takes the slot first (the earliest claim of a slot wins), and
            # is answered by it a round later.
            found_at, earlier, earlier_prints = self._place(
                hashes, numbers, prints.astype(np.uint16)
            )
            later_prints = prints[np.asarray(found_at, dtype=np.intp)].tolist()
        return {
            int(rows[at]): row if stored == later else CaseTwinRow(row)
            for at, row, stored, later in zip(
                found_at, earlier, earlier_prints, later_prints, strict=True
            )
        }

    def _place(
        self,
        hashes: np.ndarray[Any, Any],
        rows: np.ndarray[Any, Any],
        prints: np.ndarray[Any, Any],
    ) -> tuple[list[int], list[int], list[int]]:
        """Put the keys ``hashes`` with their ``rows`` and finger``prints`` where they are not
        yet; returns the positions in ``hashes`` of those that were, and the row and the
        fingerprint their slots hold. Of several equal hashes, the first takes the slot and
        the others find it."""
        np = self._np
        table, table_rows, table_prints = self._hashes, self._rows, self._prints
        capacity = self._capacity
        at = np.arange(len(hashes))
        index = hashes % capacity
        step = 1 + (hashes >> 32) % (capacity - 1)
        found: list[Any] = []
        placed = 0
        while len(at) > _FEW:
            current = table[index]
            settled = current == hashes
            if settled.any():
                slots = index[settled]
                found.append((at[settled], table_rows[slots], table_prints[slots]))
            empty = current == 0
            if empty.any():
                candidates = np.flatnonzero(empty)
                # One key a slot, the first to claim it: the others try it again (a key equal
                # to the first finds it there) or move on.
                _, first = np.unique(index[candidates], return_index=True)
                won = candidates[first]
                slots = index[won]
                table[slots] = hashes[won]
                table_rows[slots] = rows[won]
                table_prints[slots] = prints[won]
                placed += len(won)
                settled[won] = True
            moving = ~(settled | empty)
            index[moving] = (index[moving] + step[moving]) % capacity
            left = ~settled
            at, hashes, rows, prints, index, step = (
                at[left], hashes[left], rows[left], prints[left], index[left], step[left]
            )
        self._used += placed
        positions = [p for part in found for p in part[0].tolist()]
        earlier = [r for part in found for r in part[1].tolist()]
        earlier_prints = [f for part in found for f in part[2].tolist()]
        rest = zip(at.tolist(), hashes.tolist(), rows.tolist(), prints.tolist(), strict=True)
        self._place_each(list(rest), positions, earlier, earlier_prints)
        return positions, earlier, earlier_prints

    def _place_each(
        self,
        keys: Sequence[tuple[int, int, int, int]],
        positions: list[int],
        earlier: list[int],
        earlier_prints: list[int],
    ) -> None:
        """:meth:`_place` one key at a time: (position, hash, row, fingerprint) each, in
        order; a key found adds its position, earlier row and fingerprint to the lists."""
        table, table_rows, table_prints = self._hashes, self._rows, self._prints
        capacity = self._capacity
        for at, h, row, fingerprint in keys:
            i = h % capacity
            step = 1 + (h >> 32) % (capacity - 1)
            while True:
                current = int(table[i])
                if current == 0:
                    table[i], table_rows[i], table_prints[i] = h, row, fingerprint
                    self._used += 1
                    break
                if current == h:
                    positions.append(at)
                    earlier.append(int(table_rows[i]))
                    earlier_prints.append(int(table_prints[i]))
                    break
                i = (i + step) % capacity
