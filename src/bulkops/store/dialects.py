"""What differs between SQLite and PostgreSQL, as one strategy object per database.

A :class:`Store` picks its :class:`Dialect` once, from the URL (:func:`dialect_for`); the
sub-stores ask it and never test the database's name. ``postgres`` (psycopg) and ``schema``
(Alembic) are imported where they are used: together they took over half a second of every
command's start-up, and SQLite needs neither.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any

import orjson
from sqlalchemy import (
    Engine,
    Numeric,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.expression import UpdateBase

from bulkops.errors import StoreError
from bulkops.store.clock import utcnow
from bulkops.store.errors import DuplicateRow, translate
from bulkops.store.tables import (
    ENTITY_TABLES,
    MIXED_CASE_FOLDED,
    api_tokens,
    operation_events,
    users,
)
from bulkops.store.waiters import EventWaiter, SleepWaiter

_EVENT_COLUMNS = ("organization_id", "operation_id", "event", "data", "created_at")
# Built once (every chunk writes an event): building a statement cost more than running it.
_INSERT_EVENT = insert(operation_events)
# Its parameters are the columns event_values() gives (so its SQL can run on the driver too),
# and the channel is written in it.
INSERT_EVENT_NOTIFYING = (
    insert(operation_events)
    .values({name: bindparam(name) for name in _EVENT_COLUMNS})
    .returning(
        operation_events.c.id,
        func.pg_notify(literal_column("'bulkops_events'"), operation_events.c.operation_id),
    )
)

__all__ = [
    "Dialect",
    "PostgresDialect",
    "SqliteDialect",
    "dialect_for",
]

_SCOPE = "SELECT set_config('app.current_org', %s, true)"
SCOPE_BULK = (
    "SELECT set_config('app.current_org', %s, true), set_config('synchronous_commit', 'off', true)"
)

Rows = Sequence[Sequence[Any]]


class Dialect(ABC):
    """One database's connection set-up, SQL forms and fast paths."""

    name: str
    """``sqlite`` or ``postgresql``."""
    placeholder: str
    """The driver's parameter mark in raw SQL."""
    org_by_id: str
    """The organization filter of look-ups by id (see :class:`SqliteDialect`)."""
    deletes_unchanged: bool = False
    """Whether :meth:`delete_unchanged` compares and deletes a batch in one statement."""
    concurrent_writers: bool = False
    """Whether transactions that write different rows run side by side (not one at a time)."""
    writes_in_cte: bool = False
    """Whether a statement can write another table on the side (``WITH … AS (INSERT …)``)."""
    pipelines: bool = False
    """Whether new rows of an import go one round trip a chunk (``Store.created_rows``)."""

    # -- connections ---------------------------------------------------------------------------

    @abstractmethod
    def create_engine(self, url: str, *, echo: bool) -> Engine:
        """The engine, with this database's connect hooks."""

    @abstractmethod
    def migrate(self, engine: Engine, owner_url: str) -> tuple[str | None, str | None]:
        """Upgrade the schema (as ``owner_url`` where the application role may not); the
        revisions before and after."""

    @abstractmethod
    def scope(self, conn: Connection, org_id: int, *, bulk: bool = False) -> None:
        """Limit the transaction to one organization (row-level security where there is any).

        ``bulk``: the transaction is one chunk of a bulk operation, whose commit need not
        wait for the disk where the database can defer that (see
        :meth:`Store.transaction`).
        """

    @abstractmethod
    def event_waiter(self, url: str) -> AbstractContextManager[EventWaiter]:
        """Wake-ups for progress events written by any process."""

    def insert_event(self, conn: Connection, values: dict[str, Any]) -> int:
        """Write a progress event; its id. Where the database can, listeners are told (after
        commit) in the same round trip."""
        result = conn.execute(_INSERT_EVENT, values)
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def returning_row(
        self, conn: Connection, statement: UpdateBase, params: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        """The first row a statement returns, as a tuple in its RETURNING order (None when
        it returns none); a unique or foreign key violation raises DuplicateRow."""
        try:
            row = conn.execute(statement, params).first()
        except IntegrityError as exc:
            raise DuplicateRow(str(exc.orig)) from exc
        return None if row is None else tuple(row)

    @abstractmethod
    def lock_entity(self, conn: Connection, org_id: int, entity: str) -> None:
        """Serialize, until commit, the transactions that start work on one entity."""

    # -- cross-organization look-ups (before the organization is known) --------------------

    @abstractmethod
    def find_user(
        self, conn: Connection, email: str | None, user_id: int | None
    ) -> dict[str, Any] | None: ...

    @abstractmethod
    def lookup_token(self, conn: Connection, token_hash: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def touch_token(self, conn: Connection, token_id: int) -> None: ...

    # -- entity rows ------------------------------------------------------------------------------

    @abstractmethod
    def walk_by_id(self, conn: Connection) -> None:
        """Before a page of rows in id order (``WHERE id > … ORDER BY id LIMIT n``): make the
        database walk the primary key, whatever its statistics say."""

    @abstractmethod
    def select(self, conn: Connection, sql: str, params: tuple[Any, ...]) -> Rows:
        """Bulk reads as plain tuples, straight from the driver's cursor."""

    @abstractmethod
    def key_filter(
        self, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]]:
        """A WHERE fragment matching any of ``keys``, with one or a few parameters."""

    @abstractmethod
    def rows_by_keys(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        key: Sequence[str],
        columns: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
    ) -> Rows:
        """The rows (``columns``) with these values of a unique ``key`` (``("id",)`` too)."""

    def case_twin_lookup(
        self, table: str, column: str, org_id: int, spellings: set[str]
    ) -> tuple[str, tuple[Any, ...]] | None:
        """The look-up of the rows whose one-column text key ``lower()`` gives one of
        ``spellings``, where this database indexes that key its own way; None for the
        general form (``RowStore.case_twin_query``)."""
        return None

    @abstractmethod
    def allocate_ids(self, conn: Connection, entity: str, count: int) -> list[int]: ...

    def engine_rows(
        self, entity: str, fields: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        """(id, *fields) rows with values as the engine compares them."""
        return [tuple(r) for r in rows]

    def batch_columns(self, fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> Any:
        """What :meth:`insert_batch` would build from ``rows`` to send them, built ahead
        (by the process that reads the file) and handed to it as ``built``; None when this
        database builds nothing."""
        return None

    def insert_batch(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        ids: Sequence[int] | None,
        built: Any = None,
    ) -> list[int]:
        """Insert rows (values in ``fields`` order) with plain statements; their ids, in order."""
        if ids is None:
            ids = self.allocate_ids(conn, entity, len(rows))
        ph = self.placeholder
        columns = ", ".join(fields)
        marks = ", ".join([ph] * (len(fields) + 2))
        sql = f"INSERT INTO {entity} (id, organization_id, {columns}) VALUES ({marks})"
        _write(conn, sql, [(i, org_id, *r) for i, r in zip(ids, rows, strict=True)])
        return list(ids)

    def insert_built(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        built: Any,
        keys: Sequence[tuple[Any, ...]],
    ) -> list[int]:
        """Insert new rows from what :meth:`batch_columns` built (only a database whose
        ``batch_columns`` builds something gets here); their ids, in the order of ``keys``."""
        raise NotImplementedError(f"{self.name} builds no batch columns")

    def update_batch(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[int, tuple[Any, ...]]],
    ) -> None:
        """Set the rows' ``fields`` by id, with plain statements."""
        ph = self.placeholder
        assignments = ", ".join(f"{f} = {ph}" for f in fields)
        sql = f"UPDATE {entity} SET {assignments} WHERE id = {ph} AND organization_id = {ph}"
        _write(conn, sql, [(*values, i, org_id) for i, values in rows])

    def delete_unchanged(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[int, tuple[Any, ...]]],
    ) -> set[int] | None:
        """Delete the rows (id, values) that still hold these values; the ids deleted, or None
        where the database has no such statement (the caller reads the rows and compares)."""
        return None

    def delete_batch(self, conn: Connection, org_id: int, entity: str, ids: Sequence[int]) -> None:
        """Delete rows by id, with plain statements."""
        ph = self.placeholder
        sql = f"DELETE FROM {entity} WHERE id = {ph} AND organization_id = {ph}"
        _write(conn, sql, [(i, org_id) for i in ids])


def _write(conn: Connection, sql: str, params: list[tuple[Any, ...]]) -> None:
    try:
        conn.exec_driver_sql(sql, params)
    except IntegrityError as exc:
        raise DuplicateRow(str(exc.orig)) from exc


class SqliteDialect(Dialect):
    """SQLite: one writer at a time (``BEGIN IMMEDIATE``), JSON parameters for key lists."""

    name = "sqlite"
    placeholder = "?"
    # Filtering by organization where rows are found by id: the unary plus keeps the
    # (organization, key) index out, which would otherwise walk (and, for a page in id order,
    # sort) every row of the organization; the rowid serves instead.
    org_by_id = "+organization_id"
    deletes_unchanged = True

    def walk_by_id(self, conn: Connection) -> None:
        pass  # the unary plus of org_by_id already keeps the organization's index out

    def delete_unchanged(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[int, tuple[Any, ...]]],
    ) -> set[int] | None:
        """One statement: the images as one JSON object (id -> values), each row found by
        id and its stored values, as a JSON array, compared with its image's text; the equal
        ones deleted and their ids returned. Text in any other form (never seen: SQLite and
        orjson write JSON alike) only leaves a row to the caller's comparison in Python.
        Measured, the rollback of 1M new products: 8.0 s against 9.2 s reading the rows back
        (3 runs each, alternated); comparing column by column with ``->>`` was slower still,
        since each one parses the row's JSON again."""
        stored = ", ".join(f"t.{f}" for f in fields)
        sql = (
            f"DELETE FROM {entity} WHERE id IN (SELECT t.id FROM json_each(?) j "
            f"JOIN {entity} t ON t.id = j.key WHERE +t.organization_id = ? "
            f"AND json_array({stored}) = j.value) RETURNING id"
        )
        payload = orjson.dumps({str(i): values for i, values in rows}).decode()
        # On the driver's cursor, as select(): through SQLAlchemy (exec_driver_sql) the same
        # rollback of 1M rows took 0.6 s more CPU (9.2-9.6 s against 8.4-9.2 s, alternated).
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, (payload, org_id))
            return {int(r[0]) for r in cursor.fetchall()}
        except sqlite3.IntegrityError as exc:  # a reference added meanwhile
            raise DuplicateRow(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreError(f"Database error: {exc}") from exc
        finally:
            cursor.close()

    def delete_batch(self, conn: Connection, org_id: int, entity: str, ids: Sequence[int]) -> None:
        """One statement for the chunk (the ids as one JSON parameter), not one per row."""
        try:
            conn.exec_driver_sql(
                f"DELETE FROM {entity} WHERE id IN (SELECT value FROM json_each(?)) "
                "AND +organization_id = ?",
                (orjson.dumps(list(ids)).decode(), org_id),
            )
        except IntegrityError as exc:  # a reference added meanwhile: retried row by row
            raise DuplicateRow(str(exc.orig)) from exc

    def create_engine(self, url: str, *, echo: bool) -> Engine:
        # A pooled connection per thread: opening one costs PRAGMAs, closing the last one
        # checkpoints the WAL.
        engine = create_engine(
            url,
            echo=echo,
            pool_size=4,
            max_overflow=16,
            connect_args={"timeout": 60, "check_same_thread": False},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine

    def migrate(self, engine: Engine, owner_url: str) -> tuple[str | None, str | None]:
        from bulkops.store import schema

        with translate(), engine.begin() as conn:
            return schema.upgrade(conn)

    def scope(self, conn: Connection, org_id: int, *, bulk: bool = False) -> None:
        return None  # every query filters by organization_id itself

    @contextmanager
    def event_waiter(self, url: str) -> Iterator[EventWaiter]:
        yield SleepWaiter()

    def lock_entity(self, conn: Connection, org_id: int, entity: str) -> None:
        return None  # a writing transaction holds the database's only write lock already

    def find_user(
        self, conn: Connection, email: str | None, user_id: int | None
    ) -> dict[str, Any] | None:
        query = select(users)
        query = query.where(users.c.email == email) if email else query.where(users.c.id == user_id)
        row = conn.execute(query).first()
        return dict(row._mapping) if row else None

    def lookup_token(self, conn: Connection, token_hash: str) -> dict[str, Any] | None:
        row = conn.execute(
            select(
                api_tokens.c.id,
                api_tokens.c.organization_id,
                api_tokens.c.user_id,
                users.c.role,
                users.c.email,
            )
            .join(users, users.c.id == api_tokens.c.user_id)
            .where(
                api_tokens.c.token_hash == token_hash,
                api_tokens.c.revoked_at.is_(None),
                users.c.disabled_at.is_(None),
            )
        ).first()
        return dict(row._mapping) if row else None

    def touch_token(self, conn: Connection, token_id: int) -> None:
        conn.execute(
            update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=utcnow())
        )

    def select(self, conn: Connection, sql: str, params: tuple[Any, ...]) -> Rows:
        # The driver's rows skip SQLAlchemy's row objects, which cost as much as the query.
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            rows: Sequence[Any] = cursor.fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"Database error: {exc}") from exc
        finally:
            cursor.close()
        return rows

    def key_filter(
        self, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]]:
        if len(key) == 1:
            payload = orjson.dumps([k[0] for k in keys]).decode()
            return f"{key[0]} IN (SELECT value FROM json_each(?))", (payload,)
        picks = ", ".join(f"value ->> {i}" for i in range(len(key)))
        payload = orjson.dumps([list(k) for k in keys]).decode()
        return f"({', '.join(key)}) IN (SELECT {picks} FROM json_each(?))", (payload,)

    def rows_by_keys(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        key: Sequence[str],
        columns: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
    ) -> Rows:
        where, params = self.key_filter(key, keys)
        org = self.org_by_id if tuple(key) == ("id",) else "organization_id"
        sql = f"SELECT {', '.join(columns)} FROM {entity} WHERE {org} = ? AND {where}"
        return self.select(conn, sql, (org_id, *params))

    def allocate_ids(self, conn: Connection, entity: str, count: int) -> list[int]:
        # The chunk holds SQLite's write lock, so nobody else allocates meanwhile; AUTOINCREMENT
        # keeps ids of deleted rows unused, so a rollback can bring them back.
        seq = conn.exec_driver_sql(
            "SELECT seq FROM sqlite_sequence WHERE name = ?", (entity,)
        ).scalar()
        top = conn.exec_driver_sql(f"SELECT max(id) FROM {entity}").scalar()
        start = max(int(seq or 0), int(top or 0)) + 1
        return list(range(start, start + count))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (the driver's implicit BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    # Fewer, larger checkpoints: each one syncs the database file.
    cursor.execute("PRAGMA wal_autocheckpoint=20000")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("bulkops_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class PostgresDialect(Dialect):
    """PostgreSQL: row-level security per transaction, batches from arrays (see postgres.py)."""

    name = "postgresql"
    placeholder = "%s"
    org_by_id = "organization_id"
    deletes_unchanged = True
    concurrent_writers = True
    writes_in_cte = True
    pipelines = True

    def walk_by_id(self, conn: Connection) -> None:
        # Right after a large import the table's statistics still say it is nearly empty,
        # and the planner then reads every row of the organization through its index and
        # sorts them, for every page: an export of 1M rows took 70 s instead of 5 s. The
        # application role may not ANALYZE (it owns nothing), so the page's transaction
        # tells the planner to walk the primary key instead.
        conn.exec_driver_sql("SET LOCAL enable_bitmapscan = off")
        conn.exec_driver_sql("SET LOCAL enable_sort = off")

    def create_engine(self, url: str, *, echo: bool) -> Engine:
        engine = create_engine(url, echo=echo, pool_pre_ping=True)
        event.listen(engine, "connect", _postgres_on_connect)
        return engine

    def migrate(self, engine: Engine, owner_url: str) -> tuple[str | None, str | None]:
        from bulkops.store import schema

        # As the owner, on a connection of its own: the application's connections drop to the
        # application role, which may not create tables.
        owner = create_engine(owner_url, poolclass=NullPool)
        try:
            with translate(), owner.begin() as conn:
                revisions = schema.upgrade(conn)
        finally:
            owner.dispose()
        engine.dispose()  # connections opened before the roles existed
        return revisions

    def scope(self, conn: Connection, org_id: int, *, bulk: bool = False) -> None:
        # Every transaction starts here: the driver's SQL, not a text() construct to compile.
        # A bulk chunk's deferred WAL flush (see Store.transaction) is said in the same
        # statement: one round trip a chunk fewer.
        statement = SCOPE_BULK if bulk else _SCOPE
        conn.exec_driver_sql(statement, (str(org_id),))

    @contextmanager
    def event_waiter(self, url: str) -> Iterator[EventWaiter]:
        from bulkops.store import postgres

        listener = postgres.EventListener(url)
        try:
            yield listener
        finally:
            listener.close()

    def insert_event(self, conn: Connection, values: dict[str, Any]) -> int:
        # pg_notify in RETURNING: the notice goes with the insert (one round trip, not two).
        return int(conn.execute(INSERT_EVENT_NOTIFYING, values).one()[0])

    def returning_row(
        self, conn: Connection, statement: UpdateBase, params: dict[str, Any]
    ) -> tuple[Any, ...] | None:
        from bulkops.store import postgres

        # On the driver's cursor, compiled once: a chunk's counter update returns the whole
        # operation row, and the generic path spent more building the result's description
        # (a column object per column, every time) than the database spent on the update.
        with _batch():
            return postgres.returning_row(conn, compiled(statement, conn), params)

    def lock_entity(self, conn: Connection, org_id: int, entity: str) -> None:
        # Two processes deciding at once could otherwise both see the entity free.
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
            {"name": f"bulkops:start:{org_id}:{entity}"},
        )

    def find_user(
        self, conn: Connection, email: str | None, user_id: int | None
    ) -> dict[str, Any] | None:
        from bulkops.store import postgres

        # Before the organization is known: a SECURITY DEFINER function (migration 0002).
        return postgres.find_user(conn, email or None, None if email else user_id)

    def lookup_token(self, conn: Connection, token_hash: str) -> dict[str, Any] | None:
        from bulkops.store import postgres

        return postgres.lookup_token(conn, token_hash)

    def touch_token(self, conn: Connection, token_id: int) -> None:
        from bulkops.store import postgres

        postgres.touch_token(conn, token_id)

    def select(self, conn: Connection, sql: str, params: tuple[Any, ...]) -> Rows:
        from bulkops.store import postgres

        # Never a prepared generic plan (see postgres.select_unprepared).
        return postgres.select_unprepared(conn, sql, params)

    def key_filter(
        self, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]]:
        from bulkops.store import postgres

        # Typed arrays, so that the index on the key serves them (an untyped one is not used).
        arrays = [postgres.array_param([k[i] for k in keys]) for i in range(len(key))]
        if len(key) == 1:
            return f"{key[0]} = ANY({arrays[0][0]})", (arrays[0][1],)
        casts = ", ".join(sql for sql, _ in arrays)
        return (
            f"({', '.join(key)}) IN (SELECT * FROM unnest({casts}))",
            tuple(value for _, value in arrays),
        )

    def rows_by_keys(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        key: Sequence[str],
        columns: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
    ) -> Rows:
        from bulkops.store import postgres

        return postgres.rows_by_keys(conn, org_id, entity, key, columns, keys)

    def case_twin_lookup(
        self, table: str, column: str, org_id: int, spellings: set[str]
    ) -> tuple[str, tuple[Any, ...]] | None:
        from bulkops.store import postgres

        if MIXED_CASE_FOLDED.get(table) != column:
            return None
        return postgres.case_twin_lookup(table, column, org_id, spellings)

    def allocate_ids(self, conn: Connection, entity: str, count: int) -> list[int]:
        rows = conn.exec_driver_sql(
            f"SELECT nextval(pg_get_serial_sequence('{entity}', 'id')) FROM generate_series(1, %s)",
            (count,),
        )
        return [int(r[0]) for r in rows]

    def engine_rows(
        self, entity: str, fields: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        # NUMERIC columns come back as Decimal; the engine keeps prices as canonical text.
        # Only those columns are converted.
        numeric = [i + 1 for i, f in enumerate(fields) if _is_numeric(entity, f)]
        if not numeric:
            return [tuple(r) for r in rows]
        out = []
        for r in rows:
            row = list(r)
            for i in numeric:
                row[i] = _from_db(row[i])
            out.append(tuple(row))
        return out

    def batch_columns(self, fields: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> Any:
        from bulkops.store import postgres

        if len(rows) < postgres.ARRAY_MIN_ROWS:
            return None
        try:
            return postgres.columns(rows, len(fields))
        except postgres.NotSplittable:
            return None

    def insert_batch(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        ids: Sequence[int] | None,
        built: Any = None,
    ) -> list[int]:
        from bulkops.store import postgres

        if len(rows) >= postgres.ARRAY_MIN_ROWS:
            with suppress(postgres.NotSplittable), _batch():
                return postgres.insert_rows(conn, org_id, entity, fields, rows, ids, built)
        return super().insert_batch(conn, org_id, entity, fields, rows, ids)

    def insert_built(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        built: Any,
        keys: Sequence[tuple[Any, ...]],
    ) -> list[int]:
        from bulkops.store import postgres

        with _batch():
            return postgres.insert_rows(conn, org_id, entity, fields, None, None, built, keys=keys)

    def update_batch(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[int, tuple[Any, ...]]],
    ) -> None:
        from bulkops.store import postgres

        if len(rows) >= postgres.ARRAY_MIN_ROWS:
            with suppress(postgres.NotSplittable), _batch():
                postgres.update_rows(conn, org_id, entity, fields, rows)
                return
        super().update_batch(conn, org_id, entity, fields, rows)

    def delete_batch(self, conn: Connection, org_id: int, entity: str, ids: Sequence[int]) -> None:
        from bulkops.store import postgres

        with _batch():
            postgres.delete_by_ids(conn, org_id, entity, ids)

    def delete_unchanged(
        self,
        conn: Connection,
        org_id: int,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[int, tuple[Any, ...]]],
    ) -> set[int] | None:
        from bulkops.store import postgres

        if len(rows) < postgres.ARRAY_MIN_ROWS:
            return None
        with suppress(postgres.NotSplittable), _batch():
            return postgres.delete_unchanged(conn, org_id, entity, fields, rows)
        return None


def _is_numeric(entity: str, field: str) -> bool:
    return isinstance(ENTITY_TABLES[entity].c[field].type, Numeric)


def _from_db(value: Any) -> Any:
    if value.__class__.__name__ == "Decimal":
        return f"{value:.2f}"
    return value


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    from bulkops.store import postgres

    postgres.prepare_session(dbapi_connection)


@contextmanager
def _batch() -> Iterator[None]:
    from bulkops.store import postgres

    try:
        yield
    except postgres.RowsRejected as exc:
        raise DuplicateRow(str(exc)) from exc


_COMPILED: dict[int, tuple[UpdateBase, str]] = {}


def compiled(statement: UpdateBase, conn: Connection) -> str:
    """The SQL text of a statement built once and kept (keyed by the object, kept alive)."""
    found = _COMPILED.get(id(statement))
    if found is None or found[0] is not statement:
        found = (statement, str(statement.compile(dialect=conn.dialect)))
        _COMPILED[id(statement)] = found
    return found[1]


def dialect_for(url: str) -> Dialect:
    """The strategy of the database ``url`` names."""
    return SqliteDialect() if url.startswith("sqlite") else PostgresDialect()
