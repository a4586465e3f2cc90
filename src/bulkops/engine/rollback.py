"""Undo: restore an operation's audit records newest first, never over somebody else's change.

The audit holds one batch per applied chunk (``operation_changes``). Batches are restored
newest first, and the records of a batch in reverse order, a few batches at a time
(``Settings.rollback_batches``, ten by default) in one transaction that also marks each
``rolled_back`` (or ``conflict``, with the outcome of every record left alone); a rollback
that is interrupted therefore resumes with the batches still ``applied`` and never restores
one twice.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from bulkops.engine.apply import BatchRefused
from bulkops.engine.lifecycle import (
    Progress,
    ProgressCallback,
    advance,
    end_rollback_early,
    process_owner,
    write_end,
)
from bulkops.engine.operations import Context, OperationConfig, get_operation, operation_view
from bulkops.engine.scheduling import try_start
from bulkops.entities import EntitySpec, spec_for
from bulkops.errors import Conflict
from bulkops.model import Operation, OperationStatus, OperationType
from bulkops.store import ChangeBatch, DuplicateRow, LedgerEntry, Tx, utcnow

__all__ = ["queue_rollback", "request_rollback", "rollback_applied", "rollback_operation"]

ROLLBACK = "rollback"
_MAX_LANES = 4
"""Rollback transactions in flight at the most: each lane holds a pooled connection (five by
default, one of them the reading thread's)."""
_Target = tuple[int, int]  # (position in the batch, entity id)


def request_rollback(
    ctx: Context, org_id: int, op_id: str, *, user_id: int | None, force: bool
) -> Operation:
    """Check that the operation can be rolled back and record who asked (before it runs)."""
    with ctx.store.transaction(org_id, write=True) as tx:
        op = tx.operations.require(op_id)
        status = op.status
        if op.operation_type is OperationType.EXPORT:
            raise Conflict("An export changes no data, so there is nothing to roll back.")
        if op.validate_only:
            raise Conflict(
                f"Operation {op_id} is a check (validate_only): it changed nothing, so there "
                "is nothing to roll back."
            )
        if status is OperationStatus.ROLLED_BACK:
            if not (force and op.conflict_records):
                when = op.rollback_completed_at or op.completed_at
                raise Conflict(
                    f"Operation {op_id} was already rolled back"
                    + (f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when else "")
                    + ". A second rollback would undo nothing"
                    + (
                        "; use --force to overwrite its conflicting rows."
                        if op.conflict_records
                        else "."
                    )
                )
        elif status is OperationStatus.ROLLING_BACK:
            if (op.lease_expires_at or 0) > time.time():
                raise Conflict(f"Operation {op_id} is already being rolled back.")
        elif not status.can_roll_back:
            raise Conflict(
                f"Operation {op_id} is {status.value}; only completed, failed or cancelled "
                "operations can be rolled back (cancel it first)."
            )
        tx.operations.update(
            op_id, {"rollback_requested_by": user_id, "rollback_force": force}
        )
        updated = tx.operations.get(op_id)
    assert updated is not None
    return updated


def queue_rollback(
    ctx: Context, org_id: int, op_id: str, *, user_id: int | None, force: bool
) -> Operation:
    """Record the rollback request and leave it for a worker.

    The queued state is the one a crashed rollback is left in: ``rolling_back`` with no
    lease. Workers resume such operations (``engine.resume``), which runs the rollback as the
    user who asked, with their ``force``.
    """
    request_rollback(ctx, org_id, op_id, user_id=user_id, force=force)
    with ctx.store.transaction(org_id, write=True) as tx:
        op = tx.operations.get(op_id)
        assert op is not None
        queued = op.status is OperationStatus.ROLLING_BACK and op.lease_owner is None
        if op.status.is_final or queued:
            rolling_back = OperationStatus.ROLLING_BACK
            tx.operations.update(
                op_id, {"status": rolling_back, "lease_owner": None, "lease_expires_at": None}
            )
            tx.events.add(op_id, "status", {"status": rolling_back, "phase": "queued"})
        op = tx.operations.get(op_id)
    assert op is not None
    return op


def rollback_operation(
    ctx: Context, org_id: int, op_id: str, *, user_id: int | None, force: bool = False,
    on_progress: ProgressCallback | None = None,
) -> Operation:
    request_rollback(ctx, org_id, op_id, user_id=user_id, force=force)
    return rollback_applied(
        ctx, org_id, op_id, owner=process_owner(), on_progress=on_progress, force=force,
        user_id=user_id,
    )


def rollback_applied(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
    force: bool,
    user_id: int | None,
) -> Operation:
    """Run (or resume) the rollback of everything the operation applied."""
    op = get_operation(ctx, org_id, op_id)
    redo_conflicts = op.status is OperationStatus.ROLLED_BACK and force
    while not try_start(ctx.store, org_id, op_id, owner, ctx.settings.lease_seconds,
                                  status=OperationStatus.ROLLING_BACK):
        # Waiting for another writer of the same entity; but never for, or after, another
        # process's rollback of this very operation.
        now = get_operation(ctx, org_id, op_id)
        if now.status is OperationStatus.ROLLING_BACK and now.lease_owner not in (None, owner):
            raise Conflict(f"Operation {op_id} is being rolled back by {now.lease_owner}.")
        if now.status is OperationStatus.ROLLED_BACK and not redo_conflicts:
            return now
        time.sleep(0.2)
    spec = spec_for(op.entity_type)
    # A cancel asked for after this moment stops this run of the rollback (not an earlier
    # cancel of the operation itself).
    run_started = utcnow()
    with ctx.store.transaction(org_id, write=True) as tx:
        values: dict[str, Any] = {"rollback_requested_by": user_id, "rollback_force": force}
        if op.rollback_started_at is None or redo_conflicts:
            values["rollback_started_at"] = utcnow()
        tx.operations.update(op_id, values)
        # Groups restored side by side may have left a gap in the indexes before a crash.
        chunk_index = max(tx.ledger.committed(op_id, ROLLBACK), default=-1) + 1
        tx.events.add(op_id, "status", {"status": OperationStatus.ROLLING_BACK})
        op = tx.operations.get(op_id) or op
    total = (op.created_records + op.updated_records + op.deleted_records)
    progress = Progress(op.rolled_back_records or 0)
    # First every batch still 'applied' (a fresh or resumed rollback), newest first, by id.
    # Then, when forced, the records left as conflicts (a forced second rollback, or a forced
    # one resumed after a crash), in the batches marked 'conflict'; those may stay conflicts
    # (the database refuses them), so the batches are paged through by id.
    passes = ["applied", "conflict"] if force else ["applied"]
    with ctx.store.pinned():  # one connection for the whole run
        stopped = _rollback_batches(
            ctx, org_id, op_id, spec, passes, force=force, owner=owner,
            chunk_index=chunk_index, total=total, progress=progress,
            run_started=run_started, on_progress=on_progress,
            # SQLite has one writer at a time: one group in flight, the next being read.
            lanes=min(OperationConfig.model_validate(op.config).max_concurrent, _MAX_LANES)
            if ctx.store.dialect.concurrent_writers else 1,
        )
    if stopped:
        return stop_rollback(ctx, org_id, op_id, on_progress)
    with ctx.store.transaction(org_id, write=True) as tx:
        final = tx.operations.get(op_id)
        assert final is not None
        results = dict(final.results)
        results["rollback"] = {
            "rolled_back_by": user_id,
            "forced": force,
            "restored_records": final.rolled_back_records,
            "conflict_records": final.conflict_records,
            "started_at": final.rollback_started_at.isoformat()
            if final.rollback_started_at else None,
            "completed_at": utcnow().isoformat(),
        }
        final = write_end(
            tx,
            op_id,
            {
                "status": OperationStatus.ROLLED_BACK,
                "rollback_completed_at": utcnow(),
                "completed_at": final.completed_at or utcnow(),
                "lease_owner": None,
                "lease_expires_at": None,
                "results": orjson.dumps(results).decode(),
            },
        )
    if on_progress:
        on_progress({**operation_view(final), "phase": "done"})
    return final


def _rollback_batches(
    ctx: Context,
    org_id: int,
    op_id: str,
    spec: EntitySpec,
    passes: Sequence[str],
    *,
    force: bool,
    owner: str,
    chunk_index: int,
    total: int,
    progress: Progress,
    run_started: datetime,
    lanes: int,
    on_progress: ProgressCallback | None,
) -> bool:
    """Restore group after group of batches, newest first, through the ``passes``; whether
    a cancel stopped it.

    This thread reads the groups; ``lanes`` threads restore them, each on its own
    connection, so that up to ``lanes`` groups are in flight (the operation's
    ``max_concurrent``). The records of one operation's batches are distinct rows, so groups
    restored side by side never touch the same row; each commits on its own with its marks,
    ledger row, counters and event. A pass ends once all its groups have: the next pass
    (conflicts) reads what the first one left.
    """
    work: queue.SimpleQueue[tuple[str, list[ChangeBatch], int] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[tuple[dict[str, Any], bool] | BaseException] = queue.SimpleQueue()

    def restore_groups() -> None:
        with ctx.store.pinned():  # one connection for the lane's whole run
            while (item := work.get()) is not None:
                target, batches, index = item
                try:
                    done.put(_rollback_group_retried(
                        ctx, org_id, op_id, spec, target, batches,
                        force=force, owner=owner, chunk_index=index, total=total,
                        progress=progress, run_started=run_started,
                    ))
                except BaseException as exc:  # handed to the reading thread, raised there
                    done.put(exc)

    threads = [
        threading.Thread(target=restore_groups, name=f"bulkops-rollback-{n}", daemon=True)
        for n in range(max(1, lanes))
    ]
    for thread in threads:
        thread.start()
    stopped = False
    failure: BaseException | None = None
    shown = -1
    in_flight = 0

    def collect() -> None:
        nonlocal in_flight, stopped, failure, shown
        result = done.get()
        in_flight -= 1
        if isinstance(result, BaseException):
            failure = failure or result
            return
        event, cancelled = result
        stopped = stopped or cancelled
        # Groups commit in any order; the counters each event carries only grow.
        if on_progress and event["processed_records"] > shown:
            shown = event["processed_records"]
            on_progress(event)

    try:
        for target in passes:
            before_id: int | None = None
            while not stopped and failure is None:
                batches, cancelled = _read_group(ctx, org_id, op_id, target, before_id,
                                                 run_started)
                if cancelled:  # no group starts after a cancel; those in flight finish
                    stopped = True
                    break
                if not batches:
                    break
                before_id = batches[-1].id  # newest first: the next group is older
                work.put((target, batches, chunk_index))
                chunk_index += 1
                in_flight += 1
                if in_flight >= len(threads):
                    collect()
            while in_flight:
                collect()
            if stopped or failure is not None:
                break
    finally:
        # Each lane ends after the group it holds (an interrupt, say Ctrl-C, arrives here
        # with groups in flight: they commit, and their results are dropped).
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
    if failure is not None:
        raise failure
    return stopped


def _rollback_group_retried(
    ctx: Context,
    org_id: int,
    op_id: str,
    spec: EntitySpec,
    target: str,
    batches: list[ChangeBatch],
    **kwargs: Any,
) -> tuple[dict[str, Any], bool]:
    """:func:`_rollback_group`, first without a savepoint around each batch's statements
    (two round trips fewer a batch); a refused statement ends the transaction, and the group
    goes again with them, where a refused batch falls back to restoring its records one by
    one."""
    try:
        return _rollback_group(ctx, org_id, op_id, spec, target, batches, careful=False,
                               **kwargs)
    except BatchRefused:
        return _rollback_group(ctx, org_id, op_id, spec, target, batches, careful=True,
                               **kwargs)


def _read_group(
    ctx: Context, org_id: int, op_id: str, target: str, before_id: int | None,
    run_started: datetime,
) -> tuple[list[ChangeBatch], bool]:
    """The newest batches in status ``target`` older than ``before_id`` (up to
    ``rollback_batches`` of them), newest first; and whether a cancel of this run came."""
    with ctx.store.transaction(org_id) as tx:
        op = tx.operations.require(op_id)
        if op.cancel_requested_at is not None and op.cancel_requested_at >= run_started:
            return [], True
        return tx.audit.change_batches(
            op_id, newest_first=True, statuses=(target,), before_id=before_id,
            limit=ctx.settings.rollback_batches,
        ), False


def _rollback_group(
    ctx: Context,
    org_id: int,
    op_id: str,
    spec: EntitySpec,
    target: str,
    batches: Sequence[ChangeBatch],
    *,
    force: bool,
    careful: bool,
    owner: str,
    chunk_index: int,
    total: int,
    progress: Progress,
    run_started: datetime,
) -> tuple[dict[str, Any], bool]:
    """Restore these batches (a group read by :func:`_read_group`) in one transaction with
    their marks, one ledger row, the counters and one progress event.

    Returns (the event, whether a cancel stops the rollback). Raises :class:`BatchRefused`
    (``careful`` off) where the database refused a batch's statement: nothing of the group
    is committed.

    A group of batches per transaction rather than one: a transaction's own statements (its
    begin, the ledger row, the counters, the event, its commit) cost about as much as
    restoring a few hundred records.
    """
    with ctx.store.transaction(org_id, write=True, bulk=True) as tx:
        restored = conflicts = records = 0
        for batch in batches:  # newest first
            # Newest first inside the batch too; a conflict pass retries the conflicts only.
            todo = [p for p in batch.positions(reverse=True)
                    if target == "applied" or batch.outcome(p)[0] == "conflict"]
            outcomes, done_now, conflicts_now = _restore(
                tx, spec, batch, todo, force, careful=careful
            )
            # The batch's outcomes: those of the records not retried now, then the new ones.
            retried = set(todo)
            kept = {p: o for p, o in batch.outcomes.items() if p not in retried}
            tx.audit.mark_changes(batch.id, kept | outcomes)
            restored += done_now
            conflicts += conflicts_now
            records += len(todo)
        deltas = {"rolled_back_records": restored, "conflict_records": conflicts}
        if target == "conflict":
            # Every record retried was counted as a conflict already.
            deltas["conflict_records"] = -restored
        # Checked last, under the update's lock: a lost lease undoes this group.
        updated = advance(
            tx, op_id, owner, deltas,
            {"lease_expires_at": time.time() + ctx.settings.lease_seconds},
            ledger=LedgerEntry(ROLLBACK, chunk_index, None, None, records),
        )
        done = updated.rolled_back_records + updated.conflict_records
        figures = progress.figures(done, done / total if total else 1.0)
        event = {
            "status": OperationStatus.ROLLING_BACK,
            "phase": "rolling_back",
            "total_records": total,
            "processed_records": done,
            "rolled_back_records": updated.rolled_back_records,
            "conflict_records": updated.conflict_records,
            "percentage": round(100 * done / total, 1) if total else 100.0,
            "rate": figures["rate"],
            "estimated_time_remaining": figures["estimated_time_remaining"],
        }
        tx.events.add(op_id, "rollback-progress", event)
        stopped = (
            updated.cancel_requested_at is not None
            and updated.cancel_requested_at >= run_started
        )
    return event, stopped


def stop_rollback(
    ctx: Context, org_id: int, op_id: str, on_progress: ProgressCallback | None = None
) -> Operation:
    """End this process's rollback part-way, as a cancel asked (see :func:`end_rollback_early`)."""
    with ctx.store.transaction(org_id, write=True) as tx:
        final = end_rollback_early(tx, tx.operations.require(op_id))
    if on_progress:
        on_progress({**operation_view(final), "phase": "done"})
    return final


def _delete_unchanged_creates(
    tx: Tx,
    spec: EntitySpec,
    batch: ChangeBatch,
    positions: Sequence[int],
    image: Callable[[list[Any] | None], tuple[Any, ...] | None],
    *,
    careful: bool,
) -> list[int]:
    """Delete the rows these records created that still equal their after-image, in one
    statement; the positions of those deleted. None deleted where the database cannot do it
    in one statement, or where a row is referenced meanwhile (the statement is undone and
    the records are restored one by one). Without ``careful`` the statement goes without its
    savepoint, and a refusal raises :class:`BatchRefused`."""
    if not tx.rows.deletes_unchanged:
        return []
    creates: list[tuple[int, tuple[Any, ...]]] = []
    at: list[int] = []
    for position in positions:
        entity_id, after = batch.ids[position], image(batch.after[position])
        if batch.action(position) == "create" and entity_id is not None and after is not None:
            creates.append((entity_id, after))
            at.append(position)
    if not creates:
        return []
    if not careful:
        try:
            deleted = tx.rows.delete_unchanged(spec.entity.value, spec.field_names, creates)
        except DuplicateRow as exc:
            raise BatchRefused(str(exc)) from exc
    else:
        try:
            with tx.savepoint():
                deleted = tx.rows.delete_unchanged(spec.entity.value, spec.field_names, creates)
        except DuplicateRow:
            return []
    if not deleted:
        return []
    return [p for p, (entity_id, _) in zip(at, creates, strict=True) if entity_id in deleted]


def _restore(
    tx: Tx, spec: EntitySpec, batch: ChangeBatch, positions: Sequence[int], force: bool,
    *, careful: bool = True,
) -> tuple[dict[int, tuple[str, str | None]], int, int]:
    """Restore these records of one batch (in this order).

    Returns (outcomes, restored, conflicts): ``outcomes`` names the records not plainly
    rolled back (position -> (status, error)), i.e. the conflicts.
    """
    entity = spec.entity.value
    fields = spec.field_names
    same_order = batch.fields == tuple(fields)

    def image(values: list[Any] | None) -> tuple[Any, ...] | None:
        if values is None:
            return None
        if same_order:
            return tuple(values)
        by_name = dict(zip(batch.fields, values, strict=True))
        return tuple(by_name.get(f) for f in fields)

    # The records this operation created go first, in one statement that deletes each row
    # still equal to its after-image (where the database can: PostgreSQL). What is left (rows
    # changed or deleted since, the other actions) is read back and compared below.
    gone = (
        _delete_unchanged_creates(tx, spec, batch, positions, image, careful=careful)
        if not force else []
    )
    if gone:
        taken = set(gone)
        positions = [p for p in positions if p not in taken]
    current = tx.rows.by_id(
        entity, fields, [i for i in (batch.ids[p] for p in positions) if i is not None]
    )
    # (position, entity id) of each record to write back, with the image to restore.
    to_delete: list[_Target] = []
    to_update: list[tuple[_Target, tuple[Any, ...]]] = []
    to_insert: list[tuple[_Target, tuple[Any, ...]]] = []
    marks: dict[int, tuple[str, str | None]] = {}

    for position in positions:
        entity_id = batch.ids[position]
        assert entity_id is not None
        record = (position, entity_id)
        now = current.get(entity_id)
        after = image(batch.after[position])
        before = image(batch.before[position])
        action = batch.action(position)
        if action == "delete":
            if now is not None:
                marks[position] = ("conflict", "A row with this id exists again; not restored.")
            else:
                assert before is not None
                to_insert.append((record, before))
            continue
        if now is None:
            if action == "create" or not force:
                if action == "create" and force:
                    marks[position] = ("rolled_back", None)
                else:
                    marks[position] = ("conflict", "The row was deleted after this operation "
                                       "wrote it; not restored.")
                continue
            assert before is not None
            to_insert.append((record, before))
            continue
        if now != after and not force:
            changed = [f for f, a, b in zip(fields, after or (), now, strict=False) if a != b]
            marks[position] = ("conflict", "Changed after this operation wrote it "
                               f"({', '.join(changed)}); not restored. Roll back with --force "
                               "to overwrite.")
            continue
        if action == "create":
            to_delete.append(record)
        else:
            assert before is not None
            to_update.append((record, before))

    restored = len(gone)

    def write(deletes: list[_Target], updates: list[tuple[_Target, tuple[Any, ...]]],
              inserts: list[tuple[_Target, tuple[Any, ...]]]) -> None:
        tx.rows.delete(entity, [i for _, i in deletes])
        tx.rows.update(entity, fields, [(i, v) for (_, i), v in updates])
        tx.rows.insert(entity, fields, [v for _, v in inserts], ids=[i for (_, i), _ in inserts])

    try:
        if to_delete or to_update or to_insert:
            with tx.savepoint():
                write(to_delete, to_update, to_insert)
        restored += len(to_delete) + len(to_update) + len(to_insert)
    except DuplicateRow:
        singles: list[tuple[list[_Target], list[tuple[_Target, tuple[Any, ...]]],
                            list[tuple[_Target, tuple[Any, ...]]]]]
        singles = ([([r], [], []) for r in to_delete] + [([], [u], []) for u in to_update]
                   + [([], [], [i]) for i in to_insert])
        for single in singles:
            position = (single[0] or [u[0] for u in single[1]] or [i[0] for i in single[2]])[0][0]
            try:
                with tx.savepoint():
                    write(*single)
            except DuplicateRow as exc:
                marks[position] = ("conflict", f"The database refused to restore this row: "
                                   f"{str(exc).strip().splitlines()[0]}")
                continue
            restored += 1
    conflicts = sum(1 for status, _ in marks.values() if status == "conflict")
    restored += sum(1 for status, _ in marks.values() if status == "rolled_back")
    # Only what is not a plain "rolled_back" is kept with the batch.
    outcomes = {p: o for p, o in marks.items() if o != ("rolled_back", None)}
    return outcomes, restored, conflicts
