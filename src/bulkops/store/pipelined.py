"""New rows of an import written in pipeline mode (PostgreSQL): one round trip a chunk.

A chunk of new rows (an import into a table that was empty) is written by the statements a
:class:`~bulkops.store.transaction.Tx` would run: the scope, the rows, their audit batch, the
chunk's row errors, its ledger row with the counter update. Here they go to the server one
after the other without waiting for each (psycopg's pipeline mode), in an explicit transaction,
on the connection the run has pinned; the counter update's row is the one result waited for.
Every round trip costs twice a process switch on a machine whose cores are busy reading the
file and writing the rows: a chunk through a Tx waited six times (begin, scope, rows, audit,
counters, commit).

Two things make that possible. The rows get ids reserved ahead, in file order (``nextval`` of
the table's sequence, asked for with the chunk before), so the audit batch is built before the
rows are written, not from what their insert returns. And the caller decides after the
counter update, as in a Tx, whether the chunk lands: :meth:`CreatedRows.commit` sends the
COMMIT (and the chunk's progress event) without waiting, and the next chunk's round trip
brings its answer; :meth:`CreatedRows.rollback` undoes the chunk (a cancel, a lost lease).

A refused statement aborts the chunk: :meth:`CreatedRows.write` rolls it back and raises
DuplicateRow (a key taken meanwhile: the caller writes the chunk again through a Tx,
carefully, so that the record is named) or Conflict (the chunk is committed already).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import ExitStack, suppress
from types import TracebackType
from typing import Any

import psycopg
from sqlalchemy.engine import Connection

from bulkops.errors import StoreError
from bulkops.model import Operation
from bulkops.store.audit import batch_insert, created_params, error_params, errors_insert
from bulkops.store.dialects import INSERT_EVENT_NOTIFYING, SCOPE_BULK, compiled
from bulkops.store.errors import DuplicateRow
from bulkops.store.ledger import LedgerEntry, already_committed, event_values
from bulkops.store.operations import advance_call, operation_of
from bulkops.store.postgres import EncodedText, driver, insert_statement, plain_params
from bulkops.store.tables import operation_chunks

__all__ = ["CreatedRows", "supported"]

_LEDGER_KEY = operation_chunks.primary_key.name


def supported() -> bool:
    """Whether the driver has pipeline mode (psycopg's libpq 14 or later)."""
    return psycopg.Pipeline.is_supported()


class CreatedRows:
    """Chunks of new rows of one entity, written in pipeline mode on a pinned connection.

    A context manager; between chunks the connection is in autocommit with explicit
    transactions, and it is given back as it was (no transaction, not in autocommit).
    ``reserve``: how many ids to reserve ahead for a chunk (its largest number of rows).
    """

    def __init__(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        reserve: int,
    ) -> None:
        self._conn = conn
        self._driver = driver(conn)
        self._org_id = org_id
        self._fields = tuple(fields)
        self._reserve = max(1, reserve)
        self._insert = insert_statement(entity, ["id", *fields], returning=False)
        self._insert_series = insert_statement(entity, fields, returning=False, id_series=True)
        # The table's own sequence, as the insert's default would call it (in file order);
        # the ids themselves only when they are not consecutive (another session took some).
        # They come in the order nextval gave them, increasing: no ORDER BY, which sorted
        # every chunk's ids whether listed or not (0.1 s of the server's CPU a million).
        self._ids_sql = (
            "SELECT min(n), max(n), count(*), CASE WHEN max(n) - min(n) + 1 <> count(*) "
            "THEN array_agg(n) END "
            f"FROM (SELECT nextval('{entity}_id_seq') n FROM generate_series(1, %s)) s"
        )
        self._reserving: psycopg.Cursor[Any] | None = None
        self._stack = ExitStack()
        self._pipeline: psycopg.Pipeline | None = None
        self._open = False  # a chunk's transaction is begun and not ended

    def __enter__(self) -> CreatedRows:
        if self._conn.in_transaction():
            raise RuntimeError("CreatedRows needs a connection without a transaction")
        self._driver.autocommit = True
        try:
            self._pipeline = self._stack.enter_context(self._driver.pipeline())
        except psycopg.Error as exc:
            self._driver.autocommit = False
            raise StoreError(f"Database error: {exc}") from exc
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._pipeline is not None
        try:
            if self._open:
                self._driver.execute("ROLLBACK")
                self._open = False
            # Reads every result not read yet (the last COMMIT's): an error raises here.
            self._stack.__exit__(exc_type, exc, tb)
        except psycopg.OperationalError as error:
            raise StoreError(f"The database is not available: {error}") from error
        except psycopg.Error as error:
            raise StoreError(f"Database error: {error}") from error
        finally:
            self._pipeline = None
            self._reserving = None
            # A connection left broken or mid-transaction by an error is the pool's to drop.
            with suppress(psycopg.Error):
                self._driver.autocommit = False

    def write(
        self,
        op_id: str,
        rows: Sequence[int],
        built: Sequence[str],
        values_json: bytes,
        errors: Sequence[tuple[int, int, str, str]],
        *,
        owner: str,
        deltas: Mapping[str, int],
        values: Mapping[str, Any],
        ledger: LedgerEntry,
    ) -> Operation | None:
        """Begin a chunk's transaction and send its statements; the operation as the counter
        update returned it (None: ``owner`` no longer holds the lease). The transaction stays
        open for :meth:`commit` or :meth:`rollback`.

        ``rows``: the records' row numbers; ``built``: their columns as the reader built them
        (``postgres.columns``); ``values_json``: their values, encoded; ``errors``: the chunk's
        row errors as ``AuditStore.insert_errors`` takes them. Raises DuplicateRow (a key
        taken meanwhile) or Conflict (the chunk is committed already), the chunk rolled back.
        """
        org_id = self._org_id
        ids = self._ids(len(rows))
        statement, params = advance_call(org_id, op_id, owner, deltas, ledger, values)
        update = self._driver.cursor()
        try:
            with self._driver.cursor() as cur:
                cur.execute("BEGIN")
                self._open = True
                cur.execute(SCOPE_BULK, (str(org_id),))
                if isinstance(ids, range):
                    written = (org_id, ids.start, ids.stop - 1, *built)
                    cur.execute(self._insert_series, written, prepare=False)
                else:
                    written = (org_id, "\x1f".join(map(str, ids)), *built)
                    cur.execute(self._insert, written, prepare=False)
                cur.execute(
                    batch_insert("%s"),
                    created_params(
                        org_id, op_id, self._fields, rows, list(ids), values_json, EncodedText
                    ),
                )
                if errors:
                    cur.executemany(errors_insert("%s"), error_params(org_id, op_id, errors))
            update.execute(compiled(statement, self._conn), plain_params(params))
            # The next chunk's ids, in the same round trip (a sequence ignores the rollback).
            self._reserving = self._driver.cursor()
            self._reserving.execute(self._ids_sql, (self._reserve,))
            row = update.fetchone()  # the round trip: every result above comes back
        except psycopg.Error as exc:
            self._reserving = None  # skipped with the rest of the aborted chunk
            self.rollback()
            if isinstance(exc, psycopg.IntegrityError):
                if exc.diag.constraint_name == _LEDGER_KEY:
                    raise already_committed(op_id, ledger.chunk_index) from exc
                raise DuplicateRow(str(exc)) from exc
            if isinstance(exc, psycopg.OperationalError):
                raise StoreError(f"The database is not available: {exc}") from exc
            raise StoreError(f"Database error: {exc}") from exc
        finally:
            update.close()
        return operation_of(row)

    def commit(self, event: tuple[str, str, Mapping[str, Any]] | None = None) -> None:
        """Commit the chunk written last, with its progress ``event`` (operation id, name,
        data) if any, without waiting: the next round trip brings the answer."""
        with self._driver.cursor() as cur:
            if event is not None:
                cur.execute(
                    compiled(INSERT_EVENT_NOTIFYING, self._conn),
                    event_values(self._org_id, *event),
                )
            cur.execute("COMMIT")
        self._open = False

    def rollback(self) -> None:
        """Undo the chunk written last (waits for the answer)."""
        if not self._open:
            return
        self._open = False
        assert self._pipeline is not None
        # The results left of a refused chunk (its statements after the refusal, skipped)
        # are read first; the refusal itself was raised already.
        with suppress(psycopg.Error):
            self._pipeline.sync()
        try:
            with self._driver.cursor() as cur:
                cur.execute("ROLLBACK")
            self._pipeline.sync()
        except psycopg.Error as exc:
            raise StoreError(f"Database error: {exc}") from exc

    def _ids(self, count: int) -> Sequence[int]:
        """``count`` ids of the entity's sequence, in the order it gave them: a range when
        they are consecutive (as they are unless another session took ids meanwhile). The
        ids reserved and not used (a chunk's invalid records') are left as gaps."""
        reserved: Sequence[int] = ()
        if self._reserving is not None:
            reserved = _reserved(self._reserving.fetchone())
            self._reserving.close()
            self._reserving = None
        if len(reserved) < count:
            with self._driver.cursor() as cur:
                cur.execute(self._ids_sql, (max(self._reserve, count),))
                reserved = _reserved(cur.fetchone())
        return reserved[:count]


def _reserved(row: tuple[Any, ...] | None) -> Sequence[int]:
    """The ids of a reservation's row (first, last, count, the ids if not consecutive)."""
    if row is None or row[0] is None:
        return ()
    first, last, _, listed = row
    return range(first, last + 1) if listed is None else listed
