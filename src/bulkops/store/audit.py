"""Error rows and change batches of operations, within one organization (``tx.audit``).

A chunk's per-record audit is stored as ONE row of ``operation_changes`` (see tables.py);
:class:`ChangeBatch` decodes it, and :meth:`AuditStore.page` expands batches into the
per-record items the API and the dashboard list.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import func, select

from bulkops.store.scoped import Scoped
from bulkops.store.tables import operation_changes, operation_errors

__all__ = ["CHANGE_ID_STRIDE", "AuditRecord", "AuditStore", "ChangeBatch"]

CHANGE_ID_STRIDE = 1_000_000
"""A record's id in the per-record audit views: batch id * CHANGE_ID_STRIDE + its position."""

AuditRecord = tuple[int, int | None, str, tuple[Any, ...] | None, tuple[Any, ...] | None]
"""One record of an applied chunk: (record_index, entity_id, action, before, after)."""

_ACTIONS = {"c": "create", "u": "update", "d": "delete"}
# A record's status -> the statuses of the batches that can hold such a record.
_BATCH_STATUSES: dict[str, tuple[str, ...]] = {
    "applied": ("applied",),
    "rolled_back": ("rolled_back", "conflict"),
    "conflict": ("conflict",),
}


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """One row of ``operation_changes`` decoded: the audit of one applied chunk.

    The lists are parallel, one item per record, in the order the records were written;
    ``before``/``after`` hold values in ``fields`` order (None for the side an action lacks).
    ``outcomes`` (after a rollback): position -> (status, error) of the records that were
    not plainly rolled back.
    """

    id: int
    status: str
    fields: tuple[str, ...]
    rows: list[int]
    ids: list[int | None]
    actions: str
    before: list[list[Any] | None]
    after: list[list[Any] | None]
    outcomes: dict[int, tuple[str, str | None]]

    @classmethod
    def decode(cls, batch_id: int, status: str, data: str, outcomes: str | None) -> ChangeBatch:
        doc = orjson.loads(data)
        return cls(
            id=int(batch_id),
            status=status,
            fields=tuple(doc["fields"]),
            rows=doc["rows"],
            ids=doc["ids"],
            actions=doc["actions"],
            before=doc["before"],
            after=doc["after"],
            outcomes={int(p): (o[0], o[1]) for p, o in orjson.loads(outcomes).items()}
            if outcomes
            else {},
        )

    def __len__(self) -> int:
        return len(self.rows)

    def action(self, position: int) -> str:
        return _ACTIONS[self.actions[position]]

    def outcome(self, position: int) -> tuple[str, str | None]:
        """(status, error) of one record."""
        if self.status == "applied":
            return ("applied", None)
        return self.outcomes.get(position, ("rolled_back", None))

    def positions(self, *, reverse: bool = False) -> range:
        """The records' positions, in the order written or newest first."""
        n = len(self.rows)
        return range(n - 1, -1, -1) if reverse else range(n)

    def record(self, position: int) -> dict[str, Any]:
        """One record as a per-record audit item (the keys of ``AuditStore.page``)."""
        dumps = orjson.dumps
        before, after = self.before[position], self.after[position]
        status, error = self.outcome(position)
        return {
            "id": self.id * CHANGE_ID_STRIDE + position,
            "record_index": self.rows[position],
            "entity_id": self.ids[position],
            "action": self.action(position),
            "before_data": None
            if before is None
            else dumps(dict(zip(self.fields, before, strict=True))).decode(),
            "after_data": None
            if after is None
            else dumps(dict(zip(self.fields, after, strict=True))).decode(),
            "status": status,
            "error": error,
        }


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def errors_insert(placeholder: str) -> str:
    """The insert of one row error; its parameters as :func:`error_params` gives them."""
    ph = placeholder
    return (
        "INSERT INTO operation_errors (organization_id, operation_id, row, line, errors, raw) "
        f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})"
    )


def error_params(
    org_id: int, op_id: str, rows: Sequence[tuple[int, int, str, str]]
) -> list[tuple[Any, ...]]:
    """:func:`errors_insert`'s parameters for each of ``rows`` (row, line, errors, raw)."""
    return [(org_id, op_id, *r) for r in rows]


def batch_insert(placeholder: str) -> str:
    """The insert of one change batch; its parameters as :func:`batch_params` gives them."""
    ph = placeholder
    return (
        "INSERT INTO operation_changes (organization_id, operation_id, first_record_index, "
        f"record_count, data, status) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, 'applied')"
    )


def batch_params(
    org_id: int,
    op_id: str,
    fields: Sequence[str],
    rows: Sequence[int],
    ids: Sequence[int | None],
    actions: str,
    before_json: bytes,
    after_json: bytes,
    text: Callable[[bytes], Any] = bytes.decode,
) -> tuple[Any, ...]:
    """One change batch's row: the document :meth:`ChangeBatch.decode` reads, with the
    images already encoded (the rest is encoded here, once per batch). ``text`` makes the
    document a parameter: a ``str`` by default, or what a driver sends as it is."""
    data = b"".join(
        [
            b'{"fields":', orjson.dumps(fields),
            b',"rows":', orjson.dumps(rows),
            b',"ids":', orjson.dumps(ids),
            b',"actions":', orjson.dumps(actions),
            b',"before":', before_json,
            b',"after":', after_json,
            b"}",
        ]
    )
    return (org_id, op_id, min(rows), len(rows), text(data))


def created_params(
    org_id: int,
    op_id: str,
    fields: Sequence[str],
    rows: Sequence[int],
    ids: Sequence[int],
    values_json: bytes,
    text: Callable[[bytes], Any] = bytes.decode,
) -> tuple[Any, ...]:
    """:func:`batch_params` of new rows, from their values already encoded (``values_json``:
    a JSON array of arrays in ``fields`` order, one per row): spliced in, not decoded."""
    count = len(rows)
    if count != len(ids) or count > CHANGE_ID_STRIDE:
        raise ValueError(f"{count} rows, {len(ids)} ids")
    return batch_params(
        org_id, op_id, fields, rows, ids, "c" * count, orjson.dumps([None] * count), values_json,
        text,
    )


class AuditStore(Scoped):
    """Failed records (``operation_errors``) and applied changes (``operation_changes``)."""

    __slots__ = ()

    # -- error rows ----------------------------------------------------------------------------

    def insert_errors(self, op_id: str, rows: Sequence[tuple[int, int, str, str]]) -> None:
        """rows: (row, line, errors JSON, raw values JSON)."""
        if not rows:
            return
        self.conn.exec_driver_sql(
            errors_insert(self.dialect.placeholder), error_params(self.org_id, op_id, rows)
        )

    def iter_errors(
        self, op_id: str, after_row: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        query = (
            select(
                operation_errors.c.row,
                operation_errors.c.line,
                operation_errors.c.errors,
                operation_errors.c.raw,
            )
            .where(
                operation_errors.c.operation_id == op_id,
                operation_errors.c.organization_id == self.org_id,
                operation_errors.c.row > after_row,
            )
            .order_by(operation_errors.c.row)
        )
        if limit is not None:
            query = query.limit(limit)
        return [
            {
                "row": r.row,
                "line": r.line,
                "errors": orjson.loads(r.errors),
                "raw": orjson.loads(r.raw),
            }
            for r in self.conn.execute(query)
        ]

    def count_errors_before(self, op_id: str, row: int) -> int:
        """How many failed records the operation has on rows before ``row``."""
        c = operation_errors.c
        return int(
            self.conn.execute(
                select(func.count()).where(
                    c.operation_id == op_id, c.organization_id == self.org_id, c.row < row
                )
            ).scalar_one()
        )

    def delete_errors_from_row(self, op_id: str, first_row: int) -> None:
        """Forget errors recorded for rows >= first_row (a chunk being re-run)."""
        self.conn.execute(
            operation_errors.delete().where(
                operation_errors.c.operation_id == op_id,
                operation_errors.c.organization_id == self.org_id,
                operation_errors.c.row >= first_row,
            )
        )

    # -- change batches: one per applied chunk -------------------------------------------------

    def insert_changes(
        self, op_id: str, fields: Sequence[str], records: Sequence[AuditRecord]
    ) -> None:
        """One chunk's audit as ONE row: (record_index, entity_id, action, before, after).

        ``before`` and ``after`` are the row's values in ``fields`` order (None for the side a
        create or delete lacks), already JSON-native.
        """
        # A batch never holds more records than a synthetic id has room for (chunks are far
        # smaller); split rather than overflow.
        for start in range(0, len(records), CHANGE_ID_STRIDE):
            part = records[start : start + CHANGE_ID_STRIDE]
            rows, ids, actions, before, after = zip(*part, strict=True)
            self.conn.exec_driver_sql(
                batch_insert(self.dialect.placeholder),
                batch_params(
                    self.org_id, op_id, fields, rows, ids, "".join([a[0] for a in actions]),
                    orjson.dumps(before), orjson.dumps(after),
                ),
            )

    def insert_created(
        self,
        op_id: str,
        fields: Sequence[str],
        rows: Sequence[int],
        ids: Sequence[int],
        values_json: bytes,
    ) -> None:
        """One chunk's audit of new rows, as :meth:`insert_changes` writes it, from their
        values already encoded (``values_json``: a JSON array of arrays in ``fields``
        order, one per row): the values are spliced in, not decoded and encoded again."""
        self.conn.exec_driver_sql(
            batch_insert(self.dialect.placeholder),
            created_params(self.org_id, op_id, fields, rows, ids, values_json),
        )

    def change_batches(
        self,
        op_id: str,
        *,
        newest_first: bool,
        statuses: Sequence[str] = (),
        before_id: int | None = None,
        after_id: int | None = None,
        limit: int = 1,
        containing: str | None = None,
    ) -> list[ChangeBatch]:
        """Batches by id (``before_id``/``after_id``: batch ids, exclusive), of ``statuses``;
        with ``containing``, only those whose stored JSON holds that text (any letter case):
        a cheap first sieve, so a search decodes only the batches that may match."""
        c = operation_changes.c
        conditions = [c.operation_id == op_id, c.organization_id == self.org_id]
        if containing:
            conditions.append(c.data.ilike(f"%{_like_escaped(containing)}%", escape="\\"))
        if before_id is not None:
            conditions.append(c.id < before_id)
        if after_id is not None:
            conditions.append(c.id > after_id)
        if statuses:
            conditions.append(c.status.in_(statuses))
        rows = self.conn.execute(
            select(c.id, c.status, c.data, c.outcomes)
            .where(*conditions)
            .order_by(c.id.desc() if newest_first else c.id)
            .limit(limit)
        )
        return [ChangeBatch.decode(r.id, r.status, r.data, r.outcomes) for r in rows]

    def mark_changes(self, batch_id: int, outcomes: Mapping[int, tuple[str, str | None]]) -> str:
        """A batch after its rollback: ``outcomes`` lists the records (by position) that were
        not plainly rolled back, with (status, error). Returns the batch's new status."""
        status = "conflict" if any(s == "conflict" for s, _ in outcomes.values()) else "rolled_back"
        stored = (
            orjson.dumps({str(p): list(o) for p, o in sorted(outcomes.items())}).decode()
            if outcomes
            else None
        )
        ph = self.dialect.placeholder
        self.conn.exec_driver_sql(
            f"UPDATE operation_changes SET status = {ph}, outcomes = {ph} WHERE id = {ph} "
            f"AND organization_id = {ph}",
            (status, stored, batch_id, self.org_id),
        )
        return status

    def page(
        self,
        op_id: str,
        *,
        newest_first: bool,
        before_id: int | None = None,
        after_id: int | None = None,
        limit: int = 1000,
        status: str | None = None,
        key_fields: Sequence[str] = (),
        key_contains: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per-record audit items, expanded from the batches, in the order they were written.

        With ``key_contains``, only records one of whose ``key_fields`` (the natural key)
        contains that text, in any letter case: the database sieves the batches by their JSON
        text, and only the batches that hold the text are decoded and looked through.

        Each item has the keys of the former per-record table: ``id`` (synthetic, see
        ``CHANGE_ID_STRIDE``; ``before_id``/``after_id`` take these ids, exclusive),
        ``record_index``, ``entity_id``, ``action``, ``before_data``/``after_data`` (JSON text
        of the image, or None), ``status`` (applied, rolled_back or conflict) and ``error``.
        """
        found: list[dict[str, Any]] = []
        if limit <= 0:
            return found
        # Batch bounds (exclusive) that contain the given record ids (kept within BIGINT).
        top = 2**63 - 1
        upper = min(before_id // CHANGE_ID_STRIDE + 1, top) if before_id is not None else None
        lower = min(after_id // CHANGE_ID_STRIDE - 1, top) if after_id is not None else None
        statuses = _BATCH_STATUSES.get(status, (status,)) if status is not None else ()
        wanted = key_contains.lower() if key_contains else None
        # The text as it appears inside a JSON string of the stored batch.
        containing = orjson.dumps(key_contains).decode()[1:-1] if key_contains else None
        fetch = 1  # batches can be large: one first, more while more records are wanted
        while True:
            batches = self.change_batches(
                op_id,
                newest_first=newest_first,
                statuses=statuses,
                before_id=upper,
                after_id=lower,
                limit=fetch,
                containing=containing,
            )
            for batch in batches:
                base = batch.id * CHANGE_ID_STRIDE
                keys = [batch.fields.index(f) for f in key_fields if f in batch.fields]
                for position in batch.positions(reverse=newest_first):
                    if before_id is not None and base + position >= before_id:
                        continue
                    if after_id is not None and base + position <= after_id:
                        continue
                    if status is not None and batch.outcome(position)[0] != status:
                        continue
                    if wanted is not None:
                        image = batch.after[position] or batch.before[position] or []
                        if not any(wanted in str(image[k]).lower() for k in keys):
                            continue
                    item = batch.record(position)
                    item["organization_id"] = self.org_id
                    item["operation_id"] = op_id
                    found.append(item)
                    if len(found) >= limit:
                        return found
            if len(batches) < fetch:
                return found
            if newest_first:
                upper = batches[-1].id
            else:
                lower = batches[-1].id
            fetch = min(fetch * 2, 16)
