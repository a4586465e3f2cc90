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
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, overload

import orjson

from bulkops.engine.seen import CaseTwinRow
from bulkops.entities import SPECS, EntitySpec, HeaderMap, RecordValidator
from bulkops.entities.keys import folded, nfc
from bulkops.formats import TableFile
from bulkops.model import (
    RECORD_ERROR,
    RECORD_ROW,
    RECORD_VALUES,
    EntityType,
    FieldError,
    OperationType,
    RawRecord,
    RecordError,
)
from bulkops.store import Tx

#: The parts of a valid record's triple in :attr:`Prepared.valid` (record, values, key), as
#: getters that run in C, for whole chunks.
VALID_RECORD, VALID_VALUES, VALID_KEY = (operator.itemgetter(i) for i in range(3))
_FIRST = operator.itemgetter(0)

__all__ = [
    "VALID_KEY",
    "VALID_RECORD",
    "VALID_VALUES",
    "ChunkPlan",
    "DecodedRecords",
    "Evaluator",
    "KeyRegistry",
    "Keys",
    "NewRows",
    "Prepared",
    "chunked",
    "decoded_keys",
    "failure_rows",
    "prepared_chunks",
    "record_rows",
]


Keys = list[tuple[Any, ...]] | bytes
"""Natural keys in order: tuples, or still as the reader process encoded them (JSON)."""


def decoded_keys(keys: Keys) -> list[tuple[Any, ...]]:
    """The keys as tuples, decoded from JSON if need be."""
    return list(map(tuple, orjson.loads(keys))) if isinstance(keys, bytes) else keys


class DecodedRecords(Sequence[RawRecord]):
    """A chunk's records as the reader process sent them (rows, lines, read errors), made
    into :class:`RawRecord`s only when read: a chunk of new rows needs its row numbers alone,
    and a thousand records made and dropped per chunk cost the writer about 0.4 s a million.
    The cells are not here (see :meth:`Prepared.cells_of`)."""

    __slots__ = ("errors", "lines", "rows")

    def __init__(self, rows: list[int], lines: list[int], errors: dict[int, str]) -> None:
        if len(rows) != len(lines):
            raise ValueError(f"{len(rows)} rows, {len(lines)} lines")
        self.rows, self.lines, self.errors = rows, lines, errors

    def __len__(self) -> int:
        return len(self.rows)

    def _record(self, i: int) -> RawRecord:
        return RawRecord(self.rows[i], self.lines[i], _NO_CELLS, self.errors.get(i))

    @overload
    def __getitem__(self, i: int) -> RawRecord: ...

    @overload
    def __getitem__(self, i: slice) -> list[RawRecord]: ...

    def __getitem__(self, i: int | slice) -> RawRecord | list[RawRecord]:
        if isinstance(i, slice):
            return [self._record(j) for j in range(*i.indices(len(self.rows)))]
        return self._record(range(len(self.rows))[i])  # a negative index, or IndexError

    def __iter__(self) -> Iterator[RawRecord]:
        if self.errors:
            return map(self._record, range(len(self.rows)))
        # RawRecord(row, line, cells) without the named tuple's Python-level __new__, in C.
        return map(
            _new_record,
            zip(self.rows, self.lines, itertools.repeat(_NO_CELLS), itertools.repeat(None)),
        )


_NO_CELLS: tuple[str, ...] = ()  # a decoded record's cells: see Prepared.cells_of
_new_record = partial(tuple.__new__, RawRecord)


def record_rows(records: Sequence[RawRecord]) -> list[int]:
    """The row numbers of these records (without making them, when they are decoded)."""
    if isinstance(records, DecodedRecords):
        return records.rows
    return list(map(RECORD_ROW, records))


@dataclass(slots=True)
class NewRows:
    """An import's new rows whose values stay as the reader process encoded them.

    A chunk of an import into an empty table creates a row for each valid record, in order:
    the database gets the rows as the reader built them (``built``), and the audit their
    values as JSON (``values_json``, one array per row in field order), so the writer never
    decodes them. :meth:`ChunkPlan.expand` turns them into ordinary creates where needed.
    """

    rows: list[int]
    encoded_keys: Keys
    values_json: bytes
    built: Any

    def keys(self) -> list[tuple[Any, ...]]:
        return decoded_keys(self.encoded_keys)

    def values(self) -> list[tuple[Any, ...]]:
        return list(map(tuple, orjson.loads(self.values_json)))


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
    #: ``creates`` as the database's ``batch_columns`` builds them to send, when the reader
    #: built them already (see :attr:`Prepared.built`).
    built: Any = None
    #: Creates still encoded (an import into an empty table); then ``creates`` is empty.
    new_rows: NewRows | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def created(self) -> int:
        return len(self.creates) + (len(self.new_rows.rows) if self.new_rows else 0)

    def expand(self) -> None:
        """Decode :attr:`new_rows` into ``creates`` (what every other use of a plan reads)."""
        if self.new_rows is not None:
            new, self.new_rows = self.new_rows, None
            self.creates = list(zip(new.rows, new.values(), strict=True))
            self.built = new.built

    def counters(self) -> dict[str, int]:
        changed = self.created + len(self.updates) + len(self.deletes)
        return {
            "processed_records": changed + self.unchanged + self.failed,
            "successful_records": changed + self.unchanged,
            "failed_records": self.failed,
            "unchanged_records": self.unchanged,
            "created_records": self.created,
            "updated_records": len(self.updates),
            "deleted_records": len(self.deletes),
        }


@dataclass(slots=True)
class Prepared:
    """A chunk after the file-only checks, ready to be decided against the database."""

    chunk: Sequence[RawRecord]
    plan: ChunkPlan
    #: (record, its validated values in the validator's field order, its natural key).
    valid: list[tuple[RawRecord, tuple[Any, ...], tuple[Any, ...]]]
    bytes_consumed: int = 0
    index: int = 0
    encoded: bytes = b""  # as it came from the reader process (engine.pipeline), if it did
    #: The records' raw cells as JSON, when they came apart from the records (from the reader
    #: process): only a record that fails needs them, so they are decoded on first use.
    cells_json: bytes = b""
    _cells: dict[int, Sequence[str]] | None = None
    #: Records (still in ``valid``) whose key differs only by letter case from an earlier
    #: row's: row -> the message. Whether that is an error depends on the database, so the
    #: evaluation decides (an import of a key that exists exactly is a plain update).
    case_twins: dict[int, str] = field(default_factory=dict)
    #: An import's valid records as the database sends new rows (its ``batch_columns``),
    #: built by the reader process, whose core has time to spare, instead of by the writer:
    #: used when every valid record turns out to be new (see :meth:`Evaluator.evaluate`).
    built: Any = None
    #: From the reader process: the valid records, their keys and their values as JSON,
    #: not decoded yet (``valid`` is empty until :meth:`settle`).
    deferred: tuple[Sequence[RawRecord], Keys, bytes] | None = None

    def settle(self) -> None:
        """Decode deferred values into :attr:`valid`."""
        if self.deferred is not None:
            records, keys, values_json = self.deferred
            self.deferred = None
            values = map(tuple, orjson.loads(values_json))
            self.valid = list(zip(records, values, decoded_keys(keys), strict=True))

    def cells_of(self, raw: RawRecord) -> Sequence[str]:
        """The raw cells of one of the chunk's records, as read from the file."""
        if not self.cells_json:
            return raw.values
        if self._cells is None:
            rows = record_rows(self.chunk)
            self._cells = dict(zip(rows, orjson.loads(self.cells_json), strict=True))
        cells: Sequence[str] = self._cells[raw.row]
        return cells


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
        for ref in self.spec.references:
            if not all(f in (self.header.present | set(self.spec.key)) for f in ref.fields):
                continue
            slots = [self._slot[f] for f in ref.fields]
            wanted = {tuple([values[i] for i in slots]) for _, values, _ in valid}
            found = tx.rows.existing_keys(ref.entity.value, ref.target_fields, list(wanted))
            missing = wanted - found
            if not missing:
                continue
            kept = []
            for raw, values, key in valid:
                ref_key = tuple([values[i] for i in slots])
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

