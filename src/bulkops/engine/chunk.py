"""A chunk's data between reading and writing: its records, what was decided for them
(:class:`ChunkPlan`), and the chunk as the file-only checks leave it (:class:`Prepared`).

A chunk that comes from the reader process (:mod:`bulkops.engine.pipeline`) keeps what the
writer may never need as it came: the records are made when they are read
(:class:`DecodedRecords`), and the keys, values and cells stay JSON until something reads
them. :mod:`bulkops.engine.plan` makes and decides the chunks.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, overload

import orjson

from bulkops.model import RECORD_ROW, RawRecord, RecordError

__all__ = [
    "VALID_KEY",
    "VALID_RECORD",
    "VALID_VALUES",
    "ChunkPlan",
    "DecodedRecords",
    "Keys",
    "NewRows",
    "Prepared",
    "decoded_keys",
    "failure_rows",
    "record_rows",
]

#: The parts of a valid record's triple in :attr:`Prepared.valid` (record, values, key), as
#: getters that run in C, for whole chunks.
VALID_RECORD, VALID_VALUES, VALID_KEY = (operator.itemgetter(i) for i in range(3))

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
    #: used when every valid record turns out to be new (see
    #: :meth:`~bulkops.engine.plan.Evaluator.evaluate`).
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
