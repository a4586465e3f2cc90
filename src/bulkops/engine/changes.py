"""Planned changes: what a validate_only run would do, kept per chunk, read back in pages.

A check (a ``validate_only`` operation) keeps, for every record that would change, its row,
natural key, action and changed fields (:func:`keep_plan`, in the chunk's transaction): one
``operation_plans`` row per chunk, so memory stays bounded whatever the file's size. Pages are
read by position (chunk index, position in the chunk), never by offset: the page at the
millionth record costs what the first costs.

An operation that applies a check compares, chunk by chunk, each record's outcome with the
check's (:func:`differences_from_check`); the count ends in ``results.differs_from_check``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from bulkops.engine.chunk import ChunkPlan
from bulkops.engine.operations import Context
from bulkops.entities import EntitySpec, spec_for
from bulkops.errors import Conflict
from bulkops.formats import CsvWriter
from bulkops.model import Operation, RawRecord
from bulkops.store import PlanChunk, PlanImages, Tx, decode_plan

__all__ = [
    "ACTIONS",
    "ChangePosition",
    "differences_from_check",
    "iter_planned_changes",
    "keep_plan",
    "planned_change_counts",
    "planned_changes",
    "write_planned_changes",
]

ACTIONS = ("create", "update", "delete")
_LETTER = {"create": "c", "update": "u", "delete": "d"}
_ACTION = {"c": "create", "u": "update", "d": "delete"}

ChangePosition = tuple[int, int]
"""Where a planned change is: (chunk index, position among the chunk's changes)."""


def _images(spec: EntitySpec, plan: ChunkPlan) -> PlanImages:
    """What the check decided for a chunk, as it is kept: the images, not yet diffed (this
    runs for every record of a check; reading a page diffs only the records it shows)."""
    plan.expand()
    return {
        "fields": list(spec.field_names),
        "key": list(spec.key),
        "creates": plan.creates,
        "updates": [(row, before, after) for row, _id, before, after in plan.updates],
        "deletes": [(row, before) for row, _id, before in plan.deletes],
    }


def keep_plan(
    tx: Tx, spec: EntitySpec, op_id: str, index: int, chunk: Sequence[RawRecord], plan: ChunkPlan
) -> None:
    """In the chunk's transaction: store the records of ``plan`` that would change."""
    plan.expand()
    if not (plan.creates or plan.updates or plan.deletes):
        return
    tx.plans.insert(op_id, index, chunk[0].row, chunk[-1].row, _images(spec, plan))


def _decided(spec: EntitySpec, plan: ChunkPlan) -> PlanChunk:
    """The plan's changing records in row order, with their keys and changed fields."""
    return decode_plan(0, 0, 0, _images(spec, plan))


# -- an applied check: how many outcomes differ ---------------------------------------------------


def _signature(letter: str, changes: list[Any]) -> tuple[str, frozenset[tuple[str, Any]]]:
    """What an outcome is, for comparing: the action and, for an update, what it sets.

    The current values are left out: a row changed meanwhile to something else is still
    updated to the same values.
    """
    if letter != "u":
        return letter, frozenset()
    return letter, frozenset((field, repr(new)) for field, _old, new in changes)


def differences_from_check(
    tx: Tx,
    spec: EntitySpec,
    check_id: str,
    index: int,
    chunk: list[RawRecord],
    plan: ChunkPlan,
) -> int:
    """How many records of chunk ``index`` end otherwise than the check planned.

    Both runs read the same stored file with the same chunk size, so chunk ``index`` holds
    the same records in both. An outcome is: create, update (with the values it sets),
    delete, unchanged or failed.
    """
    first, last = chunk[0].row, chunk[-1].row
    planned: dict[int, tuple[str, frozenset[tuple[str, Any]]]] = {}
    stored = tx.plans.chunk(check_id, index)
    if stored is not None:
        for row, letter, changes in zip(stored.rows, stored.actions, stored.changes, strict=True):
            planned[row] = _signature(letter, changes)
    for error in tx.audit.iter_errors(check_id, after_row=first - 1, limit=len(chunk)):
        if error["row"] <= last:
            planned[error["row"]] = ("f", frozenset())
    decided = _decided(spec, plan)
    real: dict[int, tuple[str, frozenset[tuple[str, Any]]]] = {
        row: _signature(letter, changes)
        for row, letter, changes in zip(
            decided.rows, decided.actions, decided.changes, strict=True
        )
    }
    for raw, _errors in plan.failures:
        real[raw.row] = ("f", frozenset())
    unchanged = ("n", frozenset[tuple[str, Any]]())
    return sum(
        1
        for raw in chunk
        if planned.get(raw.row, unchanged) != real.get(raw.row, unchanged)
    )


# -- reading a plan -------------------------------------------------------------------------------


def _check(tx: Tx, op_id: str) -> Operation:
    op = tx.operations.require(op_id)
    if not op.validate_only:
        raise Conflict(
            f"Operation {op_id} is not a check (validate_only): it has no planned changes. "
            "What it changed is in its audit records."
        )
    return op


def _item(spec: EntitySpec, chunk: PlanChunk, position: int) -> dict[str, Any]:
    return {
        "row": chunk.rows[position],
        "action": _ACTION[chunk.actions[position]],
        "key": dict(zip(spec.key, chunk.keys[position], strict=True)),
        "changes": [
            {"field": field, "current": current, "new": new}
            for field, current, new in chunk.changes[position]
        ],
    }


def _page(
    tx: Tx,
    spec: EntitySpec,
    op_id: str,
    *,
    action: str | None,
    limit: int,
    after: ChangePosition | None,
) -> list[tuple[ChangePosition, dict[str, Any]]]:
    letter = _LETTER[action] if action is not None else None
    found: list[tuple[ChangePosition, dict[str, Any]]] = []
    start_chunk, start_position = (after[0], after[1] + 1) if after is not None else (0, 0)
    fetch = 1  # a chunk holds up to chunk_size changes: one first, more while more are wanted
    while len(found) < limit:
        chunks = tx.plans.chunks(op_id, from_index=start_chunk, action=action, limit=fetch)
        for chunk in chunks:
            first = start_position if chunk.index == start_chunk else 0
            for position in range(first, len(chunk)):
                if letter is not None and chunk.actions[position] != letter:
                    continue
                found.append(((chunk.index, position), _item(spec, chunk, position)))
                if len(found) >= limit:
                    return found
        if len(chunks) < fetch:
            break
        start_chunk, start_position = chunks[-1].index + 1, 0
        fetch = min(fetch * 2, 16)
    return found


def planned_changes(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    limit: int,
    action: str | None = None,
    after: ChangePosition | None = None,
) -> list[tuple[ChangePosition, dict[str, Any]]]:
    """Up to ``limit`` planned changes of a check after position ``after``, in row order.

    Each item: ``row``, ``action``, ``key`` (field -> value), ``changes`` (``field``,
    ``current``, ``new``: an update's changed fields, a create's values, none for a delete).
    A check of another organization is NotFound; an operation that is no check, Conflict.
    """
    with ctx.store.transaction(org_id) as tx:
        op = _check(tx, op_id)
        return _page(
            tx, spec_for(op.entity_type), op_id, action=action, limit=limit, after=after
        )


def iter_planned_changes(
    ctx: Context, org_id: int, op_id: str, *, action: str | None = None, page_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """Every planned change of a check in row order, read a page at a time."""
    after: ChangePosition | None = None
    while True:
        page = planned_changes(ctx, org_id, op_id, limit=page_size, action=action, after=after)
        for _position, item in page:
            yield item
        if len(page) < page_size:
            return
        after = page[-1][0]


def planned_change_counts(ctx: Context, org_id: int, op_id: str) -> dict[str, int]:
    """How many records the check would create, update and delete (from its plan)."""
    with ctx.store.transaction(org_id) as tx:
        _check(tx, op_id)
        return tx.plans.counts(op_id)


def write_planned_changes(
    ctx: Context, org_id: int, op: Operation, stream: TextIO, *, action: str | None = None
) -> int:
    """The planned changes as CSV, one line per changed field, for filtering in a
    spreadsheet: ``_row``, ``_action``, the key columns, then ``field``, ``current``, ``new``.

    An update has a line per changed field, a create a line per value it sets (``current``
    empty), a delete one line with the last three cells empty. Formula-like cells are
    neutralised, as in every CSV bulkops writes. Returns how many records it wrote.
    """
    spec = spec_for(op.entity_type)
    writer = CsvWriter(stream)
    writer.writerow(["_row", "_action", *spec.key, "field", "current", "new"])
    count = 0
    for item in iter_planned_changes(ctx, org_id, op.id, action=action):
        lead = [item["row"], item["action"], *(item["key"][k] for k in spec.key)]
        if not item["changes"]:
            writer.writerow([*lead, None, None, None])
        for change in item["changes"]:
            writer.writerow([*lead, change["field"], change["current"], change["new"]])
        count += 1
    return count
