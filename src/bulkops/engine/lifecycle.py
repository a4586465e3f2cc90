"""One lifecycle for every operation: claim, renew, advance, finish, fail, cancel.

Import, update, delete, export and rollback all go through these steps, so that every kind
of operation is leased while it runs, can be cancelled, and is resumed when its process
dies:

- :func:`claim` turns a pending (or orphaned) operation into a processing one held by this
  process, or says why not (it waits behind another one, it is running elsewhere);
- :class:`LeaseKeeper` renews the lease while no chunk is committed;
- :func:`advance` adds a chunk's counters in the chunk's transaction and returns the
  operation as it is then (a cancel committed before shows; a lost lease raises);
- :func:`finish` ends it with its final status, totals, results and ``done`` event;
- :func:`fail` ends it as failed with the reason in its results;
- :func:`request_cancel` asks it to stop (a flag every process sees).
"""

from __future__ import annotations

import gc
import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import orjson

from bulkops.engine.operations import COUNTERS, Context, get_operation, operation_view
from bulkops.engine.scheduling import try_start
from bulkops.entities import header_key
from bulkops.errors import BulkopsError, Conflict, NotFound, StoreError
from bulkops.model import Operation, OperationStatus
from bulkops.store import LedgerEntry, Tx, utcnow

__all__ = [
    "LeaseKeeper",
    "Progress",
    "ProgressCallback",
    "advance",
    "cancel_interrupted",
    "claim",
    "emit",
    "end_rollback_early",
    "fail",
    "finish",
    "mark_failed",
    "process_owner",
    "progress_event",
    "request_cancel",
    "set_status",
    "taken_over",
    "write_end",
]

ProgressCallback = Callable[[dict[str, Any]], None]


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Progress:
    """Rate and time remaining of a run, measured from this process's start."""

    def __init__(
        self, already_done: int, total: int | None = None, *, event_seconds: float = 0.0
    ) -> None:
        self.started = time.monotonic()
        self.base = already_done
        self.total = total
        """The exact number of records when known (counted as the file was stored); else the
        total is estimated from the share of the file read so far."""
        self.event_seconds = event_seconds
        self._last_event = -math.inf

    def event_due(self) -> bool:
        """Whether this chunk's progress event is stored: the first one is, then one at most
        every ``event_seconds``. A 1M-record import commits dozens of chunks a second;
        an event for each was a statement a chunk that nobody watching could tell apart."""
        now = time.monotonic()
        if now - self._last_event < self.event_seconds:
            return False
        self._last_event = now
        return True

    def figures(self, processed: int, fraction: float) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = max(processed - self.base, 0) / elapsed
        if self.total is not None:
            total: int | None = max(self.total, processed)
        else:
            total = max(round(processed / fraction), processed) if fraction > 0 else None
        remaining = (total - processed) / rate if rate > 0 and total is not None else None
        return {
            "rate": round(rate, 1),
            "estimated_time_remaining": round(remaining, 1) if remaining is not None else None,
            "total_estimate": total,
        }


def fail(
    ctx: Context,
    org_id: int,
    op_id: str,
    owner: str,
    exc: Exception,
    on_progress: ProgressCallback | None,
) -> None:
    """End a running operation as failed because of ``exc`` (if this process still runs it)."""
    reason = str(exc) if isinstance(exc, BulkopsError) else f"{type(exc).__name__}: {exc}"
    try:
        with ctx.store.transaction(org_id, write=True) as tx:
            op = tx.operations.get(op_id)
            if op is None or op.status is not OperationStatus.PROCESSING or op.lease_owner != owner:
                return
            view = operation_view(mark_failed(tx, op, reason))
    except StoreError:
        return  # the lease expires and a resume will meet the same fault again
    if on_progress:
        on_progress({**view, "phase": "done"})


def progress_event(op: Operation, figures: dict[str, Any]) -> dict[str, Any]:
    view = operation_view(op)
    return {
        "status": view["status"],
        "phase": "applying",
        **{k: view[k] for k in (*COUNTERS, "percentage")},
        "rate": figures["rate"],
        "estimated_time_remaining": figures["estimated_time_remaining"],
    }


def claim(
    ctx: Context, org_id: int, op_id: str, owner: str, wait: Callable[[], bool] | None
) -> Operation:
    while True:
        with ctx.store.transaction(org_id) as tx:
            op = tx.operations.require(op_id)
        status = op.status
        if status.is_final:
            return op
        if status is OperationStatus.ROLLING_BACK:
            raise Conflict(f"Operation {op_id} is being rolled back; use: bulkops resume {op_id}")
        if (
            status is OperationStatus.PROCESSING
            and op.lease_owner != owner
            and (op.lease_expires_at or 0) > time.time()
        ):
            raise Conflict(
                f"Operation {op_id} is running in {op.lease_owner}; its lease expires in "
                f"{(op.lease_expires_at or 0) - time.time():.0f} s if that process has died."
            )
        if status is OperationStatus.PROCESSING and op.attempts >= ctx.settings.max_attempts:
            return _give_up(ctx, org_id, op)
        started = try_start(
            ctx.store, org_id, op_id, owner, ctx.settings.lease_seconds,
            status=OperationStatus.PROCESSING,
        )
        if started is not None:
            if started.cancel_requested_at is None:
                emit(ctx, org_id, op_id, "status", {"status": OperationStatus.PROCESSING})
            return started
        if wait is None or not wait():
            return get_operation(ctx, org_id, op_id)


def _give_up(ctx: Context, org_id: int, op: Operation) -> Operation:
    """End as failed an operation whose process died every time it was taken up."""
    op_id = op.id
    reason = (
        f"Given up after {op.attempts} attempts in a row: the process running it ended "
        f"unexpectedly each time before committing a chunk (the last was {op.lease_owner}). "
        "What was applied stays applied and can be rolled back; check the workers' logs."
    )
    with ctx.store.transaction(org_id, write=True) as tx:
        current = tx.operations.require(op_id)
        running_elsewhere = (current.lease_expires_at or 0) > time.time()
        if current.status is not OperationStatus.PROCESSING or running_elsewhere:
            return current  # somebody else took it up meanwhile
        return mark_failed(tx, current, reason)


def write_end(tx: Tx, op_id: str, values: Mapping[str, Any]) -> Operation:
    """In ``tx``: write the operation's final ``values`` and its ``done`` event; returns it."""
    final = tx.operations.advance(op_id, None, {}, **values)
    if final is None:
        raise NotFound(f"No operation {op_id}.")
    tx.events.add(op_id, "done", operation_view(final))
    return final


def mark_failed(tx: Tx, op: Operation, reason: str) -> Operation:
    """In ``tx``: end a running operation as failed with ``reason`` in its results."""
    op_id = op.id
    results = dict(op.results)
    results["error"] = reason
    tx.ledger.delete_plans(op_id)  # chunks handed out to workers and not applied
    return write_end(
        tx,
        op_id,
        {
            "status": OperationStatus.FAILED,
            "completed_at": utcnow(),
            "estimated_completion": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "total_records": max(op.total_records or 0, op.processed_records),
            "results": orjson.dumps(results).decode(),
        },
    )


def advance(
    tx: Tx,
    op_id: str,
    owner: str | None,
    deltas: Mapping[str, int],
    values: Mapping[str, Any],
    *,
    ledger: LedgerEntry | None = None,
) -> Operation:
    """In a chunk's transaction: add its counters (``deltas``), set ``values``, write the
    chunk's ``ledger`` row, and return the operation as the database has it after the update.

    The update is the chunk's last statement and reads the row under its own lock, so a
    cancel committed before it shows in what it returns, and none can slip in after.
    ``owner``, when given, must still hold the lease: otherwise Conflict (another process
    took the operation over) and the chunk's transaction rolls back; so does a chunk whose
    ledger row is there already.
    """
    updated = tx.operations.advance(op_id, owner, deltas, ledger=ledger, **values)
    if updated is not None:
        return updated
    taken_over(tx, op_id)


def taken_over(tx: Tx, op_id: str) -> NoReturn:
    """Raise the Conflict of a process that lost an operation's lease to another."""
    held = tx.operations.require(op_id)
    raise Conflict(
        f"Operation {op_id} was taken over by {held.lease_owner or 'another process'}."
    )


class LeaseKeeper:
    """Renews an operation's lease now and then while no chunk is committed (which renews it).

    Raises Conflict when another process holds the lease now.
    """

    def __init__(self, ctx: Context, org_id: int, op_id: str, owner: str, seconds: float) -> None:
        self.ctx, self.org_id, self.op_id, self.owner, self.seconds = (
            ctx, org_id, op_id, owner, seconds
        )
        self.renewed = time.monotonic()

    def keep(self) -> None:
        if time.monotonic() - self.renewed < self.seconds / 4:
            return
        with self.ctx.store.transaction(self.org_id, write=True) as tx:
            held = tx.operations.get(self.op_id)
            if held is None or held.lease_owner != self.owner:
                raise Conflict(f"Operation {self.op_id} was taken over by another process.")
            tx.operations.renew_lease(self.op_id, self.owner, self.seconds)
        self.renewed = time.monotonic()


def emit(ctx: Context, org_id: int, op_id: str, name: str, data: dict[str, Any]) -> None:
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.events.add(op_id, name, data)


def set_status(
    ctx: Context, org_id: int, op_id: str, status: OperationStatus, *, cancelled: bool = False
) -> None:
    values: dict[str, Any] = {"status": status, "completed_at": utcnow()}
    if cancelled:
        values["cancelled_at"] = utcnow()
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.operations.update(op_id, values)


def finish(
    ctx: Context,
    org_id: int,
    op_id: str,
    status: OperationStatus,
    counters: dict[str, int] | None,
    on_progress: ProgressCallback | None,
    *,
    cancelled: bool = False,
) -> Operation:
    """End the operation: final status, exact totals, results summary, the ``done`` event."""
    with ctx.store.transaction(org_id, write=True) as tx:
        op = tx.operations.get(op_id)
        assert op is not None
        values: dict[str, Any] = {
            "status": status,
            "completed_at": utcnow(),
            "estimated_completion": None,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if counters is not None:
            values.update(counters)
            values["total_records"] = counters["processed_records"]
        elif status is OperationStatus.COMPLETED:
            values["total_records"] = op.processed_records  # the whole file was read
        else:
            # Stopped early: the total stays the estimate from the file's size, so the
            # percentage says how far the operation got.
            values["total_records"] = max(op.total_records or 0, op.processed_records)
        if cancelled:
            values["cancelled_at"] = utcnow()
        failed = values.get("failed_records", op.failed_records)
        results = dict(op.results)
        results.update(
            {
                "validate_only": bool(op.config.get("validate_only")),
                "errors": failed,
                "first_errors": [
                    {"row": e["row"], "line": e["line"], **err}
                    for e in tx.audit.iter_errors(op_id, limit=10)
                    for err in e["errors"]
                ][:10],
            }
        )
        if op.config.get("checked_by"):
            results["checked_by"] = op.config["checked_by"]
            results["differs_from_check"] = op.differs_from_check
        if status is OperationStatus.COMPLETED and op.config.get("mapping") and op.header:
            # Remembered for the next file with this header (CONTRACT section 7).
            tx.mappings.save(
                op.entity_type.value,
                header_key(op.header),
                op.header,
                op.config["mapping"],
                user_id=op.created_by,
                op_id=op.id,
            )
        if status is OperationStatus.ROLLED_BACK and counters is not None:
            results["rolled_back_reason"] = (
                "rollback_on_error: the file has failed records, so nothing was applied"
            )
        values["results"] = orjson.dumps(results).decode()
        final = write_end(tx, op_id, values)
    if on_progress:
        on_progress({**operation_view(final), "phase": "done"})
    return final


def cancel_interrupted(
    ctx: Context, org_id: int, op_id: str, owner: str, *, user_id: int | None = None
) -> Operation:
    """End as cancelled, at once, an operation this process ran until it was interrupted
    (Ctrl-C): none of its chunks is being applied any more, so none can land after this.

    What was committed stays applied (and can be rolled back). An operation another process
    holds is only asked to stop, as :func:`request_cancel` does; an ended one is left as is.
    Call it once the interrupt's traceback is gone (outside the ``except`` block).
    """
    # The interrupt may have cut a connection off in the middle of a transaction, holding
    # SQLite's write lock: finalise such orphans (which rolls them back) and start afresh.
    gc.collect()
    ctx.store.dispose()
    with ctx.store.transaction(org_id) as tx:
        op = tx.operations.require(op_id)
    if op.status.is_final:
        return op
    if op.status is OperationStatus.ROLLING_BACK and op.lease_owner == owner:
        with ctx.store.transaction(org_id, write=True) as tx:
            return end_rollback_early(tx, tx.operations.require(op_id), user_id)
    if op.status is OperationStatus.PROCESSING and op.lease_owner == owner:
        with ctx.store.transaction(org_id, write=True) as tx:
            tx.ledger.delete_plans(op_id)  # chunks handed out to workers and not applied
            tx.operations.update(
                op_id, {"cancel_requested_at": utcnow(), "cancelled_by": user_id}
            )
        return finish(ctx, org_id, op_id, OperationStatus.CANCELLED, None, None, cancelled=True)
    return request_cancel(ctx, org_id, op_id, user_id=user_id, rollback=False)


def end_rollback_early(tx: Tx, op: Operation, user_id: int | None = None) -> Operation:
    """End a rollback part-way as ``cancelled``: the batches it restored stay restored, the
    others stay applied, and a later rollback goes on where this one stopped."""
    now = utcnow()
    results = dict(op.results)
    results["rollback"] = {
        "rolled_back_by": op.rollback_requested_by,
        "forced": op.rollback_force,
        "restored_records": op.rolled_back_records,
        "conflict_records": op.conflict_records,
        "started_at": op.rollback_started_at.isoformat() if op.rollback_started_at else None,
        "stopped_at": now.isoformat(),
        "stopped": True,
    }
    values: dict[str, Any] = {
        "status": OperationStatus.CANCELLED,
        "cancelled_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "results": orjson.dumps(results).decode(),
    }
    if user_id is not None:
        values["cancelled_by"] = user_id
    return write_end(tx, op.id, values)


def request_cancel(
    ctx: Context, org_id: int, op_id: str, *, user_id: int | None, rollback: bool
) -> Operation:
    """Ask a pending or running operation, or a running rollback, to stop (a flag every
    process sees). A pending operation, or a rollback no process runs now (queued, or its
    process died), ends at once."""
    with ctx.store.transaction(org_id, write=True) as tx:
        op = tx.operations.require(op_id)
        status = op.status
        if status is OperationStatus.ROLLING_BACK:
            if (op.lease_expires_at or 0) <= time.time():
                return end_rollback_early(tx, op, user_id)
            tx.operations.update(op_id, {"cancel_requested_at": utcnow()})
            return tx.operations.require(op_id)
        if status is OperationStatus.PENDING:
            now = utcnow()
            return write_end(
                tx,
                op_id,
                {
                    "status": OperationStatus.CANCELLED,
                    "cancelled_at": now,
                    "cancel_requested_at": now,
                    "cancelled_by": user_id,
                    "completed_at": now,
                },
            )
        if status is not OperationStatus.PROCESSING:
            raise Conflict(
                f"Operation {op_id} is {status.value}; only pending or processing operations, "
                "or a rollback under way, can be cancelled."
            )
        tx.operations.update(
            op_id,
            {"cancel_requested_at": utcnow(), "cancel_rollback": rollback, "cancelled_by": user_id},
        )
        updated = tx.operations.get(op_id)
    assert updated is not None
    return updated
