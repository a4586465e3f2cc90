"""The plans of validate_only operations, one row per chunk (``tx.plans``).

A chunk's records that would change are stored as ONE row of ``operation_plans`` (one
``orjson.dumps`` of column arrays, see tables.py), like the audit; pages expand them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import orjson
from sqlalchemy import delete, func, select

from bulkops.store.scoped import Scoped
from bulkops.store.tables import operation_plans

__all__ = ["PlanChunk", "PlanImages", "PlanStore", "decode_plan"]

_COUNT_COLUMN = {"create": "creates", "update": "updates", "delete": "deletes"}


class PlanImages(TypedDict):
    """A chunk's plan as stored: the entity's fields and key, and per action the records'
    rows and images (``[row, values]`` for a create, ``[row, before, after]`` for an update,
    ``[row, before]`` for a delete), each list in row order. Which fields an update changes
    is worked out when the plan is read, not while the check runs."""

    fields: list[str]
    key: list[str]
    creates: list[Any]
    updates: list[Any]
    deletes: list[Any]


@dataclass(frozen=True, slots=True)
class PlanChunk:
    """One stored chunk of a plan, decoded: parallel lists, one item per changing record.

    ``actions`` holds one letter per record (c, u, d); ``changes`` per record a list of
    ``[field, current, new]``.
    """

    index: int
    first_row: int
    last_row: int
    rows: list[int]
    actions: str
    keys: list[list[Any]]
    changes: list[list[list[Any]]]

    def __len__(self) -> int:
        return len(self.rows)


class PlanStore(Scoped):
    """The ``operation_plans`` rows of one organization."""

    __slots__ = ()

    def insert(
        self,
        op_id: str,
        index: int,
        first_row: int,
        last_row: int,
        plan: PlanImages,
    ) -> None:
        """One chunk's plan, as the check decided it: its images, diffed when read."""
        payload = orjson.dumps(plan).decode()
        ph = self.dialect.placeholder
        self.conn.exec_driver_sql(
            "INSERT INTO operation_plans (operation_id, chunk_index, organization_id, "
            "first_row, last_row, creates, updates, deletes, payload) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
            (
                op_id,
                index,
                self.org_id,
                first_row,
                last_row,
                len(plan["creates"]),
                len(plan["updates"]),
                len(plan["deletes"]),
                payload,
            ),
        )

    def delete(self, op_id: str) -> None:
        """Forget an operation's plan (a check that starts its pass again)."""
        c = operation_plans.c
        self.conn.execute(
            delete(operation_plans).where(
                c.operation_id == op_id, c.organization_id == self.org_id
            )
        )

    def chunks(
        self,
        op_id: str,
        *,
        from_index: int = 0,
        action: str | None = None,
        limit: int = 1,
    ) -> list[PlanChunk]:
        """Chunks from ``from_index`` (inclusive) on, in order; with ``action``, only chunks
        that hold at least one record of it."""
        c = operation_plans.c
        conditions = [
            c.operation_id == op_id,
            c.organization_id == self.org_id,
            c.chunk_index >= from_index,
        ]
        if action is not None:
            conditions.append(getattr(c, _COUNT_COLUMN[action]) > 0)
        rows = self.conn.execute(
            select(c.chunk_index, c.first_row, c.last_row, c.payload)
            .where(*conditions)
            .order_by(c.chunk_index)
            .limit(limit)
        )
        return [self._decode(r) for r in rows]

    def chunk(self, op_id: str, index: int) -> PlanChunk | None:
        found = self.chunks(op_id, from_index=index, limit=1)
        return found[0] if found and found[0].index == index else None

    def counts(self, op_id: str) -> dict[str, int]:
        """How many records of each action the plan holds."""
        c = operation_plans.c
        row = self.conn.execute(
            select(
                func.coalesce(func.sum(c.creates), 0),
                func.coalesce(func.sum(c.updates), 0),
                func.coalesce(func.sum(c.deletes), 0),
            ).where(c.operation_id == op_id, c.organization_id == self.org_id)
        ).one()
        return {"create": int(row[0]), "update": int(row[1]), "delete": int(row[2])}

    @staticmethod
    def _decode(row: Any) -> PlanChunk:
        return decode_plan(
            int(row.chunk_index), int(row.first_row), int(row.last_row), orjson.loads(row.payload)
        )


def decode_plan(index: int, first_row: int, last_row: int, doc: PlanImages) -> PlanChunk:
    """A stored chunk in row order, each record with its key and changed fields."""
    fields = doc["fields"]
    key_at = [fields.index(name) for name in doc["key"]]
    records: list[tuple[int, str, list[Any], list[list[Any]]]] = []
    for row, values in doc["creates"]:
        changes = [[n, None, v] for n, v in zip(fields, values, strict=True) if v not in (None, "")]
        records.append((row, "c", [values[i] for i in key_at], changes))
    for row, before, after in doc["updates"]:
        changes = [[n, o, v] for n, o, v in zip(fields, before, after, strict=True) if o != v]
        records.append((row, "u", [before[i] for i in key_at], changes))
    for row, before in doc["deletes"]:
        records.append((row, "d", [before[i] for i in key_at], []))
    records.sort(key=lambda record: record[0])
    return PlanChunk(
        index=index,
        first_row=first_row,
        last_row=last_row,
        rows=[r[0] for r in records],
        actions="".join(r[1] for r in records),
        keys=[r[2] for r in records],
        changes=[r[3] for r in records],
    )
