"""Finding case twins a database already holds (``bulkops doctor``).

Imports refuse a new key that differs from an existing one only by letter case or by its
Unicode form (see :mod:`bulkops.engine.plan`), but a database may hold such twins from
before, or from rows written behind bulkops' back. They keep working (each is updated by its
exact key); :func:`find_key_twins` lists them, group by group with their ids, so an
administrator can merge them.

Each entity table is read once, page by page. The folded keys go through a
:class:`~bulkops.engine.seen.SeenKeys` table (14 bytes a key, plus 8 for its id) instead of
a dict of every key; only the rows it reports as repeats are read again, by id, and
compared exactly (which also drops the rare hash collision).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any

from bulkops.engine.operations import Context
from bulkops.engine.seen import SeenKeys
from bulkops.entities import SPECS
from bulkops.entities.keys import KEY_PART_SEPARATOR, folded, nfc
from bulkops.errors import NotFound
from bulkops.model import EntityType

__all__ = ["KeyTwins", "find_key_twins"]

_PAGE = 5000


@dataclass(frozen=True, slots=True)
class KeyTwins:
    """Rows of one entity whose keys differ only by letter case or Unicode form (NFC)."""

    organization: str  # its slug
    entity: EntityType
    key: tuple[str, ...]  # the key's field names
    rows: tuple[tuple[int, tuple[Any, ...]], ...]  # (id, key values), oldest first

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization": self.organization,
            "entity": self.entity.value,
            "rows": [
                {"id": row_id, **dict(zip(self.key, values, strict=True))}
                for row_id, values in self.rows
            ],
        }


def find_key_twins(ctx: Context, org_slug: str | None = None) -> list[KeyTwins]:
    """Every group of twin keys, per organization (all, or ``org_slug``'s) and entity."""
    organizations = ctx.store.accounts.list_organizations()
    if org_slug is not None:
        organizations = [o for o in organizations if o["slug"] == org_slug]
        if not organizations:
            raise NotFound(f"There is no organization '{org_slug}'.")
    found: list[KeyTwins] = []
    for organization in organizations:
        for entity, spec in SPECS.items():
            groups = _twins_of(ctx, int(organization["id"]), entity.value, spec.key)
            found += [KeyTwins(organization["slug"], entity, spec.key, g) for g in groups]
    return found


def _twins_of(
    ctx: Context, org_id: int, entity: str, key: tuple[str, ...]
) -> list[tuple[tuple[int, tuple[Any, ...]], ...]]:
    ids = array("q")
    repeats: dict[int, int] = {}  # position of a repeat -> position of its first spelling
    with ctx.store.transaction(org_id) as tx, SeenKeys() as seen:
        seen.reserve(tx.rows.count(entity))
        after_id = 0
        while page := tx.rows.iter(entity, key, after_id=after_id, limit=_PAGE):
            texts = []
            for row in page:
                ids.append(row[0])
                # Positions start at 1: SeenKeys stores them as rows (0 is never a row).
                texts.append((KEY_PART_SEPARATOR.join([nfc(str(v)) for v in row[1:]]), len(ids)))
            repeats.update(seen.check_and_add(texts))
            after_id = page[-1][0]
        if not repeats:
            return []
        wanted = {ids[p - 1] for pair in repeats.items() for p in pair}
        keys = tx.rows.by_id(entity, key, sorted(wanted))
    by_fold: dict[str, list[tuple[int, tuple[Any, ...]]]] = {}
    for row_id in sorted(keys):
        by_fold.setdefault(folded(keys[row_id]), []).append((row_id, keys[row_id]))
    return [tuple(rows) for rows in by_fold.values() if len(rows) > 1]
