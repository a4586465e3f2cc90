"""Running an import, update or delete: read, map, validate, chunk, apply, audit.

One chunk is one transaction holding its writes, their audit records (before and after
image), its ledger row, the counter update and a progress event. A chunk already in the
ledger is skipped, which is what makes a resumed or redelivered run exact.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import operator
import os
import socket
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

import orjson

from bulkops.engine.operations import COUNTERS, Context, OperationConfig, operation_view
from bulkops.engine.scheduling import try_start
from bulkops.entities import SPECS, EntitySpec, HeaderMap, RecordValidator, spec_for
from bulkops.errors import BulkopsError, Conflict, NotFound, StoreError
from bulkops.formats import CsvFile
from bulkops.model import (
    EntityType,
    FieldError,
    OperationStatus,
    OperationType,
    RawRecord,
    RecordError,
)
from bulkops.store import AuditRecord, DuplicateRow, Tx, utcnow

__all__ = ["ChunkSender", "KeyRegistry", "ProgressCallback", "process_owner", "run_operation"]

ProgressCallback = Callable[[dict[str, Any]], None]
ChunkSender = Callable[[int, str, int], None]
"""Asks any worker to apply chunk ``index`` of operation ``op_id`` of ``org_id``."""
APPLY = "apply"


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(slots=True)
class ChunkPlan:
    """What one chunk would do: the decision for every record, before anything is written."""

    creates: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)  # (row, values)
    updates: list[tuple[int, int, tuple[Any, ...], tuple[Any, ...]]] = field(
        default_factory=list
    )  # (row, id, before, after)
    deletes: list[tuple[int, int, tuple[Any, ...]]] = field(
        default_factory=list
    )  # (row, id, before)
    unchanged: int = 0
    failures: list[tuple[RawRecord, list[RecordError]]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def counters(self) -> dict[str, int]:
        changed = len(self.creates) + len(self.updates) + len(self.deletes)
        return {
            "processed_records": changed + self.unchanged + self.failed,
            "successful_records": changed + self.unchanged,
            "failed_records": self.failed,
            "unchanged_records": self.unchanged,
            "created_records": len(self.creates),
            "updated_records": len(self.updates),
            "deleted_records": len(self.deletes),
        }


@dataclass(slots=True)
class Prepared:
    """A chunk after the file-only checks, ready to be decided against the database."""

    chunk: Sequence[RawRecord]
    plan: ChunkPlan
    valid: list[tuple[RawRecord, dict[str, Any], tuple[Any, ...]]]
    bytes_consumed: int = 0
    index: int = 0
    encoded: bytes = b""  # as it came from the reader process (engine.pipeline), if it did
    #: The records' raw cells as JSON, when they came apart from the records (from the reader
    #: process): only a record that fails needs them, so they are decoded on first use.
    cells_json: bytes = b""
    _cells: dict[int, Sequence[str]] | None = None

    def cells_of(self, raw: RawRecord) -> Sequence[str]:
        """The raw cells of one of the chunk's records, as read from the file."""
        if not self.cells_json:
            return raw.values
        if self._cells is None:
            rows = [r.row for r in self.chunk]
            self._cells = dict(zip(rows, orjson.loads(self.cells_json), strict=True))
        cells: Sequence[str] = self._cells[raw.row]
        return cells


class KeyRegistry(Protocol):
    """Where the natural keys already seen in the file are kept (a :class:`SeenKeys`)."""

    def check_and_add(self, keys: Sequence[tuple[str, int]]) -> dict[int, int]: ...

    def reserve(self, keys: int) -> None: ...


class Evaluator:
    """Decides, chunk by chunk, what each record does against the current data."""

    def __init__(
        self, spec: EntitySpec, operation: OperationType, header: HeaderMap, seen: KeyRegistry
    ) -> None:
        self.spec = spec
        self.operation = operation
        self.header = header
        self.seen = seen
        self.fields = spec.field_names
        self.validator: RecordValidator = spec.validator(operation, header.present)
        self._index = {name: i for i, name in enumerate(self.fields)}
        #: Set for an import that began on an empty table (no row of the organization): the
        #: keys of a chunk cannot exist then (duplicates in the file are errors, and nobody
        #: else writes this entity meanwhile), so the look-up of current rows is skipped. A
        #: row written behind bulkops' back is still refused by the unique key and reported.
        self.started_empty = False
        self._dependents = [
            (other.entity.value, ref.fields[0])
            for other in SPECS.values()
            for ref in other.references
            if ref.entity == spec.entity and len(ref.fields) == 1
        ]

    def prepare(self, chunk: Sequence[RawRecord]) -> Prepared:
        """The file-only half: read errors, validation, duplicate keys (no database)."""
        plan = ChunkPlan()
        readable: list[RawRecord] = []
        for raw in chunk:
            if raw.error is not None:
                plan.failures.append((raw, [RecordError(raw.row, raw.line, None, None, raw.error)]))
            else:
                readable.append(raw)
        outcomes = self.validator.validate_batch(self.header.to_dicts([r.values for r in readable]))
        valid: list[tuple[RawRecord, dict[str, Any], tuple[Any, ...]]] = []
        key = self.spec.key
        single = key[0] if len(key) == 1 else None
        many = operator.itemgetter(*key)
        for raw, outcome in zip(readable, outcomes, strict=True):
            if isinstance(outcome, dict):
                # The natural key, as spec.key_of gives it (inlined: this runs per record).
                valid.append((raw, outcome, (outcome[single],) if single else many(outcome)))
            else:
                plan.failures.append((raw, [self._field_error(raw, e) for e in outcome]))
        if len(self.spec.key) == 1:
            texts = [(str(key[0]), raw.row) for raw, _, key in valid]
        else:
            texts = [("\x1f".join(map(str, key)), raw.row) for raw, _, key in valid]
        repeats = self.seen.check_and_add(texts)
        if repeats:
            kept = []
            for raw, values, key in valid:
                earlier = repeats.get(raw.row)
                if earlier is None:
                    kept.append((raw, values, key))
                    continue
                message = (
                    f"Duplicate key: {self._label(key)} already appears in row {earlier}. "
                    "Keep one of the two rows."
                )
                plan.failures.append((raw, [self._key_error(raw, key, message)]))
            valid = kept
        return Prepared(chunk, plan, valid)

    def evaluate(self, tx: Tx, prepared: Prepared) -> ChunkPlan:
        """The database half: references, current rows, and the decision for each record."""
        plan = prepared.plan
        valid = prepared.valid
        if self.operation is not OperationType.DELETE:
            valid = self._check_references(tx, plan, valid)
        existing = (
            {}
            if self.started_empty
            else tx.rows.fetch_existing(
                self.spec.entity.value, self.spec.key, self.fields, [k for _, _, k in valid]
            )
        )
        if self.operation is OperationType.IMPORT:
            self._plan_import(plan, valid, existing)
        elif self.operation is OperationType.UPDATE:
            self._plan_update(plan, valid, existing)
        else:
            self._plan_delete(tx, plan, valid, existing)
        return plan

    # -- per operation -------------------------------------------------------------------------

    def _plan_import(self, plan: ChunkPlan, valid: list[Any], existing: dict[Any, Any]) -> None:
        fields = self.fields
        # An import's validated record holds every field in template order (the validator's
        # output order), so its values are the row as stored.
        in_order = self.validator.fields == fields
        for raw, values, key in valid:
            after = tuple(values.values()) if in_order else tuple([values[f] for f in fields])
            current = existing.get(key)
            if current is None:
                plan.creates.append((raw.row, after))
            elif current[1] == after:
                plan.unchanged += 1
            else:
                plan.updates.append((raw.row, current[0], current[1], after))

    def _plan_update(self, plan: ChunkPlan, valid: list[Any], existing: dict[Any, Any]) -> None:
        index = self._index
        for raw, values, key in valid:
            current = existing.get(key)
            if current is None:
                plan.failures.append((raw, [self._not_found(raw, key)]))
                continue
            after = list(current[1])
            for name, value in values.items():
                after[index[name]] = value
            after_tuple = tuple(after)
            if after_tuple == current[1]:
                plan.unchanged += 1
            else:
                plan.updates.append((raw.row, current[0], current[1], after_tuple))

    def _plan_delete(
        self, tx: Tx, plan: ChunkPlan, valid: list[Any], existing: dict[Any, Any]
    ) -> None:
        blockers: list[tuple[str, dict[Any, int]]] = []
        if self._dependents and existing:
            values = [k[0] for k in existing]
            for entity, column in self._dependents:
                counts = tx.rows.count_referencing(entity, column, values)
                if counts:
                    blockers.append((entity, counts))
        for raw, _values, key in valid:
            current = existing.get(key)
            if current is None:
                plan.failures.append((raw, [self._not_found(raw, key)]))
                continue
            held = [
                f"{counts[key[0]]} {entity} row(s)"
                for entity, counts in blockers
                if key[0] in counts
            ]
            if held:
                message = (
                    f"Cannot delete {self.spec.key[0]} '{key[0]}': it still has "
                    f"{' and '.join(held)}. Delete those first."
                )
                plan.failures.append((raw, [self._key_error(raw, key, message)]))
                continue
            plan.deletes.append((raw.row, current[0], current[1]))

    def _check_references(self, tx: Tx, plan: ChunkPlan, valid: list[Any]) -> list[Any]:
        for ref in self.spec.references:
            if not all(f in (self.header.present | set(self.spec.key)) for f in ref.fields):
                continue
            wanted = {tuple(values[f] for f in ref.fields) for _, values, _ in valid}
            found = tx.rows.existing_keys(ref.entity.value, ref.target_fields, list(wanted))
            missing = wanted - found
            if not missing:
                continue
            kept = []
            for raw, values, key in valid:
                ref_key = tuple(values[f] for f in ref.fields)
                if ref_key in missing:
                    column = ref.fields[0]
                    target = (
                        ref.entity.value.rstrip("s")
                        if ref.entity is not EntityType.INVENTORY
                        else "inventory"
                    )
                    plan.failures.append(
                        (
                            raw,
                            [
                                RecordError(
                                    raw.row,
                                    raw.line,
                                    self.header.column_of(column),
                                    str(ref_key[0]),
                                    f"There is no {target} with {ref.target_fields[0]} "
                                    f"'{ref_key[0]}'. Create it first (import "
                                    f"{ref.entity.value}) or correct the value.",
                                )
                            ],
                        )
                    )
                else:
                    kept.append((raw, values, key))
            valid = kept
        return valid

    # -- messages --------------------------------------------------------------------------------

    def _field_error(self, raw: RawRecord, error: FieldError) -> RecordError:
        if error.field is None:
            return RecordError(raw.row, raw.line, None, None, error.message)
        column = self.header.column_of(error.field)
        value = self.header.to_dict(raw.values).get(error.field)
        return RecordError(raw.row, raw.line, column, value, error.message)

    def _not_found(self, raw: RawRecord, key: tuple[Any, ...]) -> RecordError:
        message = f"Not found: there is no {self.spec.entity.value} row with {self._label(key)}."
        return self._key_error(raw, key, message)

    def _key_error(self, raw: RawRecord, key: tuple[Any, ...], message: str) -> RecordError:
        """An error about the record's natural key, shown in the key's (first) column."""
        return RecordError(
            raw.row, raw.line, self.header.column_of(self.spec.key[0]), str(key[0]), message
        )

    def _label(self, key: tuple[Any, ...]) -> str:
        return ", ".join(f"{k} '{v}'" for k, v in zip(self.spec.key, key, strict=True))


def apply_plan(
    tx: Tx, spec: EntitySpec, op_id: str, plan: ChunkPlan, chunk: Sequence[RawRecord]
) -> None:
    """Write one chunk's plan and its audit records; a bad record never sinks its chunk."""
    try:
        with tx.savepoint():
            _write(tx, spec, op_id, plan)
    except DuplicateRow:
        _write_one_by_one(tx, spec, op_id, plan, chunk)


def _write(
    tx: Tx, spec: EntitySpec, op_id: str, plan: ChunkPlan, *, audit: bool = True
) -> list[AuditRecord]:
    """Write the plan's rows and (``audit``) its audit as one batch; returns the audit records.

    An audit record is (record_index, entity_id, action, before, after).
    """
    entity = spec.entity.value
    fields = spec.field_names
    ids = tx.rows.insert(entity, fields, [values for _, values in plan.creates])
    tx.rows.update(entity, fields, [(row_id, after) for _, row_id, _, after in plan.updates])
    tx.rows.delete(entity, [row_id for _, row_id, _ in plan.deletes])
    # The images stay value tuples in field order: the batch is serialised once, in the store.
    records: list[AuditRecord] = [
        (row, row_id, "create", None, values)
        for (row, values), row_id in zip(plan.creates, ids, strict=True)
    ]
    records += [
        (row, row_id, "update", before, after) for row, row_id, before, after in plan.updates
    ]
    records += [(row, row_id, "delete", before, None) for row, row_id, before in plan.deletes]
    if audit and records:
        tx.audit.insert_changes(op_id, fields, records)
    return records


def _write_one_by_one(
    tx: Tx, spec: EntitySpec, op_id: str, plan: ChunkPlan, chunk: Sequence[RawRecord]
) -> None:
    """The batch hit a constraint: apply each record in its own savepoint to name the row."""
    records = {raw.row: raw for raw in chunk}
    kept = ChunkPlan(unchanged=plan.unchanged, failures=list(plan.failures))
    singles: list[ChunkPlan] = (
        [ChunkPlan(creates=[c]) for c in plan.creates]
        + [ChunkPlan(updates=[u]) for u in plan.updates]
        + [ChunkPlan(deletes=[d]) for d in plan.deletes]
    )
    audited: list[AuditRecord] = []
    for single in singles:
        try:
            with tx.savepoint():
                written = _write(tx, spec, op_id, single, audit=False)
        except DuplicateRow as exc:
            row = (single.creates or single.updates or single.deletes)[0][0]
            raw = records[row]
            kept.failures.append(
                (
                    raw,
                    [
                        RecordError(
                            row,
                            raw.line,
                            None,
                            None,
                            f"The database refused this record: {_first_line(str(exc))}. It may "
                            "have been changed by someone else meanwhile; check it and upload it "
                            "again.",
                        )
                    ],
                )
            )
            continue
        audited += written
        kept.creates.extend(single.creates)
        kept.updates.extend(single.updates)
        kept.deletes.extend(single.deletes)
    # The records that went in, audited as one batch in the chunk's transaction.
    if audited:
        tx.audit.insert_changes(op_id, spec.field_names, audited)
    plan.creates, plan.updates, plan.deletes = kept.creates, kept.updates, kept.deletes
    plan.failures = kept.failures


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "constraint violated"


def failure_rows(
    plan: ChunkPlan, prepared: Prepared | None = None
) -> list[tuple[int, int, str, str]]:
    """The plan's failed records as error-report rows (with their cells from ``prepared``)."""
    dumps = orjson.dumps
    cells_of = prepared.cells_of if prepared is not None else (lambda raw: raw.values)
    return [
        (
            raw.row,
            raw.line,
            dumps([e.as_dict() for e in errors]).decode(),
            dumps(cells_of(raw)).decode(),
        )
        for raw, errors in plan.failures
    ]


def chunked(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _prepared_chunks(
    csv_file: CsvFile, evaluator: Evaluator, chunk_size: int
) -> Iterator[Prepared]:
    """Chunks after the file-only checks, numbered, with how far into the file they end.

    It runs in the reader process of :mod:`bulkops.engine.pipeline` (or in-process). A
    background thread did not pay: the GIL convoy with the driver cost more than the
    overlap gained.
    """
    records_read = 0
    sized = False
    for index, chunk in enumerate(chunked(csv_file.records(), chunk_size)):
        records_read += len(chunk)
        consumed = csv_file.bytes_consumed
        if not sized and consumed and (
            consumed >= 1 << 20 or consumed >= csv_file.file_size_bytes
        ):
            # Size the duplicate-key table once for the whole file from the bytes per record
            # of its first megabyte (5 % margin; read-ahead blurs a smaller sample), so it
            # does not grow, and briefly exist twice, while the file streams.
            ratio = csv_file.file_size_bytes / consumed
            evaluator.seen.reserve(int(records_read * ratio * 1.05) + 1)
            sized = True
        prepared = evaluator.prepare(chunk)
        prepared.index = index
        prepared.bytes_consumed = csv_file.bytes_consumed
        yield prepared


class Progress:
    """Rate and time remaining of a run, measured from this process's start."""

    def __init__(self, already_done: int) -> None:
        self.started = time.monotonic()
        self.base = already_done

    def figures(self, processed: int, fraction: float) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = max(processed - self.base, 0) / elapsed
        total = max(round(processed / fraction), processed) if fraction > 0 else None
        remaining = (total - processed) / rate if rate > 0 and total is not None else None
        return {
            "rate": round(rate, 1),
            "estimated_time_remaining": round(remaining, 1) if remaining is not None else None,
            "total_estimate": total,
        }


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
) -> dict[str, Any]:
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
            _fail(ctx, org_id, op_id, owner, exc, on_progress)
            raise


def _fail(
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
            if op is None or op["status"] != "processing" or op["lease_owner"] != owner:
                return
            view = operation_view(_mark_failed(tx, op, reason))
    except StoreError:
        return  # the lease expires and a resume will meet the same fault again
    if on_progress:
        on_progress({**view, "phase": "done"})


def _run_operation(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
    wait: Callable[[], bool] | None,
    send_chunk: ChunkSender | None,
) -> dict[str, Any]:
    op = _claim(ctx, org_id, op_id, owner, wait)
    if op["status"] != "processing":
        return op
    config = OperationConfig.model_validate_json(op["config"])
    spec = spec_for(op["entity_type"])
    lease = ctx.settings.lease_seconds
    with ctx.store.transaction(org_id) as tx:
        committed = tx.ledger.committed(op_id, APPLY)
        op_now = tx.operations.get(op_id)
    assert op_now is not None
    op = op_now
    if config.validate_only or (config.rollback_on_error and not committed):
        planned, cancelled = _plan_pass(ctx, org_id, op, config, spec, owner, on_progress)
        if cancelled:  # nothing was applied yet
            return _finish(ctx, org_id, op_id, "cancelled", planned, on_progress, cancelled=True)
        if config.validate_only or planned["failed_records"]:
            status = "completed" if config.validate_only else "rolled_back"
            return _finish(ctx, org_id, op_id, status, planned, on_progress)
    if send_chunk is not None and config.max_concurrent > 1:
        from bulkops.engine.fanout import coordinate

        return coordinate(
            ctx, org_id, op, config, spec, owner=owner, on_progress=on_progress,
            send_chunk=send_chunk,
        )
    from bulkops.engine.pipeline import checked_operation

    progress = Progress(sum(committed.values()))
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
    op: dict[str, Any],
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
    """
    op_id = op["id"]
    current = op
    lease = ctx.settings.lease_seconds
    for prepared in chunks:
        index, chunk = prepared.index, prepared.chunk
        if index in committed:
            keeper.keep()  # re-reading a long file after a crash takes a while
            continue
        fraction = min(prepared.bytes_consumed / size, 1.0)
        try:
            with ctx.store.transaction(org_id, write=True) as tx:
                plan = evaluator.evaluate(tx, prepared)
                apply_plan(tx, spec, op_id, plan, chunk)
                tx.audit.insert_errors(op_id, failure_rows(plan, prepared))
                counters = plan.counters()
                processed = current["processed_records"] + counters["processed_records"]
                figures = progress.figures(processed, fraction)
                eta = figures["estimated_time_remaining"]
                tx.ledger.record(
                    op_id, APPLY, index, chunk[0].row, chunk[-1].row, len(chunk), worker=owner
                )
                updated = tx.operations.advance(
                    op_id,
                    owner,
                    counters,
                    total_records=max(figures["total_estimate"] or 0, processed),
                    bytes_processed=prepared.bytes_consumed,
                    estimated_completion=utcnow() + timedelta(seconds=eta) if eta else None,
                    lease_expires_at=time.time() + lease,
                    attempts=0,
                )
                if updated is None:
                    held = tx.operations.get(op_id)
                    if held is None:
                        raise NotFound(f"No operation {op_id}.")
                    raise Conflict(f"Operation {op_id} was taken over by {held['lease_owner']}.")
                if updated["cancel_requested_at"] is not None:
                    raise _Cancelled
                event = _progress_event(updated, figures)
                tx.events.add(op_id, "progress", event)
        except _Cancelled:
            return "cancelled"
        current = updated
        if on_progress:
            on_progress(event)
        if updated["failed_records"] > config.max_errors:
            return "failed"
    return None


def conclude(
    ctx: Context,
    org_id: int,
    op_id: str,
    config: OperationConfig,
    stopped: str | None,
    *,
    owner: str,
    on_progress: ProgressCallback | None,
) -> dict[str, Any]:
    """End an operation whose chunks are all applied, or that ``stopped`` early.

    ``stopped`` is ``"cancelled"``, ``"failed"`` (too many errors) or None. A cancel that asks
    for it, or ``rollback_on_error`` with failed records, rolls back what was applied.
    """
    from bulkops.engine.rollback import rollback_applied

    with ctx.store.transaction(org_id, write=True) as tx:
        tx.ledger.delete_plans(op_id)  # chunks handed out to workers and not applied
        op_final = tx.operations.get(op_id)
    assert op_final is not None
    if stopped is None and op_final["cancel_requested_at"] is not None:
        stopped = "cancelled"  # asked for while the last chunk was being applied
    if stopped == "cancelled":
        if op_final["cancel_rollback"]:
            _set_status(ctx, org_id, op_id, "cancelled", cancelled=True)
            return rollback_applied(
                ctx,
                org_id,
                op_id,
                owner=owner,
                on_progress=on_progress,
                force=False,
                user_id=op_final["cancelled_by"],
            )
        return _finish(ctx, org_id, op_id, "cancelled", None, on_progress, cancelled=True)
    if config.rollback_on_error and op_final["failed_records"]:
        _set_status(ctx, org_id, op_id, "failed")
        return rollback_applied(
            ctx,
            org_id,
            op_id,
            owner=owner,
            on_progress=on_progress,
            force=False,
            user_id=op_final["created_by"],
        )
    status = "failed" if stopped == "failed" else "completed"
    return _finish(ctx, org_id, op_id, status, None, on_progress)


def _plan_pass(
    ctx: Context,
    org_id: int,
    op: dict[str, Any],
    config: OperationConfig,
    spec: EntitySpec,
    owner: str,
    on_progress: ProgressCallback | None,
) -> tuple[dict[str, int], bool]:
    """Validate the whole file against the current data without writing any entity row.

    Returns the planned counters and whether a cancel stopped the pass.
    """
    from bulkops.engine.pipeline import checked_operation

    op_id = op["id"]
    totals = dict.fromkeys(ChunkPlan().counters(), 0)
    progress = Progress(0)
    with checked_operation(ctx, org_id, op, config) as checked, ctx.store.pinned():
        evaluator = checked.evaluator
        size = max(checked.file_size_bytes, 1)
        with ctx.store.transaction(org_id, write=True) as tx:
            tx.audit.delete_errors_from_row(op_id, 0)
        for prepared in checked.chunks:
            with ctx.store.transaction(org_id) as tx:
                plan = evaluator.evaluate(tx, prepared)
            for name, value in plan.counters().items():
                totals[name] += value
            fraction = min(prepared.bytes_consumed / size, 1.0)
            figures = progress.figures(totals["processed_records"], fraction)
            with ctx.store.transaction(org_id, write=True) as tx:
                current = tx.operations.get(op_id)
                if current is None or current["cancel_requested_at"] is not None:
                    return totals, True
                tx.audit.insert_errors(op_id, failure_rows(plan, prepared))
                tx.operations.renew_lease(op_id, owner, ctx.settings.lease_seconds)
                tx.operations.update(op_id, {"bytes_processed": prepared.bytes_consumed})
                event = {
                    **totals,
                    "phase": "validating",
                    **figures,
                    "percentage": round(100 * fraction, 1),
                }
                tx.events.add(op_id, "progress", event)
            if on_progress:
                on_progress(event)
    return totals, False


def _progress_event(op: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    view = operation_view(op)
    return {
        "status": view["status"],
        "phase": "applying",
        **{k: view[k] for k in (*COUNTERS, "percentage")},
        "rate": figures["rate"],
        "estimated_time_remaining": figures["estimated_time_remaining"],
    }


def _claim(
    ctx: Context, org_id: int, op_id: str, owner: str, wait: Callable[[], bool] | None
) -> dict[str, Any]:
    while True:
        with ctx.store.transaction(org_id) as tx:
            op = tx.operations.get(op_id)
        if op is None:
            raise NotFound(f"No operation {op_id}.")
        status = OperationStatus(op["status"])
        if status.is_final:
            return op
        if status is OperationStatus.ROLLING_BACK:
            raise Conflict(f"Operation {op_id} is being rolled back; use: bulkops resume {op_id}")
        if (
            status is OperationStatus.PROCESSING
            and op["lease_owner"] != owner
            and (op["lease_expires_at"] or 0) > time.time()
        ):
            raise Conflict(
                f"Operation {op_id} is running in {op['lease_owner']}; its lease expires in "
                f"{op['lease_expires_at'] - time.time():.0f} s if that process has died."
            )
        if status is OperationStatus.PROCESSING and op["attempts"] >= ctx.settings.max_attempts:
            return _give_up(ctx, org_id, op)
        if try_start(ctx.store,
            org_id, op_id, owner, ctx.settings.lease_seconds, status="processing"
        ):
            op = get_fresh(ctx, org_id, op_id)
            if op["status"] == "processing" and op["cancel_requested_at"] is None:
                _event(ctx, org_id, op_id, "status", {"status": "processing"})
            return op
        if wait is None or not wait():
            return get_fresh(ctx, org_id, op_id)


def _give_up(ctx: Context, org_id: int, op: dict[str, Any]) -> dict[str, Any]:
    """End as failed an operation whose process died every time it was taken up."""
    op_id = op["id"]
    reason = (
        f"Given up after {op['attempts']} attempts in a row: the process running it ended "
        f"unexpectedly each time before committing a chunk (the last was {op['lease_owner']}). "
        "What was applied stays applied and can be rolled back; check the workers' logs."
    )
    with ctx.store.transaction(org_id, write=True) as tx:
        current = tx.operations.get(op_id)
        if current is None:
            raise NotFound(f"No operation {op_id}.")
        if current["status"] != "processing" or (current["lease_expires_at"] or 0) > time.time():
            return current  # somebody else took it up meanwhile
        return _mark_failed(tx, current, reason)


def _mark_failed(tx: Tx, op: dict[str, Any], reason: str) -> dict[str, Any]:
    """In ``tx``: end a running operation as failed with ``reason`` in its results."""
    op_id = op["id"]
    results = orjson.loads(op["results"] or "{}")
    results["error"] = reason
    tx.operations.update(
        op_id,
        {
            "status": "failed",
            "completed_at": utcnow(),
            "estimated_completion": None,
            "lease_owner": None,
            "lease_expires_at": None,
            "total_records": max(op["total_records"] or 0, op["processed_records"]),
            "results": orjson.dumps(results).decode(),
        },
    )
    tx.ledger.delete_plans(op_id)  # chunks handed out to workers and not applied
    final = tx.operations.get(op_id)
    assert final is not None
    tx.events.add(op_id, "done", operation_view(final))
    return final


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
            if held is None or held["lease_owner"] != self.owner:
                raise Conflict(f"Operation {self.op_id} was taken over by another process.")
            tx.operations.renew_lease(self.op_id, self.owner, self.seconds)
        self.renewed = time.monotonic()


def get_fresh(ctx: Context, org_id: int, op_id: str) -> dict[str, Any]:
    with ctx.store.transaction(org_id) as tx:
        op = tx.operations.get(op_id)
    if op is None:
        raise NotFound(f"No operation {op_id}.")
    return op


def _event(ctx: Context, org_id: int, op_id: str, name: str, data: dict[str, Any]) -> None:
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.events.add(op_id, name, data)


def _set_status(
    ctx: Context, org_id: int, op_id: str, status: str, *, cancelled: bool = False
) -> None:
    values: dict[str, Any] = {"status": status, "completed_at": utcnow()}
    if cancelled:
        values["cancelled_at"] = utcnow()
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.operations.update(op_id, values)


def _finish(
    ctx: Context,
    org_id: int,
    op_id: str,
    status: str,
    counters: dict[str, int] | None,
    on_progress: ProgressCallback | None,
    *,
    cancelled: bool = False,
) -> dict[str, Any]:
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
        elif status == "completed":
            values["total_records"] = op["processed_records"]  # the whole file was read
        else:
            # Stopped early: the total stays the estimate from the file's size, so the
            # percentage says how far the operation got.
            values["total_records"] = max(op["total_records"] or 0, op["processed_records"])
        if cancelled:
            values["cancelled_at"] = utcnow()
        failed = values.get("failed_records", op["failed_records"])
        results = orjson.loads(op["results"] or "{}")
        results.update(
            {
                "validate_only": bool(orjson.loads(op["config"]).get("validate_only")),
                "errors": failed,
                "first_errors": [
                    {"row": e["row"], "line": e["line"], **err}
                    for e in tx.audit.iter_errors(op_id, limit=10)
                    for err in e["errors"]
                ][:10],
            }
        )
        if status == "rolled_back" and counters is not None:
            results["rolled_back_reason"] = (
                "rollback_on_error: the file has failed records, so nothing was applied"
            )
        values["results"] = orjson.dumps(results).decode()
        tx.operations.update(op_id, values)
        final = tx.operations.get(op_id)
        assert final is not None
        view = operation_view(final)
        tx.events.add(op_id, "done", view)
    if on_progress:
        on_progress({**view, "phase": "done"})
    return final
