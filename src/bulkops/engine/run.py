"""Running an import, update or delete: read, map, validate, chunk, apply, audit.

One chunk is one transaction holding its writes, their audit records (before and after
image), its ledger row, the counter update and a progress event. A chunk already in the
ledger is skipped, which is what makes a resumed or redelivered run exact.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Container, Iterable, Iterator
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from bulkops.engine.apply import BatchRefused, apply_plan
from bulkops.engine.changes import differences_from_check, keep_plan
from bulkops.engine.chunk import ChunkPlan, Prepared, failure_rows
from bulkops.engine.fanout import APPLY, ChunkSender, coordinate
from bulkops.engine.lifecycle import (
    LeaseKeeper,
    Progress,
    ProgressCallback,
    advance,
    claim,
    fail,
    finish,
    process_owner,
    progress_event,
    set_status,
    taken_over,
)
from bulkops.engine.operations import Context, OperationConfig
from bulkops.engine.pipeline import checked_operation
from bulkops.engine.plan import Evaluator
from bulkops.engine.rollback import rollback_applied
from bulkops.entities import EntitySpec, spec_for
from bulkops.errors import Conflict, NotFound, StoreError
from bulkops.model import Operation, OperationStatus
from bulkops.store import DuplicateRow, LedgerEntry, utcnow

if TYPE_CHECKING:
    from bulkops.store.pipelined import CreatedRows

__all__ = ["conclude", "run_operation"]


@contextlib.contextmanager
def _bulk_gc() -> Iterator[None]:
    """Collect garbage less often while a file streams through.

    A chunk allocates thousands of short-lived objects; with the default thresholds the
    collector runs every few hundred records and re-scans every long-lived object of the
    process (measured: a quarter of the preparing time). Freezing what exists at the start
    and raising the first threshold keeps memory flat and the collector cheap.
    """
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()


def run_operation(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    owner: str | None = None,
    on_progress: ProgressCallback | None = None,
    wait: Callable[[], bool] | None = None,
    send_chunk: ChunkSender | None = None,
) -> Operation:
    """Run (or resume) an import, update or delete until it ends; returns the operation.

    With ``send_chunk`` (a distributed executor) and ``max_concurrent`` > 1, this process
    coordinates: it reads and checks the file and hands chunks to other workers, applying
    chunks itself whenever ``max_concurrent`` are already in flight (``engine.fanout``).

    ``wait`` is called while another operation of the same entity holds the line; return False
    from it to give up waiting (the operation then stays pending).

    A fault that running it again would only repeat (a file that breaks a limit half-way, a
    bug) ends the operation as ``failed`` with the reason in its results, and is re-raised;
    what was applied stays applied and can be rolled back. A database outage (StoreError) or
    another process taking over (Conflict) leaves it to be resumed.
    """
    owner = owner or process_owner()
    with _bulk_gc():
        try:
            return _run_operation(
                ctx,
                org_id,
                op_id,
                owner=owner,
                on_progress=on_progress,
                wait=wait,
                send_chunk=send_chunk,
            )
        except (StoreError, Conflict, NotFound):
            raise
        except Exception as exc:
            fail(ctx, org_id, op_id, owner, exc, on_progress)
            raise


def _run_operation(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
    wait: Callable[[], bool] | None,
    send_chunk: ChunkSender | None,
) -> Operation:
    op = claim(ctx, org_id, op_id, owner, wait)
    if op.status is not OperationStatus.PROCESSING:
        return op
    config = OperationConfig.model_validate(op.config)
    spec = spec_for(op.entity_type)
    lease = ctx.settings.lease_seconds
    with ctx.store.transaction(org_id) as tx:
        committed = tx.ledger.committed(op_id, APPLY)
    if config.validate_only or (config.rollback_on_error and not committed):
        planned, cancelled = _plan_pass(ctx, org_id, op, config, spec, owner, on_progress)
        if cancelled:  # nothing was applied yet
            return finish(
                ctx, org_id, op_id, OperationStatus.CANCELLED, planned, on_progress,
                cancelled=True,
            )
        if config.validate_only or planned["failed_records"]:
            status = (
                OperationStatus.COMPLETED if config.validate_only else OperationStatus.ROLLED_BACK
            )
            return finish(ctx, org_id, op_id, status, planned, on_progress)
        # The applying pass reads the file again from its start. Its chunks count bytes from
        # zero: the distributed path adds each chunk's span, which on top of the validating
        # pass's whole file held the percentage at 99.9 for the whole pass.
        with ctx.store.transaction(org_id, write=True) as tx:
            tx.operations.update(op_id, {"bytes_processed": 0})
    if send_chunk is not None and config.max_concurrent > 1:
        stopped = coordinate(
            ctx, org_id, op, config, spec, owner=owner, on_progress=on_progress,
            send_chunk=send_chunk,
        )
        return conclude(ctx, org_id, op_id, config, stopped, owner=owner, on_progress=on_progress)
    progress = Progress(
        sum(committed.values()), op.total_records,
        event_seconds=ctx.settings.progress_event_seconds,
    )
    with checked_operation(ctx, org_id, op, config, skip=set(committed)) as checked:
        evaluator = checked.evaluator
        size = max(checked.file_size_bytes, 1)
        # Chunks already committed before a crash are still checked (their keys are needed
        # to spot later duplicates) but not decided or written again.
        keeper = LeaseKeeper(ctx, org_id, op_id, owner, lease)
        with ctx.store.pinned():  # one connection for the whole run
            stopped = _apply_chunks(
                ctx, org_id, op, config, spec, evaluator, checked.chunks, committed,
                size=size, owner=owner, keeper=keeper, progress=progress,
                on_progress=on_progress,
            )
    return conclude(ctx, org_id, op_id, config, stopped, owner=owner, on_progress=on_progress)


class _Cancelled(Exception):
    """Raised inside a chunk's transaction to roll it back: the operation was cancelled."""


def _apply_chunks(
    ctx: Context,
    org_id: int,
    op: Operation,
    config: OperationConfig,
    spec: EntitySpec,
    evaluator: Evaluator,
    chunks: Iterable[Prepared],
    committed: Container[int],
    *,
    size: int,
    owner: str,
    keeper: LeaseKeeper,
    progress: Progress,
    on_progress: ProgressCallback | None,
) -> str | None:
    """Apply the checked chunks in order, one transaction each; returns why it stopped early.

    Each transaction holds the chunk's writes, its audit batch, its errors, its ledger row,
    the counters and the progress event. The counter update comes last and returns the
    operation as the database has it then: a cancel committed by then rolls the chunk back
    (so nothing lands after a cancel), and a lost lease raises Conflict.

    Chunks of new rows (an import into a table that was empty) go one round trip each where
    the database can (:class:`_NewRowsWriter`); any other chunk, and one refused there, goes
    through a transaction of the store.
    """
    op_id = op.id
    current = op
    lease = ctx.settings.lease_seconds
    writer = _NewRowsWriter(ctx, org_id, spec, config)
    with writer:
        for prepared in chunks:
            index, chunk = prepared.index, prepared.chunk
            if index in committed:
                keeper.keep()  # re-reading a long file after a crash takes a while
                continue
            fraction = min(prepared.bytes_consumed / size, 1.0)
            stored_event = progress.event_due()
            ledger = LedgerEntry(APPLY, index, chunk[0].row, chunk[-1].row, len(chunk), owner)

            values = partial(
                _chunk_values, progress, fraction, prepared.bytes_consumed, lease
            )
            plan = evaluator.new_rows_plan(prepared) if writer.usable else None
            written: tuple[Operation, dict[str, Any]] | None = None
            if plan is not None:
                counters = plan.counters()
                figures, updates = values(current.processed_records + counters["processed_records"])
                try:
                    updated = writer.write(
                        op_id, plan, failure_rows(plan, prepared), owner, counters, updates, ledger
                    )
                except DuplicateRow:  # a key taken meanwhile: the careful way names its row
                    updated = None
                if updated is not None:
                    if updated.cancel_requested_at is not None:
                        writer.rollback()
                        return "cancelled"
                    writer.commit(op_id, progress_event(updated, figures) if stored_event else None)
                    written = updated, figures
            if written is None:
                writer.close()  # its last chunk commits before this one begins
                try:
                    written = _apply_in_transaction(
                        ctx, org_id, op_id, config, spec, evaluator, prepared, plan,
                        owner=owner, current=current, values=values, ledger=ledger,
                        stored_event=stored_event,
                    )
                except _Cancelled:
                    return "cancelled"
            current, figures = written
            if on_progress:
                on_progress(progress_event(current, figures))
            if current.failed_records > config.max_errors:
                return "failed"
    return None


def _chunk_values(
    progress: Progress, fraction: float, consumed: int, lease: float, processed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The progress figures at ``processed`` records, and the operation's values a chunk's
    counter update sets (``fraction`` of the file read, ``consumed`` bytes)."""
    figures = progress.figures(processed, fraction)
    eta = figures["estimated_time_remaining"]
    return figures, {
        "total_records": max(figures["total_estimate"] or 0, processed),
        "bytes_processed": consumed,
        "estimated_completion": utcnow() + timedelta(seconds=eta) if eta else None,
        "lease_expires_at": time.time() + lease,
        "attempts": 0,
    }


def _apply_in_transaction(
    ctx: Context,
    org_id: int,
    op_id: str,
    config: OperationConfig,
    spec: EntitySpec,
    evaluator: Evaluator,
    prepared: Prepared,
    plan: ChunkPlan | None,
    *,
    owner: str,
    current: Operation,
    values: Callable[[int], tuple[dict[str, Any], dict[str, Any]]],
    ledger: LedgerEntry,
    stored_event: bool,
) -> tuple[Operation, dict[str, Any]]:
    """One chunk in one transaction of the store; the operation after it and the progress
    figures. Raises :class:`_Cancelled` (the chunk rolled back) when a cancel came.

    First without the batch's savepoint; a refused batch rolls the transaction back and the
    chunk goes again with the same plan, each record in its own savepoint. A plan refused
    already (``plan`` given) goes carefully at once.
    """
    chunk = prepared.chunk
    for careful in (False, True) if plan is None else (True,):
        try:
            with ctx.store.transaction(org_id, write=True, bulk=True) as tx:
                if plan is None:
                    plan = evaluator.evaluate(tx, prepared)
                apply_plan(tx, spec, op_id, plan, chunk, careful=careful)
                tx.audit.insert_errors(op_id, failure_rows(plan, prepared))
                counters = plan.counters()
                if config.checked_by is not None:
                    counters["differs_from_check"] = differences_from_check(
                        tx, spec, config.checked_by, prepared.index, list(chunk), plan
                    )
                figures, updates = values(current.processed_records + counters["processed_records"])
                updated = advance(tx, op_id, owner, counters, updates, ledger=ledger)
                if updated.cancel_requested_at is not None:
                    raise _Cancelled
                if stored_event:
                    tx.events.add(op_id, "progress", progress_event(updated, figures))
            return updated, figures
        except BatchRefused:
            continue
    raise AssertionError("a careful write is never refused")


class _NewRowsWriter:
    """The run's :meth:`Store.created_rows`, open while chunks of new rows come and closed
    (its last chunk committed) before any other chunk; a context manager.

    ``usable``: the database writes new rows this way and the run allows it (a run that
    compares with a check reads in each chunk's transaction).
    """

    def __init__(
        self, ctx: Context, org_id: int, spec: EntitySpec, config: OperationConfig
    ) -> None:
        self._ctx = ctx
        self._org_id = org_id
        self._spec = spec
        self._config = config
        self._stack = contextlib.ExitStack()
        self._rows: CreatedRows | None = None
        self.usable = ctx.store.dialect.pipelines and config.checked_by is None

    def __enter__(self) -> _NewRowsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._rows = None
        self._stack.__exit__(*exc)  # type: ignore[arg-type]

    def write(
        self,
        op_id: str,
        plan: ChunkPlan,
        errors: list[tuple[int, int, str, str]],
        owner: str,
        counters: dict[str, int],
        updates: dict[str, Any],
        ledger: LedgerEntry,
    ) -> Operation | None:
        """Write a chunk of new rows (its transaction stays open); the operation after its
        counter update, or None when the chunk must go through a transaction (the database
        cannot write this way here). Conflict when the lease is lost; DuplicateRow when a
        key was taken meanwhile (both rolled back, this writer closed)."""
        new = plan.new_rows
        assert new is not None
        if self._rows is None:
            self._rows = self._stack.enter_context(
                self._ctx.store.created_rows(
                    self._org_id, self._spec.entity.value, self._spec.field_names,
                    self._config.chunk_size,
                )
            )
            if self._rows is None:  # no connection pinned
                self.usable = False
                self.close()
                return None
        try:
            updated = self._rows.write(
                op_id, new.rows, new.built, new.values_json, errors,
                owner=owner, deltas=counters, values=updates, ledger=ledger,
            )
        except BaseException:
            self.close()
            raise
        if updated is None:
            self.rollback()
            self.close()
            with self._ctx.store.transaction(self._org_id) as tx:
                taken_over(tx, op_id)
        return updated

    def commit(self, op_id: str, event: dict[str, Any] | None) -> None:
        """Commit the chunk written last, with its progress event if one is due."""
        assert self._rows is not None
        self._rows.commit(None if event is None else (op_id, "progress", event))

    def rollback(self) -> None:
        if self._rows is not None:
            self._rows.rollback()

    def close(self) -> None:
        """Wait for the last chunk's commit and give the connection back to transactions."""
        self._rows = None
        self._stack.close()


def conclude(
    ctx: Context,
    org_id: int,
    op_id: str,
    config: OperationConfig,
    stopped: str | None,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
) -> Operation:
    """End an operation whose chunks are all applied, or that ``stopped`` early.

    ``stopped`` is ``"cancelled"``, ``"failed"`` (too many errors) or None. A cancel that asks
    for it, or ``rollback_on_error`` with failed records, rolls back what was applied.
    """
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.ledger.delete_plans(op_id)  # chunks handed out to workers and not applied
        op_final = tx.operations.get(op_id)
    assert op_final is not None
    if stopped is None and op_final.cancel_requested_at is not None:
        stopped = "cancelled"  # asked for while the last chunk was being applied
    if stopped == "cancelled":
        if op_final.cancel_rollback:
            set_status(ctx, org_id, op_id, OperationStatus.CANCELLED, cancelled=True)
            return rollback_applied(
                ctx,
                org_id,
                op_id,
                owner=owner,
                on_progress=on_progress,
                force=False,
                user_id=op_final.cancelled_by,
            )
        return finish(
            ctx, org_id, op_id, OperationStatus.CANCELLED, None, on_progress, cancelled=True
        )
    if config.rollback_on_error and op_final.failed_records:
        set_status(ctx, org_id, op_id, OperationStatus.FAILED)
        return rollback_applied(
            ctx,
            org_id,
            op_id,
            owner=owner,
            on_progress=on_progress,
            force=False,
            user_id=op_final.created_by,
        )
    status = OperationStatus.FAILED if stopped == "failed" else OperationStatus.COMPLETED
    return finish(ctx, org_id, op_id, status, None, on_progress)


def _plan_pass(
    ctx: Context,
    org_id: int,
    op: Operation,
    config: OperationConfig,
    spec: EntitySpec,
    owner: str,
    on_progress: ProgressCallback | None,
) -> tuple[dict[str, int], bool]:
    """Validate the whole file against the current data without writing any entity row.

    Returns the planned counters and whether a cancel stopped the pass.
    """
    op_id = op.id
    totals = dict.fromkeys(ChunkPlan().counters(), 0)
    progress = Progress(0, op.total_records, event_seconds=ctx.settings.progress_event_seconds)
    # A check keeps what each record would do (its planned changes), chunk by chunk.
    keep = config.validate_only and ctx.settings.keep_check_plan
    with (
        checked_operation(ctx, org_id, op, config, writing=False) as checked,
        ctx.store.pinned(),
    ):
        evaluator = checked.evaluator
        size = max(checked.file_size_bytes, 1)
        with ctx.store.transaction(org_id, write=True) as tx:
            tx.audit.delete_errors_from_row(op_id, 0)
            tx.plans.delete(op_id)
        for prepared in checked.chunks:
            with ctx.store.transaction(org_id) as tx:
                plan = evaluator.evaluate(tx, prepared)
            for name, value in plan.counters().items():
                totals[name] += value
            fraction = min(prepared.bytes_consumed / size, 1.0)
            figures = progress.figures(totals["processed_records"], fraction)
            with ctx.store.transaction(org_id, write=True) as tx:
                current = tx.operations.get(op_id)
                if current is None or current.cancel_requested_at is not None:
                    return totals, True
                tx.audit.insert_errors(op_id, failure_rows(plan, prepared))
                if keep:
                    keep_plan(tx, spec, op_id, prepared.index, prepared.chunk, plan)
                tx.operations.renew_lease(op_id, owner, ctx.settings.lease_seconds)
                tx.operations.update(op_id, {"bytes_processed": prepared.bytes_consumed})
                event = {
                    **totals,
                    "phase": "validating",
                    **figures,
                    "percentage": round(100 * fraction, 1),
                }
                if progress.event_due():
                    tx.events.add(op_id, "progress", event)
            if on_progress:
                on_progress(event)
    return totals, False

