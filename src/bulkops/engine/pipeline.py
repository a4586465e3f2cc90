"""Reading and checking the file in a second process while this one writes.

The file-only half of a run — decoding, parsing, header mapping, validation, duplicate keys
(:meth:`Evaluator.prepare`) — needs no database and costs about as much as the writing. A
forked *reader* process does it and streams the checked chunks to the writing process
through a pipe, a few chunks ahead (the pipe's buffer holds them back: memory stays flat).
The writer decides each chunk against the database and applies it, as before.

What crosses the pipe is plain JSON (orjson): per record its row, line and validated
values; per failed record its errors; and apart, the raw cells, which the writer decodes only
for a chunk where a record fails. Earlier attempts handed over Python objects
(pickles) and lost the gain to unpickling; flat lists cost a fraction of that.

A file-level fault the reader meets half-way (a row over the row limit, say) is raised in
the writer as the same exception. Outside Linux (or with
``BULKOPS_READ_IN_BACKGROUND=false``) the same steps run in-process.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Container, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from operator import itemgetter
from typing import Any, NoReturn

import orjson

from bulkops.engine.chunk import (
    VALID_KEY,
    VALID_VALUES,
    ChunkPlan,
    DecodedRecords,
    Keys,
    Prepared,
    record_rows,
)
from bulkops.engine.operations import Context, OperationConfig
from bulkops.engine.plan import Evaluator, prepared_chunks
from bulkops.engine.seen import SeenKeys
from bulkops.entities import EntitySpec, map_header, spec_for
from bulkops.errors import NotFound
from bulkops.formats import ReadLimits, ReadOptions, TableFile, open_table
from bulkops.model import (
    RECORD_ERROR,
    RECORD_LINE,
    RECORD_VALUES,
    Operation,
    OperationType,
    RawRecord,
    RecordError,
)

__all__ = [
    "CheckedFile",
    "NoKeys",
    "checked_chunks",
    "checked_operation",
    "decode_prepared",
    "encode_prepared",
]

_HEADER, _CHUNK, _SKIPPED, _END, _FAULT = b"H", b"C", b"S", b"Z", b"E"
_PIPE_BYTES = 1 << 20  # the reader's pipe: see checked_chunks


@dataclass(slots=True)
class CheckedFile:
    """The writer's side: the evaluator (for the database half) and the checked chunks."""

    evaluator: Evaluator
    file_size_bytes: int
    chunks: Iterator[Prepared]


class NoKeys:
    """For an evaluator that never checks keys itself: the reader process did."""

    def check_and_add_columns(self, texts: Any, rows: Any) -> dict[int, int]:
        return {}

    def reserve(self, keys: int) -> None:
        return None


@contextmanager
def checked_chunks(
    path: str,
    read_options: ReadOptions,
    limits: ReadLimits,
    spec: EntitySpec,
    operation: OperationType,
    mapping: dict[str, str],
    chunk_size: int,
    *,
    skip: Container[int] = (),
    background: bool = True,
    build: Callable[[Sequence[str], list[tuple[Any, ...]]], Any] | None = None,
) -> Iterator[CheckedFile]:
    """The file's checked chunks, in order; chunks in ``skip`` come without records.

    Skipped chunks (already committed before a resume) are still read and checked, since
    their keys are needed to spot later duplicates. ``build`` (an import's, with a reader
    process): the database's ``batch_columns``, which the reader then runs on each chunk's
    valid records (:attr:`Prepared.built`).
    """
    # Linux only: fork() in a process with threads (the service's worker) is safe there for
    # what the reader does; macOS and Windows run both halves in one process.
    if not background or sys.platform != "linux":
        with _opened(path, read_options, limits, spec, operation, mapping) as (table, evaluator):
            yield CheckedFile(
                evaluator,
                table.file_size_bytes,
                prepared_chunks(table, evaluator, chunk_size),
            )
        return
    receiver, sender = multiprocessing.Pipe(duplex=False)
    # A chunk of 1,000 products is about 150 KB on the pipe, over twice the default 64 KB:
    # the reader then waited on every chunk the writer was still applying. With 1 MB it runs
    # several chunks ahead (measured: the writer's wait for the next chunk, 0.4 s of a
    # 1M-product import, disappeared). The system's pipe-max-size may refuse it: no harm.
    import fcntl  # Linux only, as this branch

    with suppress(OSError):
        fcntl.fcntl(sender.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    # A plain fork (not multiprocessing.Process): the service's worker is itself a daemon
    # process, which multiprocessing forbids to have children. The child only reads the
    # file and writes to the pipe; it never touches the parent's connections or threads.
    pid = os.fork()
    if pid == 0:
        # Ctrl-C is the writer's to handle (it cancels the operation); the reader just ends
        # when the writer closes the pipe or kills it.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        receiver.close()
        _read(
            sender, path, read_options, limits, spec, operation, mapping, chunk_size, skip,
            build,
        )
    sender.close()
    try:
        tag, body = _receive(receiver)
        if tag == _FAULT:
            raise pickle.loads(body)  # noqa: S301 - our own child process, over our own pipe
        header_cells, file_size, file_format = orjson.loads(body)
        header = map_header(spec, header_cells, operation, mapping)
        evaluator = Evaluator(
            spec, operation, header, NoKeys(), read_options.decimal_separator
        )
        evaluator.cells = file_format == "xlsx"
        yield CheckedFile(evaluator, file_size, _decoded(receiver, evaluator))
    finally:
        receiver.close()  # a reader still writing gets a broken pipe and ends
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # the writer stopped early (cancel, errors, a fault)
        os.waitpid(pid, 0)


@contextmanager
def checked_operation(
    ctx: Context,
    org_id: int,
    op: Operation,
    config: OperationConfig,
    *,
    skip: Container[int] = frozenset(),
    writing: bool = True,
) -> Iterator[CheckedFile]:
    """:func:`checked_chunks` of an operation's stored file, with its configuration.

    An import that has applied nothing yet (``skip`` empty) into a table without a row of
    the organization gets an evaluator that skips the look-up of current rows. Only a pass
    that is ``writing`` has the reader build the new rows for the database.
    """
    if op.file_path is None:
        raise NotFound(f"Operation {op.id} has no stored file to read.")
    spec = spec_for(op.entity_type)
    operation = op.operation_type
    with checked_chunks(
        op.file_path,
        config.read_options(),
        ctx.read_limits(),
        spec,
        operation,
        config.mapping,
        config.chunk_size,
        skip=skip,
        background=ctx.settings.read_in_background,
        build=(
            ctx.store.dialect.batch_columns
            if writing and operation is OperationType.IMPORT
            else None
        ),
    ) as checked:
        if operation is OperationType.IMPORT and not skip:
            with ctx.store.transaction(org_id) as tx:
                checked.evaluator.started_empty = not tx.rows.has_any(spec.entity.value)
        yield checked


@contextmanager
def _opened(
    path: str,
    read_options: ReadOptions,
    limits: ReadLimits,
    spec: EntitySpec,
    operation: OperationType,
    mapping: dict[str, str],
) -> Iterator[tuple[TableFile, Evaluator]]:
    """The file opened and its header mapped, with an evaluator that checks duplicate keys."""
    with open_table(path, read_options, limits) as table, SeenKeys() as seen:
        header = map_header(spec, table.header, operation, mapping)
        evaluator = Evaluator(spec, operation, header, seen, read_options.decimal_separator)
        evaluator.cells = table.format == "xlsx"
        yield table, evaluator


def _receive(receiver: Connection) -> tuple[bytes, bytes]:
    try:
        message = receiver.recv_bytes()
    except EOFError:
        raise RuntimeError("The file reader process ended unexpectedly.") from None
    return message[:1], message[1:]


def _decoded(receiver: Connection, evaluator: Evaluator) -> Iterator[Prepared]:
    while True:
        tag, body = _receive(receiver)
        if tag == _END:
            return
        if tag == _FAULT:
            raise pickle.loads(body)  # noqa: S301 - our own child process, over our own pipe
        if tag == _SKIPPED:
            index, consumed = orjson.loads(body)
            yield Prepared([], ChunkPlan(), [], consumed, index)
            continue
        yield decode_prepared(body, evaluator)


def encode_prepared(prepared: Prepared) -> bytes:
    """A checked chunk as JSON: what crosses the pipe, and what a chunk plan stores.

    Four JSON documents on four lines. The first is what the writer needs of every chunk:
    per record its row and line, and the errors found so far. The second holds the valid
    records' values: an import into an empty table passes them on to the database and the
    audit as they are (:class:`~bulkops.engine.chunk.NewRows`), and anything else decodes them
    first. The third holds the raw cells of every record, which only a record that fails
    later (against the database) needs: the writer decodes it only then
    (:meth:`Prepared.cells_of`). The fourth holds the valid records' keys, which the writer
    of new rows never reads (decoded, they cost it about 0.25 s a million).
    """
    chunk = prepared.chunk
    prepared.settle()
    valid = prepared.valid
    positions = {raw.row: i for i, raw in enumerate(chunk)} if prepared.plan.failures else None
    head = [
        prepared.index,
        prepared.bytes_consumed,
        record_rows(chunk),
        chunk.lines if isinstance(chunk, DecodedRecords) else list(map(RECORD_LINE, chunk)),
        [[i, r.error] for i, r in enumerate(chunk) if r.error is not None]
        if any(map(RECORD_ERROR, chunk))
        else [],
        None,  # the values, in the one-line form of an earlier version
        None if positions is None else [positions[raw.row] for raw, _, _ in valid],
        [
            [positions[raw.row], [[e.column, e.value, e.message] for e in errors]]
            for raw, errors in prepared.plan.failures
        ] if positions is not None else [],
        list(prepared.case_twins.items()),
        prepared.built,
        None,  # the keys, in the head as an earlier version sent them
    ]
    values = orjson.dumps(list(map(VALID_VALUES, valid)))
    cells = prepared.cells_json or orjson.dumps(list(map(RECORD_VALUES, chunk)))
    keys = orjson.dumps(list(map(VALID_KEY, valid)))
    return b"\n".join([orjson.dumps(head), values, cells, keys])


def decode_prepared(body: bytes | str, evaluator: Evaluator) -> Prepared:
    """The checked chunk back, ready for :meth:`Evaluator.evaluate` (keeps ``body``).

    The values stay encoded (:attr:`Prepared.deferred`) until the evaluation needs them.
    """
    encoded = body if isinstance(body, bytes) else body.encode()
    head, _, rest = encoded.partition(b"\n")
    if not rest:  # a chunk planned by an earlier version: one document, cells inline
        return _decode_single(orjson.loads(head), evaluator)
    index, consumed, rows, lines, read_errors, values, positions, failures, *more = (
        orjson.loads(head)
    )
    keys: Keys = b""
    if len(more) > 2:  # the values on a line of their own
        values_json, _, cells = rest.partition(b"\n")
        if more[2] is None:  # the keys on the last line
            cells, _, keys = cells.partition(b"\n")
        else:  # as an earlier version planned chunks: the keys in the head
            keys = list(map(tuple, more[2]))
    else:  # as an earlier version planned chunks: values in the head
        values_json, cells = b"", rest
    chunk = DecodedRecords(rows, lines, {i: error for i, error in read_errors})
    plan = ChunkPlan()
    for i, errors in failures:
        raw = chunk[i]
        plan.failures.append(
            (raw, [RecordError(raw.row, raw.line, column, value, message)
                   for column, value, message in errors])
        )
    records = chunk if positions is None else [chunk[i] for i in positions]
    if values_json:
        prepared = Prepared(chunk, plan, [], consumed, index, encoded, cells)
        prepared.deferred = (records, keys, values_json)
    else:
        valid = _valid(evaluator, records, values)
        prepared = Prepared(chunk, plan, valid, consumed, index, encoded, cells)
    if more:  # case twins of earlier rows (a chunk planned by an earlier version has none)
        prepared.case_twins = {row: message for row, message in more[0]}
        if len(more) > 1:
            prepared.built = more[1]
    return prepared


def _decode_single(message: list[Any], evaluator: Evaluator) -> Prepared:
    """The one-document form of a checked chunk, as chunk plans stored before the split."""
    index, consumed, records, valid_rows, failures = message
    chunk = [RawRecord(row, line, cells, error) for row, line, cells, error in records]
    by_row = {raw.row: raw for raw in chunk}
    plan = ChunkPlan()
    for row, errors in failures:
        raw = by_row[row]
        plan.failures.append(
            (raw, [RecordError(row, raw.line, column, value, message)
                   for column, value, message in errors])
        )
    valid = _valid(evaluator, [by_row[row] for row, _ in valid_rows], [v for _, v in valid_rows])
    return Prepared(chunk, plan, valid, consumed, index)


def _valid(
    evaluator: Evaluator, records: Sequence[RawRecord], values: list[Any]
) -> list[tuple[RawRecord, tuple[Any, ...], tuple[Any, ...]]]:
    """:attr:`Prepared.valid` from the records and their values as JSON gave them: lists in
    the validator's field order, or (a chunk planned by a version that sent records as
    field -> value) objects."""
    fields = evaluator.validator.fields
    if values and isinstance(values[0], dict):
        rows = [tuple([v[f] for f in fields]) for v in values]
    else:
        rows = list(map(tuple, values))
    slots = [fields.index(name) for name in evaluator.spec.key]
    # The natural keys as tuples, built in C (this runs for every record of the file).
    if len(slots) == 1:
        keys: Iterator[tuple[Any, ...]] = zip(map(itemgetter(slots[0]), rows))
    else:
        keys = map(itemgetter(*slots), rows)
    return list(zip(records, rows, keys, strict=True))


def _read(  # runs in the forked reader process and never returns
    sender: Connection,
    path: str,
    read_options: ReadOptions,
    limits: ReadLimits,
    spec: EntitySpec,
    operation: OperationType,
    mapping: dict[str, str],
    chunk_size: int,
    skip: Container[int],
    build: Callable[[Sequence[str], list[tuple[Any, ...]]], Any] | None,
) -> NoReturn:
    """The reader process: header first, then every checked chunk, then the end mark."""
    try:
        with _opened(path, read_options, limits, spec, operation, mapping) as (table, evaluator):
            sender.send_bytes(
                _HEADER + orjson.dumps([table.header, table.file_size_bytes, table.format])
            )
            for prepared in prepared_chunks(table, evaluator, chunk_size):
                if prepared.index in skip:
                    skipped = [prepared.index, prepared.bytes_consumed]
                    sender.send_bytes(_SKIPPED + orjson.dumps(skipped))
                    continue
                if build is not None and prepared.valid:
                    prepared.built = build(
                        evaluator.fields, evaluator.new_rows(prepared.valid)
                    )
                sender.send_bytes(_CHUNK + encode_prepared(prepared))
        sender.send_bytes(_END)
    except BaseException as exc:  # every fault is the writer's to report
        try:
            fault = pickle.dumps(exc)
        except Exception:  # not picklable: its text is enough
            fault = pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
        with suppress(OSError):  # the writer may be gone already
            sender.send_bytes(_FAULT + fault)
    finally:
        sender.close()
        os._exit(0)  # never run the parent's clean-up (its database connections) here
