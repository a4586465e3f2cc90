"""Operation rows and their leases, within one organization (``tx.operations``)."""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    RowMapping,
    Update,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from bulkops.errors import NotFound
from bulkops.model import Operation, OperationStatus, Outcome
from bulkops.store.clock import aware
from bulkops.store.errors import DuplicateRow
from bulkops.store.ledger import LedgerEntry, LedgerStore, already_committed, ledger_cte
from bulkops.store.scoped import Scoped
from bulkops.store.tables import operation_chunk_plans, operations

__all__ = ["ACTIVE_STATUSES", "Competitor", "OperationStore", "OperationTotals"]

ACTIVE_STATUSES = tuple(status.value for status in OperationStatus if status.is_active)
"""Statuses of an operation that a process is working on (under its lease)."""


class Competitor(NamedTuple):
    """Another operation of the same entity, as the start rule needs to see it."""

    id: str
    status: OperationStatus
    lease_expires_at: float | None
    created_at: datetime


class OperationTotals(NamedTuple):
    """What the operations started in a period did, summed by the database."""

    operations: int
    changed_records: int
    failed_records: int


_ADVANCES: dict[tuple[tuple[str, ...], tuple[str, ...], bool, bool], Update] = {}
_COLUMNS = tuple(c.name for c in operations.c)
"""The columns the counter update returns, in order."""


def _advance_statement(
    added: tuple[str, ...], given: tuple[str, ...], held: bool, ledger: bool
) -> Update:
    """The counter update of :meth:`OperationStore.advance`, built once per shape: every
    chunk runs one, and building it (and its cache key) cost more than running it. With
    ``ledger``, the statement writes the chunk's ledger row too (:func:`ledger_cte`)."""
    key = (added, given, held, ledger)
    statement = _ADVANCES.get(key)
    if statement is None:
        c = operations.c
        conditions = [c.id == bindparam("op_id"), c.organization_id == bindparam("org_id")]
        if held:
            conditions.append(c.lease_owner == bindparam("owner"))
        changes: dict[str, Any] = {name: c[name] + bindparam(f"add_{name}") for name in added}
        changes.update({name: bindparam(f"set_{name}", type_=c[name].type) for name in given})
        statement = update(operations).where(*conditions).values(changes).returning(*c)
        if ledger:
            statement = statement.add_cte(ledger_cte())
        _ADVANCES[key] = statement
    return statement


def _operation(mapping: RowMapping | Mapping[str, Any]) -> Operation:
    return Operation.from_row({k: aware(v) for k, v in mapping.items()})


def advance_call(
    org_id: int,
    op_id: str,
    owner: str | None,
    deltas: Mapping[str, int],
    ledger: LedgerEntry | None,
    values: Mapping[str, Any],
) -> tuple[Update, dict[str, Any]]:
    """The statement of :meth:`OperationStore.advance` and its parameters; with ``ledger``,
    it writes the chunk's ledger row too (a database that writes in a CTE)."""
    added = tuple(name for name, delta in deltas.items() if delta)
    params: dict[str, Any] = {"op_id": op_id, "org_id": org_id, "owner": owner}
    params.update({f"add_{name}": deltas[name] for name in added})
    params.update({f"set_{name}": value for name, value in values.items()})
    if ledger is not None:
        params.update({f"chunk_{k}": v for k, v in ledger.values(op_id, org_id).items()})
    statement = _advance_statement(added, tuple(values), owner is not None, ledger is not None)
    return statement, params


def operation_of(row: Sequence[Any] | None) -> Operation | None:
    """The operation a counter update returned (its columns in table order), if any."""
    return _operation(dict(zip(_COLUMNS, row, strict=True))) if row else None


class OperationStore(Scoped):
    """The ``operations`` rows of one organization."""

    __slots__ = ()

    def insert(self, values: Mapping[str, Any]) -> None:
        row = dict(values)  # the counters start at their columns' default, 0
        row["organization_id"] = self.org_id
        self.conn.execute(insert(operations).values(**row))

    def get(self, op_id: str) -> Operation | None:
        row = self.conn.execute(
            select(operations).where(
                operations.c.id == op_id, operations.c.organization_id == self.org_id
            )
        ).first()
        return _operation(row._mapping) if row else None

    def starting_with(self, prefix: str, limit: int) -> builtins.list[Operation]:
        """Operations whose id starts with ``prefix``, newest first (at most ``limit``)."""
        c = operations.c
        rows = self.conn.execute(
            select(operations)
            .where(c.organization_id == self.org_id, c.id.startswith(prefix, autoescape=True))
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        return [_operation(r._mapping) for r in rows]

    def require(self, op_id: str) -> Operation:
        """The operation, or NotFound (another organization's operation is not found either)."""
        found = self.get(op_id)
        if found is None:
            raise NotFound(f"No operation {op_id}.")
        return found

    def find_by_idempotency_key(self, key: str) -> Operation | None:
        row = self.conn.execute(
            select(operations.c.id).where(
                operations.c.idempotency_key == key, operations.c.organization_id == self.org_id
            )
        ).first()
        return self.get(row.id) if row else None

    def idempotency_entry(self, key: str) -> tuple[Operation, str | None] | None:
        """The operation holding ``key`` and the fingerprint of the request that made it."""
        row = self.conn.execute(
            select(operations).where(
                operations.c.idempotency_key == key, operations.c.organization_id == self.org_id
            )
        ).first()
        if row is None:
            return None
        return _operation(row._mapping), row.idempotency_fingerprint

    def release_idempotency_key(self, op_id: str) -> None:
        """Forget an expired key, so that a new operation may hold it (the key is unique)."""
        self.update(op_id, {"idempotency_key": None, "idempotency_fingerprint": None})

    def update(self, op_id: str, values: Mapping[str, Any]) -> None:
        self.conn.execute(
            update(operations)
            .where(operations.c.id == op_id, operations.c.organization_id == self.org_id)
            .values(**values)
        )

    def advance(
        self,
        op_id: str,
        owner: str | None,
        deltas: Mapping[str, int],
        *,
        ledger: LedgerEntry | None = None,
        **values: Any,
    ) -> Operation | None:
        """Add to counters (and set ``values``), if ``owner`` holds the lease (if given).

        Returns the operation as it is after the update, or None when ``owner`` no longer
        holds it (or it is gone). One statement: the row it returns is read under the
        update's lock, so a cancel committed before it shows, and none can slip in after.
        ``ledger``: the ledger row of the chunk this update counts, written in the same
        statement where the database can (one statement a chunk fewer); Conflict when that
        chunk is committed already.
        """
        together = ledger is not None and self.dialect.writes_in_cte
        if ledger is not None and not together:
            LedgerStore(self.conn, self.dialect, self.org_id).write(op_id, ledger)
        statement, params = advance_call(
            self.org_id, op_id, owner, deltas, ledger if together else None, values
        )
        try:
            row = self.dialect.returning_row(self.conn, statement, params)
        except DuplicateRow as exc:
            if ledger is None or not together:
                raise
            raise already_committed(op_id, ledger.chunk_index) from exc
        return operation_of(row)

    def orphaned(self) -> builtins.list[str]:
        """Ids of operations left processing or rolling back by a process whose lease expired."""
        rows = self.conn.execute(
            select(operations.c.id)
            .where(
                operations.c.organization_id == self.org_id,
                operations.c.status.in_(ACTIVE_STATUSES),
                (operations.c.lease_expires_at.is_(None))
                | (operations.c.lease_expires_at < time.time()),
            )
            .order_by(operations.c.created_at)
        )
        return [r.id for r in rows]

    # -- scheduling primitives (the rule is bulkops.engine.scheduling) -------------------------

    def lock_entity(self, entity: str) -> None:
        """Serialize, until this transaction ends, every decision to start work on ``entity``."""
        self.dialect.lock_entity(self.conn, self.org_id, entity)

    def competing(self, op_id: str, entity: str) -> builtins.list[Competitor]:
        """Other pending or active operations writing ``entity`` (exports write nothing)."""
        c = operations.c
        rows = self.conn.execute(
            select(c.id, c.status, c.lease_expires_at, c.created_at).where(
                c.organization_id == self.org_id,
                c.entity_type == entity,
                c.operation_type != "export",
                c.id != op_id,
                c.status.in_(("pending", *ACTIVE_STATUSES)),
            )
        )
        return [
            Competitor(r.id, OperationStatus(r.status), r.lease_expires_at, aware(r.created_at))
            for r in rows
        ]

    # -- leases --------------------------------------------------------------------------------

    def renew_lease(self, op_id: str, owner: str, lease_seconds: float) -> None:
        self.update(op_id, {"lease_owner": owner, "lease_expires_at": time.time() + lease_seconds})

    def lease_owners(self) -> set[str]:
        """Who holds a lease in this organization: on running operations and planned chunks."""
        ops = self.conn.execute(
            select(operations.c.lease_owner).where(
                operations.c.organization_id == self.org_id,
                operations.c.status.in_(ACTIVE_STATUSES),
                operations.c.lease_owner.is_not(None),
                operations.c.lease_expires_at > time.time(),
            )
        )
        plans = self.conn.execute(
            select(operation_chunk_plans.c.lease_owner).where(
                operation_chunk_plans.c.organization_id == self.org_id,
                operation_chunk_plans.c.lease_owner.is_not(None),
                operation_chunk_plans.c.lease_expires_at > time.time(),
            )
        )
        return {r[0] for r in ops} | {r[0] for r in plans}

    def expire_leases(self, owners: Sequence[str]) -> int:
        """End every lease these owners hold now (they are known to be dead)."""
        if not owners:
            return 0
        expired = self.conn.execute(
            update(operations)
            .where(
                operations.c.organization_id == self.org_id,
                operations.c.lease_owner.in_(owners),
                operations.c.status.in_(ACTIVE_STATUSES),
            )
            .values(lease_expires_at=0.0)
        ).rowcount
        expired += self.conn.execute(
            update(operation_chunk_plans)
            .where(
                operation_chunk_plans.c.organization_id == self.org_id,
                operation_chunk_plans.c.lease_owner.in_(owners),
            )
            .values(lease_expires_at=0.0)
        ).rowcount
        return int(expired)

    def list(
        self,
        *,
        status: Sequence[str] = (),
        operation_type: Sequence[str] = (),
        entity_type: Sequence[str] = (),
        created_by: int | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        query: str | None = None,
        outcome: Sequence[Outcome] = (),
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> builtins.list[Operation]:
        """Newest first; ``before`` is the (created_at, id) of the last row of the previous page."""
        c = operations.c
        conditions = [c.organization_id == self.org_id]
        if status:
            conditions.append(c.status.in_(status))
        if operation_type:
            conditions.append(c.operation_type.in_(operation_type))
        if entity_type:
            conditions.append(c.entity_type.in_(entity_type))
        if created_by is not None:
            conditions.append(c.created_by == created_by)
        if created_after is not None:
            conditions.append(c.created_at >= created_after)
        if created_before is not None:
            conditions.append(c.created_at < created_before)
        if query:
            pattern = (
                "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            conditions.append(c.file_name.ilike(pattern, escape="\\") | (c.id == query))
        if outcome:
            conditions.append(or_(*(_outcome_is(o) for o in outcome)))
        if before is not None:
            at, op_id = before
            conditions.append((c.created_at < at) | and_(c.created_at == at, c.id < op_id))
        rows = self.conn.execute(
            select(operations)
            .where(*conditions)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        return [_operation(r._mapping) for r in rows]


    def totals(self, created_after: datetime) -> OperationTotals:
        """How many operations were started since ``created_after``, how many records they
        created, updated or deleted (less those a rollback restored) and how many failed:
        one aggregate query on the organization's created_at index. A check changed nothing
        and its failures are predictions, so it counts as an operation only."""
        c = operations.c
        real = c.validate_only.is_(False)
        # What a rollback restored is no longer changed.
        changed = (
            c.created_records + c.updated_records + c.deleted_records - c.rolled_back_records
        )
        row = self.conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((real, changed), else_=0)), 0),
                func.coalesce(func.sum(case((real, c.failed_records), else_=0)), 0),
            ).where(c.organization_id == self.org_id, c.created_at >= created_after)
        ).one()
        return OperationTotals(int(row[0]), int(row[1]), int(row[2]))


def _outcome_is(outcome: Outcome) -> ColumnElement[bool]:
    """The SQL form of :attr:`Operation.outcome` being ``outcome``."""
    c = operations.c
    completed = c.status == OperationStatus.COMPLETED.value
    match outcome:
        case Outcome.CHECKED:
            return and_(completed, c.validate_only.is_(True))
        case Outcome.SUCCEEDED:
            return and_(completed, c.validate_only.is_(False), c.failed_records == 0)
        case Outcome.COMPLETED_WITH_ERRORS:
            return and_(completed, c.validate_only.is_(False), c.failed_records > 0)
        case Outcome.FAILED:
            return c.status == OperationStatus.FAILED.value
        case Outcome.CANCELLED:
            return c.status == OperationStatus.CANCELLED.value
        case Outcome.ROLLED_BACK:
            return c.status == OperationStatus.ROLLED_BACK.value
