"""Entity rows of one organization: the per-chunk fast paths (``tx.rows``).

Reads come back as plain tuples with values as the engine compares them; batched writes
that break a constraint raise :class:`DuplicateRow`, and the engine retries per record.
How each database does it best is the dialect's (see dialects.py).

Case twins (keys that differ only by letter case) are found through the expression indexes
on ``lower()`` of each key's text parts (``ix_<table>_folded_key``, migration 0006). SQL's
``lower()`` is not the same everywhere: SQLite's lowers ASCII letters only, PostgreSQL's
follows the database's locale. :func:`lowered_spellings` sends every form ``lower()`` can
give for a twin, so the index finds the candidates on both; the engine then compares them
exactly (``str.casefold`` of the NFC form).

On PostgreSQL the index of products and warehouses (one-column keys) holds only the keys
with both upper- and lower-case ASCII letters, lowered as SQLite does (migration 0011): a key
in one letter case is found exactly, through the unique key's index (the dialect's
``case_twin_lookup``). An import of codes in one case then writes two B-trees, not three.
"""

from __future__ import annotations

import itertools
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bulkops.store.scoped import Scoped
from bulkops.store.tables import ENTITY_TABLES, natural_key

__all__ = ["RowStore", "lowered_spellings"]

_ASCII_LOWER: Final = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz"
)
#: Non-ASCII letters whose case variants are all tried (2 ** 4 = 16 spellings); a key with
#: more is looked up by its lower- and upper-case forms only.
_MAX_VARIED_LETTERS: Final = 4


def lowered_spellings(text: str) -> set[str]:
    """What SQL ``lower()`` may give for any case twin of ``text`` on either database.

    PostgreSQL (in a Unicode locale) lowers every letter: ``text.lower()``. SQLite lowers
    ASCII letters only, so a twin's other letters keep their case: each mix of their lower-
    and upper-case forms, ASCII-lowered. Each is also given decomposed (NFD), the form a key
    stored behind bulkops' back would most likely have instead of NFC.
    """
    lowered = text.lower()
    if text.isascii():
        return _sharp_s_spellings({lowered})
    cased = [i for i, c in enumerate(text) if not c.isascii() and c.lower() != c.upper()]
    choices: list[tuple[str, ...]] = [(c,) for c in text]
    for i in cased[:_MAX_VARIED_LETTERS]:
        choices[i] = (text[i].lower(), text[i].upper())
    spellings = {"".join(mix).translate(_ASCII_LOWER) for mix in itertools.product(*choices)}
    spellings |= {lowered, text.upper().translate(_ASCII_LOWER)}
    spellings = _sharp_s_spellings(spellings)
    return spellings | {unicodedata.normalize("NFD", s) for s in spellings}


def _sharp_s_spellings(spellings: set[str]) -> set[str]:
    """With ``ß`` for ``ss``: ``casefold`` makes them one, ``lower()`` does not.

    ``ß`` is the one letter of everyday keys whose folding is longer than itself (the
    others are ligatures such as ``ﬁ`` and rare letters: twins through those are not
    looked for). Up to two ``ss`` of a key are varied.
    """
    varied = set(spellings)
    for spelling in spellings:
        starts = [i for i in range(len(spelling) - 1) if spelling[i : i + 2] == "ss"][:2]
        for chosen in itertools.chain.from_iterable(
            itertools.combinations(starts, n) for n in range(1, len(starts) + 1)
        ):
            if any(b - a < 2 for a, b in itertools.pairwise(chosen)):
                continue  # "sss": overlapping pairs
            out, last = [], 0
            for start in chosen:
                out += [spelling[last:start], "\u00df"]
                last = start + 2
            varied.add("".join([*out, spelling[last:]]))
    return varied


class RowStore(Scoped):
    """The rows of the entity tables (``customers``, ``products``, …)."""

    __slots__ = ()

    def fetch_existing(
        self,
        entity: str,
        key: Sequence[str],
        fields: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
    ) -> dict[tuple[Any, ...], tuple[int, tuple[Any, ...]]]:
        """Current rows for these natural keys: key -> (id, field values in ``fields`` order)."""
        if not keys:
            return {}
        found = self.dialect.rows_by_keys(
            self.conn, self.org_id, entity, key, ("id", *fields), keys
        )
        positions = [fields.index(k) for k in key]
        result: dict[tuple[Any, ...], tuple[int, tuple[Any, ...]]] = {}
        for row in self.dialect.engine_rows(entity, fields, found):
            values = row[1:]
            result[tuple([values[p] for p in positions])] = (row[0], values)
        return result

    def case_twin_candidates(
        self, entity: str, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> list[tuple[int, tuple[Any, ...]]]:
        """Rows that may be case twins of ``keys``: (id, natural key), in one indexed query.

        Every text part is matched by ``lower()`` (its expression index), other parts
        exactly. The parts are matched each on its own, so a composite key may bring rows
        that match no key as a whole: the caller compares them.
        """
        if not keys:
            return []
        sql, params = self.case_twin_query(entity, key, keys)
        rows = self.dialect.select(self.conn, sql, params)
        return [(int(r[0]), tuple(r[1:])) for r in rows]

    def case_twin_query(
        self, entity: str, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]]:
        """The SQL of :meth:`case_twin_candidates` and its parameters (tests read its plan)."""
        table = ENTITY_TABLES[entity].name
        texts = [isinstance(part, str) for part in keys[0]]
        values: list[set[Any]] = [
            set().union(*(lowered_spellings(k[position]) for k in keys))
            if texts[position]
            else {k[position] for k in keys}
            for position in range(len(key))
        ]
        if len(key) == 1 and texts[0]:
            own = self.dialect.case_twin_lookup(table, key[0], self.org_id, values[0])
            if own is not None:
                return own
        conditions = [f"organization_id = {self.dialect.placeholder}"]
        params: list[Any] = [self.org_id]
        for position, column in enumerate(key):
            where, more = self.dialect.key_filter(
                (f"lower({column})" if texts[position] else column,),
                [(v,) for v in values[position]],
            )
            conditions.append(where)
            params.extend(more)
        # SQLite's planner, without statistics, prefers the unique key's index for the
        # organization alone and would scan all its rows: name the index (an error, not a
        # silent scan, if it could not serve). PostgreSQL chooses it by itself.
        hint = f" INDEXED BY ix_{table}_folded_key" if self.dialect.name == "sqlite" else ""
        sql = f"SELECT id, {', '.join(key)} FROM {table}{hint} WHERE {' AND '.join(conditions)}"
        return sql, tuple(params)

    def has_any(self, entity: str) -> bool:
        """Whether the organization has any row of ``entity``."""
        found = self.conn.exec_driver_sql(
            f"SELECT 1 FROM {ENTITY_TABLES[entity].name} "
            f"WHERE organization_id = {self.dialect.placeholder} LIMIT 1",
            (self.org_id,),
        ).first()
        return found is not None

    def existing_keys(
        self, entity: str, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        if not keys:
            return set()
        rows = self.dialect.rows_by_keys(self.conn, self.org_id, entity, key, key, keys)
        return {tuple(r) for r in rows}

    def count_referencing(self, entity: str, column: str, values: Sequence[Any]) -> dict[Any, int]:
        if not values:
            return {}
        where, params = self.dialect.key_filter((column,), [(v,) for v in values])
        sql = (
            f"SELECT {column}, count(*) FROM {entity} "
            f"WHERE organization_id = {self.dialect.placeholder} AND {where} GROUP BY {column}"
        )
        rows = self.dialect.select(self.conn, sql, (self.org_id, *params))
        return {r[0]: int(r[1]) for r in rows}

    def insert(
        self,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        ids: Sequence[int] | None = None,
        built: Any = None,
    ) -> list[int]:
        """Insert rows (values in ``fields`` order); returns their ids, in order.

        With ``ids`` the rows get exactly those ids (a rollback re-creating deleted rows).
        ``built``: what the dialect's ``batch_columns`` gave for the same rows, if anything.
        """
        if not rows:
            return []
        return self.dialect.insert_batch(
            self.conn, self.org_id, entity, fields, rows, ids, built
        )

    def insert_built(
        self, entity: str, fields: Sequence[str], built: Any, keys: Sequence[tuple[Any, ...]]
    ) -> list[int]:
        """Insert new rows as the dialect's ``batch_columns`` built them (their values are
        not at hand); ``keys``: their natural keys, in order. Returns their ids, in order."""
        if not keys:
            return []
        return self.dialect.insert_built(self.conn, self.org_id, entity, fields, built, keys)

    def update(
        self, entity: str, fields: Sequence[str], rows: Sequence[tuple[int, tuple[Any, ...]]]
    ) -> None:
        """Set the rows' values by id; ``fields`` include the natural key, which stays as it is.

        Records are matched by their natural key, so it never changes here. Leaving it out of
        ``SET`` spares the unique index: SQLite rewrites the index entry of a column that is
        set (this halved an update's writes), and PostgreSQL can update the row in place.
        """
        key = natural_key(entity)
        kept = [i for i, f in enumerate(fields) if f not in key]
        if not rows or not kept:
            return
        if len(kept) < len(fields):
            fields = [fields[i] for i in kept]
            rows = [(row_id, tuple([values[i] for i in kept])) for row_id, values in rows]
        self.dialect.update_batch(self.conn, self.org_id, entity, fields, rows)

    def delete(self, entity: str, ids: Sequence[int]) -> None:
        if not ids:
            return
        self.dialect.delete_batch(self.conn, self.org_id, entity, ids)

    @property
    def deletes_unchanged(self) -> bool:
        """Whether :meth:`delete_unchanged` can do its work here (else it returns None)."""
        return self.dialect.deletes_unchanged

    def delete_unchanged(
        self, entity: str, fields: Sequence[str], rows: Sequence[tuple[int, tuple[Any, ...]]]
    ) -> set[int] | None:
        """Delete, in one statement, each row (id, values in ``fields`` order) that still holds
        exactly these values; the ids deleted. None where the database cannot do it in one
        statement (SQLite, a few rows): nothing was deleted, read the rows and compare."""
        if not rows:
            return set()
        return self.dialect.delete_unchanged(self.conn, self.org_id, entity, fields, rows)

    def by_id(
        self, entity: str, fields: Sequence[str], ids: Sequence[int]
    ) -> dict[int, tuple[Any, ...]]:
        if not ids:
            return {}
        found = self.dialect.rows_by_keys(
            self.conn, self.org_id, entity, ("id",), ("id", *fields), [(i,) for i in ids]
        )
        return {r[0]: r[1:] for r in self.dialect.engine_rows(entity, fields, found)}

    def iter(
        self,
        entity: str,
        fields: Sequence[str],
        *,
        after_id: int = 0,
        limit: int = 5000,
        where: Mapping[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """A page of rows ordered by id: (id, *fields)."""
        ph = self.dialect.placeholder
        conditions = [f"{self.dialect.org_by_id} = {ph}", f"id > {ph}"]
        params: list[Any] = [self.org_id, after_id]
        for column, value in (where or {}).items():
            if column not in fields:
                raise ValueError(column)
            conditions.append(f"{column} = {ph}")
            params.append(value)
        sql = (
            f"SELECT id, {', '.join(fields)} FROM {entity} WHERE {' AND '.join(conditions)} "
            f"ORDER BY id LIMIT {int(limit)}"
        )
        self.dialect.walk_by_id(self.conn)
        rows = self.dialect.select(self.conn, sql, tuple(params))
        return self.dialect.engine_rows(entity, fields, rows)

    def count(self, entity: str, where: Mapping[str, Any] | None = None) -> int:
        """How many rows :meth:`iter` pages through with the same ``where``."""
        ph = self.dialect.placeholder
        conditions = [f"{self.dialect.org_by_id} = {ph}"]
        params: list[Any] = [self.org_id]
        for column, value in (where or {}).items():
            if column not in ENTITY_TABLES[entity].c:
                raise ValueError(column)
            conditions.append(f"{column} = {ph}")
            params.append(value)
        sql = f"SELECT count(*) FROM {entity} WHERE {' AND '.join(conditions)}"
        return int(self.dialect.select(self.conn, sql, tuple(params))[0][0])
