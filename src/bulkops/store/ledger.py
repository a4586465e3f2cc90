"""The chunk ledger and chunk plans (``tx.ledger``), and progress events (``tx.events``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson
from sqlalchemy import CTE, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from bulkops.errors import Conflict
from bulkops.store.clock import utcnow
from bulkops.store.scoped import Scoped
from bulkops.store.tables import operation_chunk_plans, operation_chunks, operation_events

# Built once: every chunk writes one, and building the statement (and its cache key) cost
# more than running it (the event's insert is built once too, by each dialect).
_INSERT_CHUNK = insert(operation_chunks)

__all__ = ["EventStore", "LedgerEntry", "LedgerStore", "ledger_cte"]


class LedgerEntry(NamedTuple):
    """A chunk's ledger row: which phase and chunk of the operation it commits."""

    phase: str
    chunk_index: int
    first_row: int | None
    last_row: int | None
    records: int
    worker: str | None = None

    def values(self, op_id: str, org_id: int) -> dict[str, Any]:
        """The row as ``operation_chunks`` columns."""
        return {
            "operation_id": op_id,
            "phase": self.phase,
            "chunk_index": self.chunk_index,
            "organization_id": org_id,
            "first_row": self.first_row,
            "last_row": self.last_row,
            "records": self.records,
            "committed_at": utcnow(),
            "worker": self.worker,
        }


def ledger_cte() -> CTE:
    """The ledger row's insert as a common table expression, for a statement that writes it
    on the side (PostgreSQL); its parameters are the columns prefixed with ``chunk_``."""
    columns = [c.name for c in operation_chunks.c]
    return (
        insert(operation_chunks)
        .values({name: bindparam(f"chunk_{name}") for name in columns})
        .cte("ledger_row")
    )


def already_committed(op_id: str, index: int) -> Conflict:
    """Another worker committed this chunk first: the transaction must not land."""
    return Conflict(f"Chunk {index} of operation {op_id} was already committed.")


class LedgerStore(Scoped):
    """Which chunks of an operation are committed, and the chunks planned for several workers."""

    __slots__ = ()

    def committed(self, op_id: str, phase: str) -> dict[int, int]:
        """chunk index -> records, for chunks of ``phase`` already committed."""
        rows = self.conn.execute(
            select(operation_chunks.c.chunk_index, operation_chunks.c.records).where(
                operation_chunks.c.operation_id == op_id,
                operation_chunks.c.phase == phase,
                operation_chunks.c.organization_id == self.org_id,
            )
        )
        return {int(r.chunk_index): int(r.records) for r in rows}

    def write(self, op_id: str, entry: LedgerEntry) -> None:
        """Record a chunk as committed (by the transaction writing this); Conflict when it is
        already. A chunk's counter update usually writes it (``OperationStore.advance``)."""
        try:
            self.conn.execute(_INSERT_CHUNK, entry.values(op_id, self.org_id))
        except IntegrityError as exc:
            raise already_committed(op_id, entry.chunk_index) from exc

    def workers(self, op_id: str, phase: str) -> dict[int, str | None]:
        """chunk index -> the process that applied it, for committed chunks of ``phase``."""
        c = operation_chunks.c
        rows = self.conn.execute(
            select(c.chunk_index, c.worker).where(
                c.operation_id == op_id, c.phase == phase, c.organization_id == self.org_id
            )
        )
        return {int(r.chunk_index): r.worker for r in rows}

    # -- chunks planned for several workers ----------------------------------------------------

    def add_plan(
        self,
        op_id: str,
        index: int,
        first_row: int,
        last_row: int,
        records: int,
        byte_count: int,
        payload: str,
    ) -> None:
        self.conn.execute(
            insert(operation_chunk_plans).values(
                operation_id=op_id,
                chunk_index=index,
                organization_id=self.org_id,
                first_row=first_row,
                last_row=last_row,
                records=records,
                byte_count=byte_count,
                payload=payload,
                created_at=utcnow(),
            )
        )

    def plans(self, op_id: str) -> list[dict[str, Any]]:
        """The chunks planned and not applied yet (without their records), by index."""
        c = operation_chunk_plans.c
        rows = self.conn.execute(
            select(c.chunk_index, c.lease_owner, c.lease_expires_at)
            .where(c.operation_id == op_id, c.organization_id == self.org_id)
            .order_by(c.chunk_index)
        )
        return [dict(r._mapping) for r in rows]

    def claim_plan(
        self, op_id: str, index: int, owner: str, lease_seconds: float
    ) -> dict[str, Any] | None:
        """Take the lease of a planned chunk (free, expired or already ours); None if taken."""
        c = operation_chunk_plans.c
        now = time.time()
        claimed = self.conn.execute(
            update(operation_chunk_plans)
            .where(
                c.operation_id == op_id,
                c.chunk_index == index,
                c.organization_id == self.org_id,
                c.lease_owner.is_(None) | (c.lease_expires_at < now) | (c.lease_owner == owner),
            )
            .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
        ).rowcount
        if not claimed:
            return None
        row = self.conn.execute(
            select(operation_chunk_plans).where(
                c.operation_id == op_id, c.chunk_index == index, c.organization_id == self.org_id
            )
        ).first()
        return dict(row._mapping) if row else None

    def delete_plans(self, op_id: str, index: int | None = None) -> None:
        """Forget one planned chunk (it was applied), or all of them (the operation ended)."""
        c = operation_chunk_plans.c
        conditions = [c.operation_id == op_id, c.organization_id == self.org_id]
        if index is not None:
            conditions.append(c.chunk_index == index)
        self.conn.execute(operation_chunk_plans.delete().where(*conditions))


def event_values(org_id: int, op_id: str, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``operation_events`` row of one event."""
    return {
        "organization_id": org_id,
        "operation_id": op_id,
        "event": name,
        "data": orjson.dumps(data, default=str).decode(),
        "created_at": utcnow(),
    }


class EventStore(Scoped):
    """Progress events of operations, as the SSE stream and the CLI read them."""

    __slots__ = ()

    def add(self, op_id: str, name: str, data: Mapping[str, Any]) -> int:
        return self.dialect.insert_event(self.conn, event_values(self.org_id, op_id, name, data))

    def after(self, op_id: str, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(operation_events.c.id, operation_events.c.event, operation_events.c.data)
            .where(
                operation_events.c.operation_id == op_id,
                operation_events.c.organization_id == self.org_id,
                operation_events.c.id > after_id,
            )
            .order_by(operation_events.c.id)
            .limit(limit)
        )
        return [{"id": r.id, "event": r.event, "data": orjson.loads(r.data)} for r in rows]

    def latest(self, op_id: str) -> dict[str, Any] | None:
        """The operation's newest event (id, event, data), or None: the SSE stream's start."""
        row = self.conn.execute(
            select(operation_events.c.id, operation_events.c.event, operation_events.c.data)
            .where(
                operation_events.c.operation_id == op_id,
                operation_events.c.organization_id == self.org_id,
            )
            .order_by(operation_events.c.id.desc())
            .limit(1)
        ).first()
        return {"id": row.id, "event": row.event, "data": orjson.loads(row.data)} if row else None
