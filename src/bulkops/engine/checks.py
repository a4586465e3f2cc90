"""Applying a check: the real operation on a checked file, without sending it again.

A check is a completed ``validate_only`` operation. Applying it creates a new operation on
the same stored file with the same configuration (but ``validate_only``), whose
``config.checked_by`` names the check; it runs against the data as it is then, and counts
the records whose outcome differs from the check's plan (``engine.changes``). A check is
applied once: its apply holds the key ``apply:<check id>`` (the organization's unique
idempotency key), so a second apply, even a concurrent one, is refused naming the first.
"""

from __future__ import annotations

import uuid
from typing import Literal

import orjson

from bulkops.engine.operations import Context, OperationConfig
from bulkops.errors import Conflict
from bulkops.model import Operation, OperationStatus
from bulkops.store import DuplicateRow, Tx, utcnow

__all__ = ["apply_check"]


def _apply_key(check_id: str) -> str:
    return f"apply:{check_id}"


def _already_applied(check_id: str, first: Operation) -> Conflict:
    return Conflict(
        f"Check {check_id} was already applied by operation {first.id} "
        f"({first.status.value}); a check is applied once. Check the file again to apply it "
        "again."
    )


def _refuse(tx: Tx, check: Operation) -> None:
    if not check.validate_only:
        raise Conflict(
            f"Operation {check.id} is not a check (validate_only): it was applied when it ran."
        )
    if check.status is not OperationStatus.COMPLETED:
        raise Conflict(
            f"Check {check.id} is {check.status.value}; only a completed check can be applied."
        )
    first = tx.operations.find_by_idempotency_key(_apply_key(check.id))
    if first is not None:
        raise _already_applied(check.id, first)


def apply_check(
    ctx: Context,
    org_id: int,
    check_id: str,
    *,
    created_by: int | None = None,
    executor: Literal["inline", "worker"] = "inline",
) -> Operation:
    """Queue the real operation of a completed check (``pending``); returns it.

    Conflict when ``check_id`` is no completed check, or was applied already (naming the
    operation that applied it); NotFound when the organization has no such operation.
    """
    op_id = str(uuid.uuid4())
    try:
        with ctx.store.transaction(org_id, write=True) as tx:
            check = tx.operations.require(check_id)
            _refuse(tx, check)
            config = OperationConfig.model_validate(
                {**check.config, "validate_only": False, "checked_by": check.id}
            )
            tx.operations.insert(
                {
                    "id": op_id,
                    "operation_type": check.operation_type.value,
                    "entity_type": check.entity_type.value,
                    "status": OperationStatus.PENDING.value,
                    "file_name": check.file_name,
                    "file_path": check.file_path,
                    "file_size_bytes": check.file_size_bytes,
                    "file_sha256": check.file_sha256,
                    "created_at": utcnow(),
                    "created_by": created_by,
                    "idempotency_key": _apply_key(check.id),
                    "executor": executor,
                    "config": config.model_dump_json(),
                    "header": orjson.dumps(check.header).decode()
                    if check.header is not None
                    else None,
                    "results": "{}",
                }
            )
            tx.events.add(op_id, "status", {"status": OperationStatus.PENDING})
            results = {**check.results, "applied_by": op_id}
            tx.operations.update(check.id, {"results": orjson.dumps(results).decode()})
            created = tx.operations.get(op_id)
    except DuplicateRow:  # another apply of the same check committed first
        with ctx.store.transaction(org_id) as tx:
            first = tx.operations.find_by_idempotency_key(_apply_key(check_id))
        if first is None:
            raise
        raise _already_applied(check_id, first) from None
    assert created is not None
    return created
