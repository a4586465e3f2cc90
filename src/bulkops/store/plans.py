"""The plans of validate_only operations, one row per chunk (``tx.plans``).

A chunk's records that would change are stored as ONE row of ``operation_plans`` (one
``orjson.dumps`` of column arrays, see tables.py), like the audit; pages expand them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, select

from bulkops.store.scoped import Scoped
from bulkops.store.tables import operation_plans

__all__ = ["PlanChunk", "PlanStore"]

_COUNT_COLUMN = {"create": "creates", "update": "updates", "delete": "deletes"}


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
        rows: Sequence[int],
        actions: str,
        keys: Sequence[Sequence[Any]],
        changes: Sequence[Sequence[Sequence[Any]]],
    ) -> None:
        payload = orjson.dumps(
            {"rows": rows, "actions": actions, "keys": keys, "changes": changes}
        ).decode()
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
                actions.count("c"),
                actions.count("u"),
                actions.count("d"),
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
        doc = orjson.loads(row.payload)
        return PlanChunk(
            index=int(row.chunk_index),
            first_row=int(row.first_row),
            last_row=int(row.last_row),
            rows=doc["rows"],
            actions=doc["actions"],
            keys=doc["keys"],
            changes=doc["changes"],
        )
