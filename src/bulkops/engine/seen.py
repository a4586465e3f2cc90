"""Which natural keys a file has already shown, and on which row: memory that does not grow.

A 1M-row file's keys would cost ~100 MB as a Python dict, so they live in a scratch SQLite
file keyed by a 64-bit hash (rows with a colliding hash but a different key are kept aside).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Sequence

import orjson

__all__ = ["SeenKeys"]


class SeenKeys:
    def __init__(self) -> None:
        fd, self._path = tempfile.mkstemp(prefix="bulkops-keys-", suffix=".sqlite")
        os.close(fd)
        self._db = sqlite3.connect(self._path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("PRAGMA cache_size=-16000")  # 16 MB at most
        self._db.execute("CREATE TABLE seen (h INTEGER PRIMARY KEY, k TEXT NOT NULL, row INTEGER)")
        self._collided: dict[str, int] = {}

    def close(self) -> None:
        self._db.close()
        os.unlink(self._path)

    def __enter__(self) -> SeenKeys:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]:
        """Register (key text, row) pairs in file order; returns {row: earlier row} for repeats."""
        repeats: dict[int, int] = {}
        first_in_chunk: dict[str, int] = {}
        for key, row in keys:
            if key in first_in_chunk:
                repeats[row] = first_in_chunk[key]
            else:
                first_in_chunk[key] = row
        hashes = {hash(k): k for k in first_in_chunk}
        if len(hashes) < len(first_in_chunk):  # two keys of this chunk share a hash
            for key in first_in_chunk:
                if hashes.get(hash(key)) != key:
                    self._collided.setdefault(key, first_in_chunk[key])
        found = self._db.execute(
            "SELECT h, k, row FROM seen WHERE h IN (SELECT value FROM json_each(?))",
            (orjson.dumps(list(hashes)).decode(),),
        ).fetchall()
        known = {h: (k, row) for h, k, row in found}
        new_rows = []
        for h, key in hashes.items():
            row = first_in_chunk[key]
            if h in known:
                earlier_key, earlier_row = known[h]
                if earlier_key == key:
                    repeats[row] = earlier_row
                elif key in self._collided and self._collided[key] != row:
                    repeats[row] = self._collided[key]
                else:
                    self._collided.setdefault(key, row)
            elif key in self._collided and self._collided[key] != row:
                repeats[row] = self._collided[key]
            else:
                new_rows.append((h, key, row))
        self._db.execute("BEGIN")
        self._db.executemany("INSERT INTO seen VALUES (?, ?, ?)", new_rows)
        self._db.execute("COMMIT")
        return repeats
