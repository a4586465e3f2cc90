"""The chunks of one operation on several workers at once.

One worker **coordinates**: it holds the operation's lease, reads the file once and runs the
file-only checks on every chunk (parsing, validation, duplicate keys — the part that needs
the whole file in order). A checked chunk is either *handed out* — its records are stored in
``operation_chunk_plans`` and any worker is asked to apply it — or, when ``max_concurrent``
chunks are already in flight, applied by the coordinator itself. So one worker alone still
finishes the operation, and with more workers up to ``max_concurrent`` chunks are applied
at the same time.

A chunk is applied exactly as in a single process: one transaction holds its writes, their
audit records, its ledger row, the counters and a progress event, and deletes its plan. A
worker claims a planned chunk with a lease (``lease_seconds``); the coordinator takes over a
chunk whose lease ran out (its worker died). Two workers that both apply one chunk cannot
both commit: the ledger's key lets only the first transaction land.

Cancel holds exactly too: every chunk transaction re-reads the operation *after* adding its
counters (which waits for any other transaction writing the operation row) and gives up if
the operation was cancelled. So no chunk lands after a cancel was committed, and a rollback
never misses a late chunk. "Too many errors" is checked the same way against the records
failed before the chunk's first row: chunks before the one that crossed ``max_errors`` still
land, none starts after it (a chunk further down already being applied may still land).

If the coordinator dies, its lease runs out and a dispatcher starts a new one; it re-reads
the file (to know the keys already seen) and continues after the last chunk planned or
applied. The coordinator renews its lease for half of ``lease_seconds`` (it renews with
every chunk), so that a successor has taken over and re-read the file within the lease time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bulkops.engine.apply import apply_plan
from bulkops.engine.changes import differences_from_check
from bulkops.engine.chunk import Prepared, failure_rows
from bulkops.engine.leases import expire_dead_leases
from bulkops.engine.lifecycle import LeaseKeeper, ProgressCallback, advance, progress_event
from bulkops.engine.operations import Context, OperationConfig, get_operation
from bulkops.engine.pipeline import NoKeys, checked_operation, decode_prepared, encode_prepared
from bulkops.engine.plan import Evaluator
from bulkops.entities import EntitySpec, map_header, spec_for
from bulkops.errors import Conflict, NotFound
from bulkops.formats import table_format
from bulkops.model import Operation, OperationStatus
from bulkops.store import LedgerEntry, Tx, utcnow

__all__ = ["APPLY", "ChunkSender", "apply_chunk", "coordinate"]

APPLY = "apply"
"""The ledger phase of applied chunks."""
ChunkSender = Callable[[int, str, int], None]
"""Asks any worker to apply chunk ``index`` of operation ``op_id`` of ``org_id``."""

_POLL_SECONDS = 0.05
_REAP_SECONDS = 0.5


def _coordinator_lease(ctx: Context) -> float:
    """Half the lease: a successor must also re-read what was planned before it took over."""
    return ctx.settings.lease_seconds / 2


class _Stopped(Exception):
    """The operation was cancelled or failed while this chunk was being applied."""


def _stop_reason(
    tx: Tx, op: Operation, config: OperationConfig, first_row: int | None = None
) -> str | None:
    """Why a chunk may not land: "cancelled", "failed" (too many errors), "ended".

    As in one process, "too many errors" stops the chunks *after* the one that crossed
    ``max_errors``: a chunk starting at ``first_row`` may still land when the records
    failed before it do not exceed the limit.
    """
    if op.status is not OperationStatus.PROCESSING:
        return "ended"
    if op.cancel_requested_at is not None:
        return "cancelled"
    if op.failed_records > config.max_errors and (
        first_row is None or tx.audit.count_errors_before(op.id, first_row) > config.max_errors
    ):
        return "failed"
    return None


def _commit_chunk(
    ctx: Context,
    org_id: int,
    op_id: str,
    prepared: Prepared,
    evaluator: Evaluator,
    config: OperationConfig,
    *,
    owner: str,
    coordinator: bool,
    byte_span: int,
    total_estimate: int | None = None,
) -> tuple[str | None, dict[str, Any] | None]:
    """Apply one checked chunk in one transaction; returns (stop reason, progress event).

    Nothing is written when the stop reason is set. A coordinator also renews the
    operation's lease and proves it still holds it; a worker applying a planned chunk
    deletes the plan in the same transaction.
    """
    chunk = prepared.chunk
    spec = evaluator.spec
    try:
        with ctx.store.transaction(org_id, write=True, bulk=True) as tx:
            current = tx.operations.require(op_id)
            reason = _stop_reason(tx, current, config, chunk[0].row)
            if reason is not None:
                if not coordinator:
                    tx.ledger.delete_plans(op_id, prepared.index)  # it will never land
                return reason, None
            if coordinator and current.lease_owner != owner:
                raise Conflict(f"Operation {op_id} was taken over by {current.lease_owner}.")
            plan = evaluator.evaluate(tx, prepared)
            apply_plan(tx, spec, op_id, plan, chunk)
            tx.audit.insert_errors(op_id, failure_rows(plan, prepared))
            if not coordinator:
                tx.ledger.delete_plans(op_id, prepared.index)
            counters = plan.counters()
            if config.checked_by is not None:
                counters["differs_from_check"] = differences_from_check(
                    tx, spec, config.checked_by, prepared.index, list(chunk), plan
                )
            values: dict[str, Any] = {"attempts": 0}  # progress: not a poison operation
            if coordinator:
                values["lease_expires_at"] = time.time() + _coordinator_lease(ctx)
            # The operation as the counter update left it: on PostgreSQL that update waited
            # for every other transaction writing this operation, so a cancel committed
            # meanwhile shows.
            updated = advance(
                tx,
                op_id,
                owner if coordinator else None,
                {**counters, "bytes_processed": byte_span},
                values,
                ledger=LedgerEntry(
                    APPLY, prepared.index, chunk[0].row, chunk[-1].row, len(chunk), owner
                ),
            )
            reason = _stop_reason(tx, updated, config, chunk[0].row)
            if reason is not None:
                raise _Stopped(reason)
            processed = updated.processed_records
            total = max(total_estimate or 0, updated.total_records or 0, processed)
            started = updated.started_at
            elapsed = max((utcnow() - started).total_seconds(), 1e-3) if started else None
            rate = processed / elapsed if elapsed else 0.0
            eta = (total - processed) / rate if rate > 0 else None
            tx.operations.update(
                op_id,
                {
                    "total_records": total,
                    "estimated_completion": utcnow() + timedelta(seconds=eta) if eta else None,
                },
            )
            updated = replace(updated, total_records=total)
            event = progress_event(
                updated,
                {
                    "rate": round(rate, 1),
                    "estimated_time_remaining": round(eta, 1) if eta is not None else None,
                },
            )
            tx.events.add(op_id, "progress", event)
    except _Stopped as stop:
        if not coordinator:
            with ctx.store.transaction(org_id, write=True) as tx:
                tx.ledger.delete_plans(op_id, prepared.index)  # it will never land
        return str(stop), None
    return None, event


def coordinate(
    ctx: Context,
    org_id: int,
    op: Operation,
    config: OperationConfig,
    spec: EntitySpec,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
    send_chunk: ChunkSender,
) -> str | None:
    """Read, check and hand out (or apply) every chunk and wait for the others.

    Returns why it stopped early (``"cancelled"``, ``"failed"``: too many errors) or None;
    the caller concludes the operation.
    """
    op_id = op.id
    handout_limit = config.max_concurrent - 1  # the coordinator applies one chunk itself
    with ctx.store.transaction(org_id) as tx:
        # The plans before the ledger: a chunk a worker commits between the two reads is
        # then in both, not in neither (see _drain).
        planned = {p["chunk_index"] for p in tx.ledger.plans(op_id)}
        committed = tx.ledger.committed(op_id, APPLY)
    stopped: str | None = None
    chunk_count = 0
    with checked_operation(ctx, org_id, op, config, skip=set(committed) | planned) as checked:
        evaluator = checked.evaluator
        size = max(checked.file_size_bytes, 1)
        records_read = 0
        previous_end = 0
        keeper = LeaseKeeper(ctx, org_id, op_id, owner, _coordinator_lease(ctx))
        for prepared in checked.chunks:
            index, chunk = prepared.index, prepared.chunk
            chunk_count = index + 1
            byte_span = prepared.bytes_consumed - previous_end
            previous_end = prepared.bytes_consumed
            if index in committed or index in planned:
                keeper.keep()  # re-reading a long file after a crash takes a while
                continue  # resumed: done, or waiting for a worker
            records_read = chunk[-1].row - 1  # rows read so far (row 1 is the header)
            fraction = min(prepared.bytes_consumed / size, 1.0)
            if op.total_records is not None:  # counted exactly when the file was stored
                estimate: int | None = max(op.total_records, records_read)
            else:
                estimate = max(round(records_read / fraction), records_read) if fraction else None
            with ctx.store.transaction(org_id) as tx:
                in_flight = len(tx.ledger.plans(op_id))
            if in_flight < handout_limit:
                with ctx.store.transaction(org_id, write=True) as tx:
                    current = tx.operations.require(op_id)
                    stopped = _stop_reason(tx, current, config)
                    if stopped is not None:
                        break
                    if current.lease_owner != owner:
                        raise Conflict(
                            f"Operation {op_id} was taken over by {current.lease_owner}."
                        )
                    tx.ledger.add_plan(
                        op_id,
                        index,
                        chunk[0].row,
                        chunk[-1].row,
                        len(chunk),
                        byte_span,
                        (prepared.encoded or encode_prepared(prepared)).decode(),
                    )
                    tx.operations.update(
                        op_id,
                        {
                            "lease_expires_at": time.time() + _coordinator_lease(ctx),
                            "total_records": max(estimate or 0, current.total_records or 0),
                        },
                    )
                planned.add(index)
                # A lost message (the broker is down) loses nothing: a chunk nobody claims is
                # applied by the coordinator itself before the operation ends.
                with contextlib.suppress(Exception):
                    send_chunk(org_id, op_id, index)
                continue
            stopped, event = _commit_chunk(
                ctx, org_id, op_id, prepared, evaluator, config, owner=owner,
                coordinator=True, byte_span=byte_span, total_estimate=estimate,
            )
            if stopped is not None:
                break
            if on_progress and event:
                on_progress(event)
        else:
            with ctx.store.transaction(org_id, write=True) as tx:
                tx.operations.update(op_id, {"chunk_count": chunk_count})
    if stopped in (None, "failed"):
        # Chunks handed out before the stop may still land (too many errors stop only the
        # chunks after the one that crossed the limit).
        stopped = _drain(ctx, org_id, op_id, config, owner=owner, on_progress=on_progress)
    if stopped == "ended":
        raise Conflict(f"Operation {op_id} was ended by another process.")
    return stopped


def _drain(
    ctx: Context,
    org_id: int,
    op_id: str,
    config: OperationConfig,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
) -> str | None:
    """Wait for the chunks handed out; apply those nobody took or whose worker died."""
    keeper = LeaseKeeper(ctx, org_id, op_id, owner, _coordinator_lease(ctx))
    reaped = time.monotonic()
    while True:
        with ctx.store.transaction(org_id) as tx:
            # The plans first: a chunk deletes its plan in the transaction that adds its
            # counters, so once no plan is left the operation read next holds every chunk's
            # counters (PostgreSQL reads each statement at its own moment).
            plans = tx.ledger.plans(op_id)
            current = tx.operations.get(op_id)
            reason = _stop_reason(tx, current, config) if current is not None else None
        if current is None:
            raise NotFound(f"No operation {op_id}.")
        if current.lease_owner != owner:
            raise Conflict(f"Operation {op_id} was taken over by {current.lease_owner}.")
        if reason in ("cancelled", "ended") or not plans:
            return reason
        now = time.time()
        free = [
            p["chunk_index"]
            for p in plans
            if p["lease_owner"] is None or (p["lease_expires_at"] or 0) < now
        ]
        if free:
            outcome = apply_chunk(
                ctx, org_id, op_id, free[0], owner=owner, on_progress=on_progress
            )
            if outcome in ("cancelled", "ended"):
                return outcome
        else:
            time.sleep(_POLL_SECONDS)
            if time.monotonic() - reaped > _REAP_SECONDS:
                expire_dead_leases(ctx, org_id)  # a worker of this host died holding a chunk
                reaped = time.monotonic()
        keeper.keep()


_evaluators: dict[str, tuple[Evaluator, OperationConfig]] = {}


def _evaluator_for(op: Operation) -> tuple[Evaluator, OperationConfig]:
    """The operation's evaluator and config, built once per process (a few are kept)."""
    cached = _evaluators.get(op.id)
    if cached is not None:
        return cached
    config = OperationConfig.model_validate(op.config)
    spec = spec_for(op.entity_type)
    operation = op.operation_type
    header = map_header(spec, op.header or [], operation, config.mapping)
    evaluator = Evaluator(spec, operation, header, NoKeys(), config.decimal_separator)
    evaluator.cells = op.file_path is not None and table_format(op.file_path) == "xlsx"
    if len(_evaluators) >= 8:
        _evaluators.pop(next(iter(_evaluators)))
    _evaluators[op.id] = (evaluator, config)
    return evaluator, config


def apply_chunk(
    ctx: Context,
    org_id: int,
    op_id: str,
    index: int,
    *,
    owner: str,
    on_progress: ProgressCallback | None = None,
) -> str:
    """Apply planned chunk ``index`` if nobody else holds it (a worker's task).

    Returns ``"applied"``, ``"taken"`` (applied already, or another worker holds its
    lease), or the reason the operation stopped (``"cancelled"``, ``"failed"``, or the
    status it has ended in).
    """
    with ctx.store.transaction(org_id, write=True) as tx:
        plan = tx.ledger.claim_plan(op_id, index, owner, ctx.settings.lease_seconds)
    if plan is None:
        return "taken"
    op = get_operation(ctx, org_id, op_id)
    evaluator, config = _evaluator_for(op)
    prepared = decode_prepared(plan["payload"], evaluator)  # checked by the coordinator
    try:
        reason, event = _commit_chunk(
            ctx, org_id, op_id, prepared, evaluator, config, owner=owner, coordinator=False,
            byte_span=plan["byte_count"],
        )
    except Conflict:
        return "taken"  # another worker committed it first (its lease had run out)
    if reason is not None:
        return reason
    if on_progress and event:
        on_progress(event)
    return "applied"
