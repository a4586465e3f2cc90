"""Writing a decided chunk: its rows and its audit batch, in the caller's transaction.

A batch that hits a constraint is written again record by record, each in its own savepoint,
so that the one bad record becomes a row error naming its row and the rest of the chunk lands.
A caller that can start the chunk's transaction over may skip the batch's savepoint
(``careful=False``): the refusal then ends the transaction, and the caller applies the chunk
again, carefully, in a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from bulkops.engine.chunk import ChunkPlan
from bulkops.entities import EntitySpec
from bulkops.model import RawRecord, RecordError
from bulkops.store import AuditRecord, DuplicateRow, Tx

__all__ = ["BatchRefused", "apply_plan"]


class BatchRefused(Exception):
    """The batch, written without a savepoint, hit a constraint: the transaction is lost."""


def apply_plan(
    tx: Tx,
    spec: EntitySpec,
    op_id: str,
    plan: ChunkPlan,
    chunk: Sequence[RawRecord],
    *,
    careful: bool = True,
) -> None:
    """Write one chunk's plan and its audit records; a bad record never sinks its chunk.

    Without ``careful`` the batch goes without its savepoint (two round trips fewer a chunk
    on PostgreSQL) and a refusal raises :class:`BatchRefused`, leaving the transaction to be
    rolled back and the plan to be applied again with ``careful``.
    """
    write = _write_new if plan.new_rows is not None else _write
    if not careful:
        try:
            write(tx, spec, op_id, plan)
        except DuplicateRow as exc:
            raise BatchRefused(str(exc)) from exc
        return
    try:
        with tx.savepoint():
            write(tx, spec, op_id, plan)
    except DuplicateRow:
        plan.expand()
        _write_one_by_one(tx, spec, op_id, plan, chunk)


def _write_new(tx: Tx, spec: EntitySpec, op_id: str, plan: ChunkPlan) -> None:
    """Write a plan's :class:`~bulkops.engine.chunk.NewRows` and their audit batch, from the
    rows as the reader built them and their values as it encoded them."""
    new = plan.new_rows
    if new is None or not new.rows:
        return
    entity = spec.entity.value
    ids = tx.rows.insert_built(entity, spec.field_names, new.built, new.keys())
    tx.audit.insert_created(op_id, spec.field_names, new.rows, ids, new.values_json)


def _write(
    tx: Tx, spec: EntitySpec, op_id: str, plan: ChunkPlan, *, audit: bool = True
) -> list[AuditRecord]:
    """Write the plan's rows and (``audit``) its audit as one batch; returns the audit records.

    An audit record is (record_index, entity_id, action, before, after).
    """
    plan.expand()
    entity = spec.entity.value
    fields = spec.field_names
    ids = tx.rows.insert(entity, fields, [values for _, values in plan.creates], built=plan.built)
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
    plan.built = None  # built for the creates as they were
    plan.failures = kept.failures


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "constraint violated"

