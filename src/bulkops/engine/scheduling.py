"""When an operation may start: one writer per (organization, entity), in order of creation.

The store offers the primitives (lock the entity, the competing operations, the update
that takes the lease); the rule is here.
"""

from __future__ import annotations

import time
from typing import Any

from bulkops.engine.operations import Context
from bulkops.model import Operation, OperationStatus, OperationType
from bulkops.store import Competitor, Store, utcnow

__all__ = ["blocker", "may_start", "try_start"]


def may_start(op: Operation, competing: list[Competitor], owner: str, now: float) -> bool:
    """Whether ``owner`` may take ``op`` now, given the other operations of its entity.

    Not while another process holds the operation's live lease, nor while another operation
    of the entity is active with a live lease or is pending and was created before it.
    """
    if (
        op.status.is_active
        and op.lease_owner != owner
        and (op.lease_expires_at or 0) > now
    ):
        return False
    if op.operation_type is OperationType.EXPORT:
        return True  # an export only reads: it waits for nobody, and nobody waits for it
    for other in competing:
        if other.status.is_active and (other.lease_expires_at or 0) > now:
            return False
        if other.status is OperationStatus.PENDING and other.created_at < op.created_at:
            return False
    return True


def blocker(ctx: Context, org_id: int, op_id: str) -> Competitor | None:
    """The operation that ``op_id`` waits for now (None when it does not wait): another one
    of its entity that is active under a live lease, or pending and created before it."""
    now = time.time()
    with ctx.store.transaction(org_id) as tx:
        op = tx.operations.get(op_id)
        if op is None or op.operation_type is OperationType.EXPORT:
            return None
        for other in tx.operations.competing(op_id, op.entity_type):
            if other.status.is_active and (other.lease_expires_at or 0) > now:
                return other
            if other.status is OperationStatus.PENDING and other.created_at < op.created_at:
                return other
    return None


def try_start(
    store: Store,
    org_id: int,
    op_id: str,
    owner: str,
    lease_seconds: float,
    *,
    status: OperationStatus,
) -> Operation | None:
    """Move the operation to ``status`` under ``owner``'s lease if it is next in line;
    returns it as it is then, or None when it must wait (or is gone)."""
    now = time.time()
    with store.transaction(org_id, write=True) as tx:
        op = tx.operations.get(op_id)
        if op is None:
            return None
        # Decide under the entity's lock, on the operation as it is once the lock is held.
        tx.operations.lock_entity(op.entity_type)
        op = tx.operations.get(op_id)
        if op is None:
            return None
        if not may_start(op, tx.operations.competing(op_id, op.entity_type), owner, now):
            return None
        values: dict[str, Any] = {"lease_owner": owner, "lease_expires_at": now + lease_seconds}
        deltas: dict[str, int] = {}
        if status is OperationStatus.PROCESSING:
            deltas["attempts"] = 1
            if op.started_at is None:
                values["started_at"] = utcnow()
        return tx.operations.advance(op_id, None, deltas, status=status, **values)
