"""PostgreSQL: row-level security roles, the batch write path, and event notifications.

Tenant tables have ``FORCE ROW LEVEL SECURITY`` with policies comparing ``organization_id``
to ``current_setting('app.current_org', true)`` (migration 0002), and ``COPY FROM`` is refused
on such tables. So a chunk is written with one ``INSERT … SELECT`` (or ``UPDATE … FROM``)
from ``unnest`` of one text parameter per column, which goes through the policies in one
round trip. It replaced a ``COPY`` into a temporary staging table followed by an ``INSERT …
SELECT … ON CONFLICT``: the database's part of a 1M-product import fell from 10.9 s to 6.3 s
(``bench.floor``), and the client no longer formats ``COPY`` rows. The statements run on the
driver connection inside the transaction SQLAlchemy has already begun: no ``psycopg``
transaction blocks here, which would turn into SAVEPOINTs.

Roles: ``bulkops_app`` is a NOLOGIN, NOBYPASSRLS group holding the application's privileges;
the login role of ``BULKOPS_DATABASE_URL`` is a member of it and owns nothing. The owner
(``BULKOPS_DATABASE_OWNER_URL``) runs the migrations. A session that would bypass RLS (a
superuser URL in development or a benchmark) drops to ``bulkops_app`` when it connects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from enum import Enum
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, make_url

from bulkops.errors import StoreError
from bulkops.store.tables import ENTITY_TABLES, ascii_lowered, mixed_case, natural_key

__all__ = [
    "APP_ROLE",
    "ARRAY_MIN_ROWS",
    "EVENTS_CHANNEL",
    "EncodedText",
    "EventListener",
    "NotSplittable",
    "RowsRejected",
    "array_param",
    "columns",
    "delete_by_ids",
    "delete_unchanged",
    "driver",
    "find_user",
    "insert_rows",
    "insert_statement",
    "lookup_token",
    "plain_params",
    "prepare_session",
    "returning_row",
    "rows_by_keys",
    "select_unprepared",
    "setup_roles",
    "touch_token",
    "update_rows",
    "update_statement",
]

APP_ROLE = "bulkops_app"
EVENTS_CHANNEL = "bulkops_events"
ARRAY_MIN_ROWS = 8
"""Smaller batches (the per-record fallback, single rows) use plain statements."""
_KEY_SEPARATOR = "\x1f"
_NULL_MARK = "\x1e"


class EncodedText:
    """A text parameter already in UTF-8 (a change batch's JSON document, made of encoded
    parts), which the driver sends as it is. As a ``str`` it was decoded here and encoded
    again by the driver: 0.15-0.2 ms for a batch of 1,000 products with accented names."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class _EncodedTextDumper(psycopg.adapt.Dumper):
    oid = psycopg.postgres.types["text"].oid

    def dump(self, obj: EncodedText) -> bytes:
        return obj.data


class RowsRejected(Exception):
    """A batch broke a constraint or a policy; the caller retries record by record."""


def prepare_session(dbapi_connection: Any) -> None:
    """On every new connection: never bypass RLS, and no JIT compilation (runs in its own
    committed transaction).

    bulkops' statements are each one chunk's work, a few milliseconds; compiling one with
    JIT, which the planner asks for once its estimates run high (as they do on a table whose
    statistics are minutes old), cost 90-200 ms (measured: a chunk's case-twin look-up).
    """
    dbapi_connection.adapters.register_dumper(EncodedText, _EncodedTextDumper)
    with dbapi_connection.cursor() as cur:
        cur.execute("SET jit = off")
        cur.execute(
            "SELECT r.rolsuper OR r.rolbypassrls, to_regrole(%s) IS NOT NULL "
            "FROM pg_roles r WHERE r.rolname = current_user",
            (APP_ROLE,),
        )
        row = cur.fetchone()
        if row is not None and row[0] and row[1]:
            cur.execute(f"SET ROLE {APP_ROLE}")
    dbapi_connection.commit()


def driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy one."""
    found = conn.connection.driver_connection
    assert isinstance(found, psycopg.Connection)
    return found


def plain_params(params: dict[str, Any]) -> dict[str, Any]:
    """Enum parameters as their values, as SQLAlchemy would send them."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in params.items()}


@contextlib.contextmanager
def _batch_errors() -> Iterator[None]:
    try:
        yield
    except (psycopg.IntegrityError, psycopg.DataError) as exc:
        raise RowsRejected(str(exc)) from exc
    except psycopg.errors.InsufficientPrivilege as exc:  # a row-level security policy
        raise RowsRejected(str(exc)) from exc
    except psycopg.Error as exc:
        raise StoreError(f"Database error: {exc}") from exc


def returning_row(
    conn: Connection, sql: str, params: dict[str, Any]
) -> tuple[Any, ...] | None:
    """Run ``sql`` (named ``%(name)s`` parameters) on the driver's cursor; its first row.

    Enum parameters go as their values, as SQLAlchemy would send them. A unique or foreign
    key violation raises :class:`RowsRejected`; any other error is a StoreError, as the
    store's other statements give it.
    """
    try:
        with driver(conn).cursor() as cur:
            cur.execute(sql, plain_params(params))
            row: tuple[Any, ...] | None = cur.fetchone()
    except psycopg.IntegrityError as exc:
        raise RowsRejected(str(exc)) from exc
    except psycopg.OperationalError as exc:
        raise StoreError(f"The database is not available: {exc}") from exc
    except psycopg.Error as exc:
        raise StoreError(f"Database error: {exc}") from exc
    return row


def select_unprepared(
    conn: Connection, statement: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """A query never run as a prepared statement: key look-ups with one array parameter.

    A generic plan cached while a table was small (a sequential scan testing every row
    against the whole array) stays when it has grown: planning each time is far cheaper.
    """
    with _batch_errors(), driver(conn).cursor() as cur:
        cur.execute(statement, params, prepare=False)
        return list(cur.fetchall())


def array_param(values: Sequence[Any]) -> tuple[str, Any]:
    """An array parameter of keys: (its SQL, its value).

    One text joined by U+001F and split on the server (``string_to_array``): psycopg dumps a
    Python list of a thousand strings in Python, which cost more than the query in the
    look-up of a chunk's rows, and a 1M-product delete 0.9 s of its client's time in the
    look-up of referencing rows. Where a value holds the separator, or the one value is
    empty (which ``string_to_array`` would make no element at all), the list itself goes.
    Integers travel as digits and are cast to ``bigint[]``.
    """
    if isinstance(values[0], int):
        return "string_to_array(%s, E'\\x1f')::bigint[]", _KEY_SEPARATOR.join(map(str, values))
    try:
        text = _KEY_SEPARATOR.join(values)
    except TypeError:  # not all text: as they are
        return "%s::text[]", list(values)
    if text and text.count(_KEY_SEPARATOR) == len(values) - 1:
        return "string_to_array(%s, E'\\x1f')", text
    return "%s::text[]", list(values)


def rows_by_keys(
    conn: Connection,
    org_id: int,
    entity: str,
    key: Sequence[str],
    columns: Sequence[str],
    keys: Sequence[tuple[Any, ...]],
) -> list[tuple[Any, ...]]:
    """The rows (``columns``) with these values of a unique ``key``: one index probe per key.

    Written as a LATERAL subquery so that the plan does not depend on statistics: a table
    filled within minutes has none (or stale ones), and ``key = ANY(…)`` alone was planned
    as a scan of the whole organization with the array as a filter.
    """
    # Each key column travels as one text parameter, split on the server (array_param).
    arrays = [array_param([k[i] for k in keys]) for i in range(len(key))]
    casts = ", ".join(sql for sql, _ in arrays)
    names = ", ".join(f"k{i}" for i in range(len(key)))
    match = " AND ".join(f"t.{c} = k.k{i}" for i, c in enumerate(key))
    statement = (
        f"SELECT {', '.join(f't.{c}' for c in columns)} FROM unnest({casts}) AS k({names}) "
        f"CROSS JOIN LATERAL (SELECT * FROM {entity} t WHERE t.organization_id = %s "
        f"AND {match} LIMIT 1) t"
    )
    return select_unprepared(conn, statement, (*(value for _, value in arrays), org_id))


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def case_twin_lookup(
    table: str, column: str, org_id: int, spellings: set[str]
) -> tuple[str, tuple[Any, ...]]:
    """The rows of a ``MIXED_CASE_FOLDED`` table (its folded-key index holds only the keys
    with both upper- and lower-case ASCII letters, migration 0011) that may be case twins:
    (SQL, params).

    ``spellings`` are what lowering the ASCII letters of a twin's key may give
    (:func:`bulkops.store.rows.lowered_spellings`). A stored key without upper-case ASCII
    letters is one of them, and one without lower-case ASCII letters one of them with its
    ASCII letters upper-cased: both are found exactly, through the unique key's index. The
    others (both cases) are in the partial folded-key index, which the second half reads.

    Each spelling is its own probe (``LATERAL``; ``OFFSET 0`` keeps the planner from turning
    the probes into one join), as in :func:`rows_by_keys`: with ``= ANY(…)`` the planner,
    which knows nothing of how few rows the partial index holds, scanned the whole table for
    the second half (83 ms a chunk at 300,000 products).
    """
    lowered = sorted(spellings)
    exact = sorted(set(lowered) | {s.translate(_ASCII_UPPER) for s in lowered})
    folded, mixed = ascii_lowered(column), mixed_case(column)
    sql = (
        f"SELECT t.id, t.{column} FROM unnest(%s::text[]) AS k(v) CROSS JOIN LATERAL ("
        f"SELECT id, {column} FROM {table} WHERE organization_id = %s AND {column} = k.v "
        f"LIMIT 1) t UNION ALL "
        f"SELECT t.id, t.{column} FROM unnest(%s::text[]) AS k(v) CROSS JOIN LATERAL ("
        f"SELECT id, {column} FROM {table} WHERE organization_id = %s AND {folded} = k.v "
        f"AND {mixed} OFFSET 0) t"
    )
    return sql, (exact, org_id, lowered, org_id)


class NotSplittable(Exception):
    """A value of the batch holds one of the marks :func:`columns` joins with: the caller
    writes the batch with plain statements instead."""


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[str]:
    """The batch as one text per column: values joined by U+001F, NULL written as U+001E.

    Validated text never holds a control character other than tab and line breaks. A value
    that does all the same (a before-image of a row written outside bulkops, restored by a
    rollback) would shift the columns: the marks are counted, and such a batch raises
    :class:`NotSplittable`. Prices travel as their canonical text, quantities and ids as
    digits; the server casts each column to its type (``string_to_array``).
    """
    null, separator = _NULL_MARK, _KEY_SEPARATOR
    texts = []
    for i, values in enumerate(zip(*rows, strict=True)):
        nulls = values.count(None)
        try:  # a column of text joins as it is (this runs for every value of an import)
            text = separator.join([null if v is None else v for v in values] if nulls else values)
        except TypeError:  # numbers
            text = separator.join([null if v is None else str(v) for v in values])
        if text.count(separator) != len(values) - 1 or text.count(null) != nulls:
            raise NotSplittable(f"a value of column {i + 1} holds U+001E or U+001F")
        texts.append(text)
    if len(texts) != width:
        raise ValueError(f"{len(texts)} columns, not {width}")
    return texts


def _arrays(entity: str, columns: Sequence[str]) -> list[str]:
    """``string_to_array(%s, …)::type[]`` for each of these columns."""
    table = ENTITY_TABLES[entity]
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    return [
        f"string_to_array(%s, E'\\x1f', E'\\x1e')::"
        f"{table.c[c].type.compile(dialect=dialect)}[]"
        for c in columns
    ]


def _unnested(entity: str, columns: Sequence[str]) -> str:
    """``unnest(string_to_array(%s, …)::type[], …) AS u(columns)`` for these columns."""
    return f"unnest({', '.join(_arrays(entity, columns))}) AS u({', '.join(columns)})"


def _probed_by_id(entity: str, fields: Sequence[str], picked: Sequence[str] = ()) -> str:
    """``unnest(…) AS u(id, fields) CROSS JOIN LATERAL (…) p``: each batch row's target
    found by its own primary-key probe (``p.ctid``, and the ``picked`` columns as stored).

    Joined by id alone, the plan followed the statistics of a table filled minutes ago and
    scanned the whole organization for every chunk. Its parameters: id and ``fields`` as
    :func:`columns` gives them, then the organization.
    """
    return (
        f"{_unnested(entity, ['id', *fields])} CROSS JOIN LATERAL "
        f"(SELECT {', '.join(['ctid', *picked])} FROM {entity} "
        f"WHERE id = u.id AND organization_id = %s LIMIT 1) p"
    )


def insert_statement(
    entity: str, written: Sequence[str], *, returning: bool = True, id_series: bool = False
) -> str:
    """The statement of :func:`insert_rows`: its parameters are the organization, then the
    ``written`` columns as :func:`columns` gives them; it returns each new row's id and key
    (unless ``returning`` is off: rows written with their ids). With ``id_series`` the rows
    take consecutive ids, from and to the two parameters after the organization's."""
    # One unnest() per column in the select list, not unnest(…) in FROM: the arrays have
    # one length and are walked in step, row by row, where a function in FROM first copies
    # every row of the batch into a tuple store (measured: the database's part of a
    # 300,000-product import 3.63-3.73 s instead of 3.89-4.05 s).
    unnested = ", ".join(f"unnest({array})" for array in _arrays(entity, written))
    if id_series:  # walked in step with the arrays too
        written, unnested = ["id", *written], f"generate_series(%s::bigint, %s::bigint), {unnested}"
    statement = (
        f"INSERT INTO {entity} (organization_id, {', '.join(written)}) SELECT %s, {unnested}"
    )
    return f"{statement} RETURNING id, {', '.join(natural_key(entity))}" if returning else statement


def insert_rows(
    conn: Connection,
    org_id: int,
    entity: str,
    fields: Sequence[str],
    rows: Sequence[tuple[Any, ...]] | None,
    ids: Sequence[int] | None,
    built: Sequence[str] | None = None,
    *,
    keys: Sequence[tuple[Any, ...]] | None = None,
) -> list[int]:
    """One ``INSERT … SELECT FROM unnest(…)`` through the policies, in one round trip.

    Returns the new ids in the order of ``rows``. The caller has found the keys new (under
    the entity's lock), so there is no ``ON CONFLICT``: a key taken meanwhile fails the whole
    batch, and the caller's per-record fallback names the record. ``built``: the
    :func:`columns` of ``rows``, when the process that read the file built them already;
    then ``rows`` may be None, with ``keys`` (the rows' natural keys, in order) instead.
    """
    key = natural_key(entity)
    written = [*(("id",) if ids is not None else ()), *fields]
    if built is not None and ids is None and len(built) == len(fields):
        texts = list(built)
    elif rows is not None:
        values = rows if ids is None else [(i, *r) for i, r in zip(ids, rows, strict=True)]
        texts = columns(values, len(written))
    else:
        raise ValueError("neither the rows nor their columns")
    # The keys in order: one value each (one key column), or tuples.
    single = len(key) == 1
    if keys is not None:
        wanted = [k[0] for k in keys] if single else [tuple(k) for k in keys]
    elif rows is not None:
        positions = [fields.index(k) for k in key]
        wanted = (
            [row[positions[0]] for row in rows]
            if single
            else [tuple([row[p] for p in positions]) for row in rows]
        )
    else:
        raise ValueError("neither the rows nor their keys")
    with _batch_errors(), driver(conn).cursor() as cur:
        cur.execute(insert_statement(entity, written), (org_id, *texts), prepare=False)
        returned = cur.fetchall()
    if len(returned) != len(wanted):
        raise StoreError(f"Inserted {len(returned)} of {len(wanted)} rows of {entity}.")
    if ids is not None:
        return list(ids)
    # The rows come back in the order they were given (the usual case, though not one the
    # server promises): checked as a whole, which costs far less than matching each key.
    if [r[1] if single else r[1:] for r in returned] == wanted:
        return [r[0] for r in returned]
    by_key = {r[1] if single else r[1:]: int(r[0]) for r in returned}
    try:
        return [by_key[k] for k in wanted]
    except KeyError:
        # A key the database normalised differently (never with validated values).
        raise StoreError(f"Could not match the ids of the new {entity} rows.") from None


def update_statement(entity: str, fields: Sequence[str]) -> str:
    """The statement of :func:`update_rows`: its parameters are the columns (id first, as
    :func:`columns` gives them) and the organization.

    Each target row is found by its own primary-key probe (:func:`_probed_by_id`) and
    updated at that physical position (31 ms a chunk of 1,000 instead of 12 when joined by
    id alone).
    """
    assignments = ", ".join(f"{f} = d.{f}" for f in fields)
    names = ", ".join(f"u.{f}" for f in fields)
    return (
        f"UPDATE {entity} t SET {assignments} FROM ("
        f"SELECT p.ctid AS tid, {names} FROM {_probed_by_id(entity, fields)}"
        f") d WHERE t.ctid = d.tid"
    )


def update_rows(
    conn: Connection,
    org_id: int,
    entity: str,
    fields: Sequence[str],
    rows: Sequence[tuple[int, tuple[Any, ...]]],
) -> None:
    """One ``UPDATE … FROM unnest(…)`` through the policies, in one round trip."""
    values = columns([(i, *values) for i, values in rows], len(fields) + 1)
    with _batch_errors(), driver(conn).cursor() as cur:
        cur.execute(update_statement(entity, fields), (*values, org_id), prepare=False)


def delete_by_ids(conn: Connection, org_id: int, entity: str, ids: Sequence[int]) -> None:
    """Delete rows by id. A batch finds each row with its own primary-key probe.

    ``organization_id = … AND id = ANY(…)`` was planned from the statistics of a table filled
    minutes ago: a scan of the whole organization through its key index for every chunk.
    The batch form finds each row by its own primary-key probe (:func:`_probed_by_id`) and
    deletes it at that physical position. A row updated or deleted by someone else meanwhile is then
    missed; the batch is rejected, and the caller's record-by-record fallback deletes by id.
    """
    with _batch_errors(), driver(conn).cursor() as cur:
        if len(ids) < ARRAY_MIN_ROWS:
            cur.execute(
                f"DELETE FROM {entity} WHERE organization_id = %s AND id = ANY(%s::bigint[])",
                (org_id, list(ids)),
                prepare=False,
            )
            return
        cur.execute(
            f"DELETE FROM {entity} t USING (SELECT p.ctid AS tid FROM "
            f"{_probed_by_id(entity, ())}) d WHERE t.ctid = d.tid",
            (*columns([(i,) for i in ids], 1), org_id),
            prepare=False,
        )
        deleted = cur.rowcount
    if deleted != len(ids):
        raise RowsRejected(f"{len(ids) - deleted} row(s) of {entity} changed meanwhile")


def delete_unchanged(
    conn: Connection,
    org_id: int,
    entity: str,
    fields: Sequence[str],
    rows: Sequence[tuple[int, tuple[Any, ...]]],
) -> set[int]:
    """Delete each row (id, values in ``fields`` order) that still holds exactly these values,
    in one statement; the ids deleted.

    The rollback of an import: the rows it created go if nobody changed them since. The
    server compares each row with its after-image (``IS NOT DISTINCT FROM``, in the column's
    type) where the client used to read every row back and compare it. A row changed or
    deleted meanwhile is left alone and missing from the result: the caller finds out why.
    Raises :class:`NotSplittable` (see :func:`columns`) and :class:`RowsRejected` (a row
    referenced meanwhile).
    """
    params = columns([(i, *values) for i, values in rows], len(fields) + 1)
    stored = ", ".join(f"p.{f}" for f in fields)
    given = ", ".join(f"u.{f}" for f in fields)
    with _batch_errors(), driver(conn).cursor() as cur:
        cur.execute(
            f"DELETE FROM {entity} t USING ("
            f"SELECT p.ctid AS tid FROM {_probed_by_id(entity, fields, fields)} "
            f"WHERE ({stored}) IS NOT DISTINCT FROM ({given})"
            f") d WHERE t.ctid = d.tid RETURNING t.id",
            (*params, org_id),
            prepare=False,
        )
        return {int(r[0]) for r in cur.fetchall()}


# -- cross-organization look-ups (SECURITY DEFINER functions of migration 0002) ---------------


def find_user(conn: Connection, email: str | None, user_id: int | None) -> dict[str, Any] | None:
    with _batch_errors(), driver(conn).cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM bulkops_find_user(%s, %s)", (email, user_id))
        return cur.fetchone()


def lookup_token(conn: Connection, token_hash: str) -> dict[str, Any] | None:
    """The live token with this hash (id, organization_id, user_id, role, email), read-only."""
    with _batch_errors(), driver(conn).cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM bulkops_lookup_token(%s)", (token_hash,))
        return cur.fetchone()


def touch_token(conn: Connection, token_id: int) -> None:
    with _batch_errors(), driver(conn).cursor() as cur:
        cur.execute("SELECT bulkops_touch_token(%s)", (token_id,))


# -- progress events across processes ---------------------------------------------------------


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class EventListener:
    """A dedicated connection that LISTENs for progress events of any process.

    The events table stays the truth: a wake-up only says "read it again".
    """

    def __init__(self, url: str) -> None:
        try:
            self._conn = psycopg.connect(_libpq(url), autocommit=True)
            self._conn.execute(f"LISTEN {EVENTS_CHANNEL}")
        except psycopg.Error as exc:
            raise StoreError(f"The database is not available: {exc}") from exc
        self._pending: set[str] = set()

    def wait(self, op_id: str | None, timeout: float) -> bool:
        """Until an event of ``op_id`` (any operation with None) is committed, or the timeout."""
        if self._pending and (op_id is None or op_id in self._pending):
            self._pending.clear()
            return True
        try:
            for notify in self._conn.notifies(timeout=timeout):
                if op_id is None or notify.payload == op_id:
                    self._pending.clear()
                    return True
                self._pending.add(notify.payload)
        except psycopg.Error as exc:
            raise StoreError(f"Lost the event connection: {exc}") from exc
        return False

    def close(self) -> None:
        self._conn.close()


# -- roles on a fresh server ------------------------------------------------------------------


def setup_roles(admin_url: str, app_url: str, owner_url: str | None) -> list[str]:
    """As a superuser (or CREATEROLE) connection: create the roles and the database.

    The owner and application roles take their names and passwords from the two URLs; the
    database (from the application URL) is created owned by the owner. Existing roles and
    databases are left as they are (the application role is still made a member of
    ``bulkops_app``). Returns what was done, for the command to print.
    """
    app = make_url(app_url)
    owner = make_url(owner_url) if owner_url else None
    if not app.username or not app.database:
        raise StoreError("BULKOPS_DATABASE_URL must name the application user and the database.")
    done: list[str] = []
    admin = make_url(admin_url)
    admin_db = admin.database or "postgres"
    try:
        with psycopg.connect(_libpq(str(admin.set(database=admin_db))), autocommit=True) as conn:

            def role_exists(name: str) -> bool:
                row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
                return row is not None

            if not role_exists(APP_ROLE):
                conn.execute(f"CREATE ROLE {APP_ROLE} NOLOGIN NOBYPASSRLS")
                done.append(f"created group role {APP_ROLE}")
            if owner is not None and owner.username and not role_exists(owner.username):
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {}").format(
                        sql.Identifier(owner.username), sql.Literal(owner.password)
                    )
                )
                done.append(f"created owner role {owner.username}")
            if not role_exists(app.username):
                conn.execute(
                    sql.SQL(
                        "CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                        "PASSWORD {}"
                    ).format(sql.Identifier(app.username), sql.Literal(app.password))
                )
                done.append(f"created application role {app.username}")
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(APP_ROLE), sql.Identifier(app.username)
                )
            )
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (app.database,)
            ).fetchone()
            if exists is None:
                db_owner = owner.username if owner is not None and owner.username else None
                statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(app.database))
                if db_owner:
                    statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(db_owner))
                conn.execute(statement)
                done.append(f"created database {app.database}")
    except psycopg.Error as exc:
        raise StoreError(f"Could not set up the PostgreSQL roles: {exc}") from exc
    return done
