"""Deciding a chunk: the file-only checks, then the decision for each record against the data.

Nothing here writes. :class:`Evaluator` prepares a chunk of read records (read errors,
validation, duplicate keys and case twins in the file) and then evaluates it against the
current rows (missing references, current values, case twins of existing keys) into a
:class:`ChunkPlan`: what each record would create, update, delete or leave unchanged, and
which records fail and why.

Case twins (keys that differ only by letter case, compared with ``str.casefold`` of the NFC
form: :func:`bulkops.entities.keys.folded`) are refused where they would be created: an
import of a key that is new while its twin exists or came earlier in the file. Looking for
twins in the database costs one query per chunk, for the chunk's new keys only (an import
of updates finds every key exactly and asks nothing more), and none at all for an import
that began on an empty table.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from bulkops.engine.chunk import (
    VALID_KEY,
    VALID_RECORD,
    VALID_VALUES,
    ChunkPlan,
    NewRows,
    Prepared,
    record_rows,
)
from bulkops.engine.seen import CaseTwinRow
from bulkops.entities import SPECS, EntitySpec, HeaderMap, RecordValidator
from bulkops.entities.keys import folded, nfc
from bulkops.formats import TableFile
from bulkops.model import (
    RECORD_ERROR,
    RECORD_ROW,
    RECORD_VALUES,
    FieldError,
    OperationType,
    RawRecord,
    RecordError,
)
from bulkops.store import Tx

_FIRST = operator.itemgetter(0)

__all__ = ["Evaluator", "KeyRegistry", "chunked", "prepared_chunks"]


class KeyRegistry(Protocol):
    """Where the natural keys already seen in the file are kept (a :class:`SeenKeys`)."""

    def check_and_add_columns(
        self, texts: Sequence[str], rows: Sequence[int]
    ) -> dict[int, int]: ...

    def reserve(self, keys: int) -> None: ...


class Evaluator:
    """Decides, chunk by chunk, what each record does against the current data."""

    def __init__(
        self,
        spec: EntitySpec,
        operation: OperationType,
        header: HeaderMap,
        seen: KeyRegistry,
        decimal_separator: str = ".",
    ) -> None:
        self.spec = spec
        self.operation = operation
        self.header = header
        self.seen = seen
        self.fields = spec.field_names
        self.validator: RecordValidator = spec.validator(
            operation, header.present, decimal_separator
        )
        #: Set for a workbook: every error about a column then names its cell ("cell E7").
        self.cells = False
        self._column_index = {header.column_of(name): index for index, name in header.columns}
        self._index = {name: i for i, name in enumerate(self.fields)}
        #: Where each field sits in a validated record (a tuple in the validator's order).
        self._slot = {name: i for i, name in enumerate(self.validator.fields)}
        self._key_positions = [self._slot[name] for name in spec.key]
        #: Set for an import that began on an empty table (no row of the organization): the
        #: keys of a chunk cannot exist then (duplicates in the file are errors, and nobody
        #: else writes this entity meanwhile), so the look-up of current rows is skipped. A
        #: row written behind bulkops' back is still refused by the unique key and reported.
        self.started_empty = False
        # Keys whose text parts are all stored lower-case (customers' email) have no case twins.
        self._has_case = any(spec.field(name).kind == "text" for name in spec.key)
        self._dependents = [
            (other.entity.value, ref.fields[0])
            for other in SPECS.values()
            for ref in other.references
            if ref.entity == spec.entity and len(ref.fields) == 1
        ]

    def prepare(self, chunk: Sequence[RawRecord]) -> Prepared:
        """The file-only half: read errors, validation, duplicate keys (no database)."""
        plan = ChunkPlan()
        readable: Sequence[RawRecord] = chunk
        if any(map(RECORD_ERROR, chunk)):
            readable = []
            for raw in chunk:
                if raw.error is not None:
                    plan.failures.append(
                        (raw, [RecordError(raw.row, raw.line, None, None, raw.error)])
                    )
                else:
                    readable.append(raw)
        outcomes, all_valid = self.validator.validate_columns_flagged(
            self.header.to_columns(list(map(RECORD_VALUES, readable)), self.validator.fields)
        )
        positions = self._key_positions
        single = positions[0] if len(positions) == 1 else None
        if all_valid:
            # Every record valid (the common case): the triples built in C.
            keys: Iterable[tuple[Any, ...]] = (
                zip(map(operator.itemgetter(single), outcomes))
                if single is not None
                else map(operator.itemgetter(*positions), outcomes)
            )
            valid: list[tuple[RawRecord, tuple[Any, ...], tuple[Any, ...]]] = list(
                zip(readable, outcomes, keys, strict=True)  # type: ignore[arg-type]
            )
        else:
            valid = []
            many = operator.itemgetter(*positions)
            for raw, outcome in zip(readable, outcomes, strict=True):
                if isinstance(outcome, tuple):
                    # The natural key, as spec.key_of gives it (inlined: runs per record).
                    valid.append(
                        (raw, outcome, (outcome[single],) if single is not None else many(outcome))
                    )
                else:
                    plan.failures.append((raw, [self._field_error(raw, e) for e in outcome]))
        rows = list(map(RECORD_ROW, map(VALID_RECORD, valid)))
        if single is not None:
            texts = list(map(str, map(_FIRST, map(VALID_KEY, valid))))
        else:
            texts = ["\x1f".join(map(str, key)) for _, _, key in valid]
        repeats = self.seen.check_and_add_columns(texts, rows)
        case_twins: dict[int, str] = {}
        if repeats:
            keys_by_row = {raw.row: key for raw, _, key in valid}
            kept = []
            for raw, values, key in valid:
                earlier = repeats.get(raw.row)
                if earlier is None:
                    kept.append((raw, values, key))
                elif isinstance(earlier, CaseTwinRow):
                    kept.append((raw, values, key))
                    other = keys_by_row.get(earlier)
                    case_twins[raw.row] = self._twin_in_file(key, other, earlier)
                else:
                    message = (
                        f"Duplicate key: {self._label(key)} already appears in row {earlier}. "
                        "Keep one of the two rows."
                    )
                    plan.failures.append((raw, [self._key_error(raw, key, message)]))
            valid = kept
        if self.cells:
            self._name_cells(plan, 0)
        return Prepared(chunk, plan, valid, case_twins=case_twins)

    def _name_cells(self, plan: ChunkPlan, start: int) -> None:
        """Prefix the errors of ``plan.failures[start:]`` that concern a column with its cell."""
        from bulkops.formats.xlsx import cell_name  # only workbooks come here: openpyxl waits

        for i in range(start, len(plan.failures)):
            raw, errors = plan.failures[i]
            named = []
            for error in errors:
                index = self._column_index.get(error.column) if error.column else None
                if index is not None:
                    cell = cell_name(index, error.row)
                    error = RecordError(
                        error.row, error.line, error.column, error.value,
                        f"Row {error.row}, cell {cell}: {error.message}",
                    )
                named.append(error)
            plan.failures[i] = (raw, named)

    def new_rows_plan(self, prepared: Prepared) -> ChunkPlan | None:
        """The plan of a chunk whose valid records are all new rows, as the reader process
        encoded them (:class:`NewRows`): an import into a table that was empty, of records
        that need no more checks (no references, no case twins in the file). None for any
        other chunk; deciding it needs no database."""
        if prepared.deferred is None or not (
            self.operation is OperationType.IMPORT
            and self.started_empty
            and prepared.built is not None
            and not prepared.case_twins
            and not self.spec.references
            and self.validator.fields == self.fields
        ):
            return None
        records, keys, values_json = prepared.deferred
        plan = prepared.plan
        plan.new_rows = NewRows(record_rows(records), keys, values_json, prepared.built)
        return plan

    def evaluate(self, tx: Tx, prepared: Prepared) -> ChunkPlan:
        """The database half: references, current rows, and the decision for each record.

        An import into a table that was empty, of a chunk whose records need no more checks
        (no references, no case twins in the file), creates every valid record as the reader
        process encoded it (:class:`NewRows`): the writer decodes nothing of it.
        """
        plan = self.new_rows_plan(prepared)
        if plan is not None:
            return plan
        plan = prepared.plan
        prepared.settle()
        valid = prepared.valid
        named_until = len(plan.failures)
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
            if prepared.case_twins:
                valid = self._refuse_twins_in_file(plan, valid, existing, prepared.case_twins)
            if self._has_case and not self.started_empty:
                valid = self._refuse_case_twins(tx, plan, valid, existing)
            self._plan_import(plan, valid, existing)
            if prepared.built is not None and len(plan.creates) == len(prepared.valid):
                plan.built = prepared.built  # the creates are the valid records, in order
        elif self.operation is OperationType.UPDATE:
            self._plan_update(plan, valid, existing)
        else:
            self._plan_delete(tx, plan, valid, existing)
        if self.cells:
            self._name_cells(plan, named_until)
        return plan

    # -- per operation -------------------------------------------------------------------------

    def new_rows(self, valid: list[Any]) -> list[tuple[Any, ...]]:
        """The rows an import of these valid records would create, in field order."""
        fields = self.fields
        # An import's validated record holds every field in template order (the validator's
        # output order), so its values are the row as stored.
        if self.validator.fields == fields:
            return list(map(VALID_VALUES, valid))
        slots = [self._slot[f] for f in fields]
        return [tuple([values[i] for i in slots]) for _, values, _ in valid]

    def _plan_import(self, plan: ChunkPlan, valid: list[Any], existing: dict[Any, Any]) -> None:
        if not existing:  # every record is new (always, on a table that started empty)
            rows = [raw.row for raw, _, _ in valid]
            plan.creates.extend(zip(rows, self.new_rows(valid), strict=True))
            return
        for (raw, _, key), after in zip(valid, self.new_rows(valid), strict=True):
            current = existing.get(key)
            if current is None:
                plan.creates.append((raw.row, after))
            elif current[1] == after:
                plan.unchanged += 1
            else:
                plan.updates.append((raw.row, current[0], current[1], after))

    def _plan_update(self, plan: ChunkPlan, valid: list[Any], existing: dict[Any, Any]) -> None:
        # Where each validated value goes in the stored row.
        slots = [self._index[name] for name in self.validator.fields]
        for raw, values, key in valid:
            current = existing.get(key)
            if current is None:
                plan.failures.append((raw, [self._not_found(raw, key)]))
                continue
            after = list(current[1])
            for slot, value in zip(slots, values, strict=True):
                after[slot] = value
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

    def _refuse_twins_in_file(
        self,
        plan: ChunkPlan,
        valid: list[Any],
        existing: dict[Any, Any],
        case_twins: dict[int, str],
    ) -> list[Any]:
        """Fail the records whose key is new and a case twin of an earlier row's key.

        A key that exists exactly is an update, even next to its twin: a database holding
        twins from before exports and imports back unchanged.
        """
        kept: list[Any] = []
        for raw, values, key in valid:
            message = case_twins.get(raw.row)
            if message is None or key in existing:
                kept.append((raw, values, key))
            else:
                plan.failures.append((raw, [self._key_error(raw, key, message)]))
        return kept

    def _refuse_case_twins(
        self, tx: Tx, plan: ChunkPlan, valid: list[Any], existing: dict[Any, Any]
    ) -> list[Any]:
        """Fail the records whose new key is a case twin of an existing key (one query)."""
        new_keys = [key for _, _, key in valid if key not in existing]
        if not new_keys:
            return valid
        found = tx.rows.case_twin_candidates(self.spec.entity.value, self.spec.key, new_keys)
        twins: dict[str, tuple[Any, ...]] = {}
        for _row_id, other in sorted(found):  # the oldest row names the group
            twins.setdefault(folded(other), other)
        if not twins:
            return valid
        kept: list[Any] = []
        for raw, values, key in valid:
            twin = None if key in existing else twins.get(folded(key))
            if twin is None:
                kept.append((raw, values, key))
                continue
            plan.failures.append((raw, [self._key_error(raw, key, self._twin_of(key, twin))]))
        return kept

    def _check_references(self, tx: Tx, plan: ChunkPlan, valid: list[Any]) -> list[Any]:
        """Fail the records that name a row that does not exist (one query a reference),
        each with every missing reference of its own: a stock line of an unknown product in
        an unknown warehouse says both at once."""
        missing_of: dict[int, list[RecordError]] = {}  # by position in ``valid``
        for ref in self.spec.references:
            if not all(f in (self.header.present | set(self.spec.key)) for f in ref.fields):
                continue
            slots = [self._slot[f] for f in ref.fields]
            wanted = {tuple([values[i] for i in slots]) for _, values, _ in valid}
            found = tx.rows.existing_keys(ref.entity.value, ref.target_fields, list(wanted))
            missing = wanted - found
            if not missing:
                continue
            target = SPECS[ref.entity].row_noun
            column = self.header.column_of(ref.fields[0])
            for position, (raw, values, _) in enumerate(valid):
                ref_key = tuple([values[i] for i in slots])
                if ref_key in missing:
                    missing_of.setdefault(position, []).append(
                        RecordError(
                            raw.row,
                            raw.line,
                            column,
                            str(ref_key[0]),
                            f"There is no {target} with {ref.target_fields[0]} "
                            f"'{ref_key[0]}'. Create it first (import "
                            f"{ref.entity.value}) or correct the value.",
                        )
                    )
        if not missing_of:
            return valid
        kept = []
        for position, item in enumerate(valid):
            errors = missing_of.get(position)
            if errors is None:
                kept.append(item)
            else:
                plan.failures.append((item[0], errors))
        return kept

    # -- messages --------------------------------------------------------------------------------

    def _field_error(self, raw: RawRecord, error: FieldError) -> RecordError:
        if error.field is None:
            return RecordError(raw.row, raw.line, None, None, error.message)
        column = self.header.column_of(error.field)
        value = self.header.to_dict(raw.values).get(error.field)
        return RecordError(raw.row, raw.line, column, value, error.message)

    def _not_found(self, raw: RawRecord, key: tuple[Any, ...]) -> RecordError:
        message = f"Not found: there is no {self.spec.row_noun} with {self._label(key)}."
        return self._key_error(raw, key, message)

    def _key_error(self, raw: RawRecord, key: tuple[Any, ...], message: str) -> RecordError:
        """An error about the record's natural key, shown in the key's (first) column."""
        return RecordError(
            raw.row, raw.line, self.header.column_of(self.spec.key[0]), str(key[0]), message
        )

    def _twin_of(self, key: tuple[Any, ...], other: tuple[Any, ...]) -> str:
        if tuple(nfc(v) if isinstance(v, str) else v for v in other) == key:
            # Stored behind bulkops' back in another form (see `bulkops doctor`).
            return (
                f"{self._label(key)} differs only by its Unicode form (NFC) from the existing "
                f"{self._label(other)}"
            )
        return (
            f"{self._label(key)} differs only by letter case from the existing "
            f"{self._label(other)}"
        )

    def _twin_in_file(
        self, key: tuple[Any, ...], other: tuple[Any, ...] | None, row: int
    ) -> str:
        # The earlier spelling is known when its row is in this chunk (SeenKeys keeps no text).
        if other is not None:
            named = self._label(other)
        elif len(self.spec.key) == 1:
            named = f"the {self.spec.key[0]}"
        else:
            named = f"the key ({', '.join(self.spec.key)})"
        return f"{self._label(key)} differs only by letter case from {named} in row {row}"

    def _label(self, key: tuple[Any, ...]) -> str:
        return ", ".join(f"{k} '{v}'" for k, v in zip(self.spec.key, key, strict=True))


def chunked(records: Iterable[RawRecord], size: int) -> Iterator[list[RawRecord]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def prepared_chunks(
    table: TableFile, evaluator: Evaluator, chunk_size: int
) -> Iterator[Prepared]:
    """Chunks after the file-only checks, numbered, with how far into the file they end.

    It runs in the reader process of :mod:`bulkops.engine.pipeline` (or in-process). A
    background thread did not pay: the GIL convoy with the driver cost more than the
    overlap gained.
    """
    records_read = 0
    sized = False
    for index, chunk in enumerate(chunked(table.records(), chunk_size)):
        records_read += len(chunk)
        consumed = table.bytes_consumed
        if not sized and consumed and (
            consumed >= 1 << 20 or consumed >= table.file_size_bytes
        ):
            # Size the duplicate-key table once for the whole file from the bytes per record
            # of its first megabyte (5 % margin; read-ahead blurs a smaller sample), so it
            # does not grow, and briefly exist twice, while the file streams.
            ratio = table.file_size_bytes / consumed
            evaluator.seen.reserve(int(records_read * ratio * 1.05) + 1)
            sized = True
        prepared = evaluator.prepare(chunk)
        prepared.index = index
        prepared.bytes_consumed = table.bytes_consumed
        yield prepared

