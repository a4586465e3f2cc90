"""PostgreSQL: row-level security roles, the COPY staging fast path, and event notifications.

Tenant tables have ``FORCE ROW LEVEL SECURITY`` with policies comparing ``organization_id``
to ``current_setting('app.current_org', true)`` (migration 0002), and ``COPY FROM`` is refused
on such tables. So a chunk is loaded with ``COPY`` into a per-connection temporary staging
table (``ON COMMIT DELETE ROWS``, created when the connection opens) and moved with one
``INSERT … SELECT … ON CONFLICT … RETURNING`` (or ``UPDATE … FROM``) that goes through the
policies. The statements run on the driver connection inside the transaction SQLAlchemy has
already begun: no ``psycopg`` transaction blocks here, which would turn into SAVEPOINTs.

Roles: ``bulkops_app`` is a NOLOGIN, NOBYPASSRLS group holding the application's privileges;
the login role of ``BULKOPS_DATABASE_URL`` is a member of it and owns nothing. The owner
(``BULKOPS_DATABASE_OWNER_URL``) runs the migrations. A session that would bypass RLS (a
superuser URL in development or a benchmark) drops to ``bulkops_app`` when it connects.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, make_url

from bulkops.errors import StoreError
from bulkops.store.tables import ENTITY_TABLES, natural_key

__all__ = [
    "APP_ROLE",
    "EVENTS_CHANNEL",
    "STAGE_MIN_ROWS",
    "EventListener",
    "RowsRejected",
    "delete_by_ids",
    "find_user",
    "insert_staged",
    "lookup_token",
    "prepare_session",
    "rows_by_keys",
    "select_unprepared",
    "setup_roles",
    "touch_token",
    "update_staged",
]

APP_ROLE = "bulkops_app"
EVENTS_CHANNEL = "bulkops_events"
STAGE_MIN_ROWS = 8
_KEY_SEPARATOR = "\x1f"
"""Smaller batches (the per-record fallback, single rows) use plain statements."""


class RowsRejected(Exception):
    """A staged batch broke a constraint or a policy; the caller retries record by record."""


def _stage(entity: str) -> str:
    return f"bulkops_stage_{entity}"


def _stage_ddl() -> list[str]:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    statements = []
    for name, table in ENTITY_TABLES.items():
        columns = ", ".join(
            f"{c.name} {c.type.compile(dialect=dialect)}"
            for c in table.columns
            if c.name not in ("id", "organization_id")
        )
        statements.append(
            f"CREATE TEMP TABLE IF NOT EXISTS {_stage(name)} "
            f"(n bigint, id bigint, {columns}) ON COMMIT DELETE ROWS"
        )
    return statements


_STAGE_DDL = _stage_ddl()


def prepare_session(dbapi_connection: Any) -> None:
    """On every new connection: never bypass RLS, and create the staging tables.

    Runs in its own committed transaction, so a later rollback never drops the staging tables.
    """
    with dbapi_connection.cursor() as cur:
        cur.execute(
            "SELECT r.rolsuper OR r.rolbypassrls, to_regrole(%s) IS NOT NULL "
            "FROM pg_roles r WHERE r.rolname = current_user",
            (APP_ROLE,),
        )
        row = cur.fetchone()
        if row is not None and row[0] and row[1]:
            cur.execute(f"SET ROLE {APP_ROLE}")
        for statement in _STAGE_DDL:
            cur.execute(statement)
    dbapi_connection.commit()


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    return driver


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


def select_unprepared(
    conn: Connection, statement: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """A query never run as a prepared statement: key look-ups with one array parameter.

    A generic plan cached while a table was small (a sequential scan testing every row
    against the whole array) stays when it has grown: planning each time is far cheaper.
    """
    with _batch_errors(), _driver(conn).cursor() as cur:
        cur.execute(statement, params, prepare=False)
        return list(cur.fetchall())


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
    # Each key column travels as ONE text parameter, split on the server: dumping a Python
    # list of a thousand strings as an array parameter cost more than the query. The
    # separator (U+001F) is a control character, which validated values never contain.
    arrays = tuple(_KEY_SEPARATOR.join([str(k[i]) for k in keys]) for i in range(len(key)))
    casts = ", ".join(
        "string_to_array(%s, E'\\x1f')::bigint[]"
        if isinstance(keys[0][i], int)
        else "string_to_array(%s, E'\\x1f')"
        for i in range(len(key))
    )
    names = ", ".join(f"k{i}" for i in range(len(key)))
    match = " AND ".join(f"t.{c} = k.k{i}" for i, c in enumerate(key))
    statement = (
        f"SELECT {', '.join(f't.{c}' for c in columns)} FROM unnest({casts}) AS k({names}) "
        f"CROSS JOIN LATERAL (SELECT * FROM {entity} t WHERE t.organization_id = %s "
        f"AND {match} LIMIT 1) t"
    )
    return select_unprepared(conn, statement, (*arrays, org_id))


def _copy(cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], rows: Any) -> None:
    # A bulk chunk commits without waiting for its WAL flush: a server crash can lose only the
    # last chunks, whole, together with their ledger rows, so a resume applies them again.
    # The operation's final commit waits as usual and so makes every earlier chunk durable
    # (the WAL is flushed in order) before anyone is told that the operation ended.
    cur.execute("SET LOCAL synchronous_commit = off")
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def insert_staged(
    conn: Connection,
    org_id: int,
    entity: str,
    fields: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    ids: Sequence[int] | None,
) -> list[int]:
    """COPY the rows into the staging table, then one INSERT … SELECT through the policies.

    Returns the new ids in the order of ``rows``. A row whose natural key exists already is
    not inserted (``ON CONFLICT DO NOTHING``); then the whole batch is rejected, so that the
    caller's per-record fallback can name it.
    """
    key = natural_key(entity)
    stage = _stage(entity)
    cols = ", ".join(fields)
    id_col = "id, " if ids is not None else ""
    statement = (
        f"WITH s AS (DELETE FROM {stage} RETURNING *) "
        f"INSERT INTO {entity} ({id_col}organization_id, {cols}) "
        f"SELECT {id_col}%s, {cols} FROM s ORDER BY n "
        f"ON CONFLICT ({', '.join(('organization_id', *key))}) DO NOTHING "
        f"RETURNING id, {', '.join(key)}"
    )
    if ids is None:
        staged: Any = ((n, *r) for n, r in enumerate(rows))
        columns: list[str] = ["n", *fields]
    else:
        staged = ((n, i, *r) for n, (i, r) in enumerate(zip(ids, rows, strict=True)))
        columns = ["n", "id", *fields]
    with _batch_errors(), _driver(conn).cursor() as cur:
        _copy(cur, stage, columns, staged)
        cur.execute(statement, (org_id,), prepare=False)
        returned = cur.fetchall()
    if len(returned) != len(rows):
        raise RowsRejected(
            f"{len(rows) - len(returned)} row(s) of {entity} have a key that exists already"
        )
    positions = [fields.index(k) for k in key]
    by_key = {tuple(r[1:]): int(r[0]) for r in returned}
    try:
        return [by_key[tuple(row[p] for p in positions)] for row in rows]
    except KeyError:
        # A key the database normalised differently (never with validated values): ask again.
        if ids is not None:
            return list(ids)
        raise StoreError(f"Could not match the ids of the new {entity} rows.") from None


def update_staged(
    conn: Connection,
    org_id: int,
    entity: str,
    fields: Sequence[str],
    rows: Sequence[tuple[int, tuple[Any, ...]]],
) -> None:
    """COPY (id, values) into the staging table, then one UPDATE … FROM through the policies.

    The target rows are found by ``id = ANY(ARRAY(SELECT …))``: joining the staging table
    (which has no statistics) straight to a large table can pick a sequential scan.
    """
    stage = _stage(entity)
    assignments = ", ".join(f"{f} = s.{f}" for f in fields)
    statement = (
        f"WITH s AS MATERIALIZED (DELETE FROM {stage} RETURNING *) "
        f"UPDATE {entity} t SET {assignments} FROM s "
        f"WHERE t.id = s.id AND t.organization_id = %s "
        f"AND t.id = ANY(ARRAY(SELECT id FROM s))"
    )
    with _batch_errors(), _driver(conn).cursor() as cur:
        _copy(
            cur,
            stage,
            ["n", "id", *fields],
            ((n, i, *values) for n, (i, values) in enumerate(rows)),
        )
        cur.execute(statement, (org_id,), prepare=False)


def delete_by_ids(conn: Connection, org_id: int, entity: str, ids: Sequence[int]) -> None:
    """Delete rows by id. A batch finds each row with its own primary-key probe.

    ``organization_id = … AND id = ANY(…)`` was planned from the statistics of a table filled
    minutes ago: a scan of the whole organization through its key index for every chunk.
    The batch form finds each row by id (``LATERAL``, as :func:`rows_by_keys`) and deletes it
    at that physical position. A row updated or deleted by someone else meanwhile is then
    missed; the batch is rejected, and the caller's record-by-record fallback deletes by id.
    """
    with _batch_errors(), _driver(conn).cursor() as cur:
        if len(ids) < STAGE_MIN_ROWS:
            cur.execute(
                f"DELETE FROM {entity} WHERE organization_id = %s AND id = ANY(%s::bigint[])",
                (org_id, list(ids)),
                prepare=False,
            )
            return
        cur.execute(
            f"DELETE FROM {entity} t USING ("
            f"SELECT p.ctid AS tid FROM unnest(string_to_array(%s, ',')::bigint[]) AS k(id) "
            f"CROSS JOIN LATERAL (SELECT ctid FROM {entity} "
            f"WHERE id = k.id AND organization_id = %s LIMIT 1) p"
            f") d WHERE t.ctid = d.tid",
            (",".join(map(str, ids)), org_id),
            prepare=False,
        )
        deleted = cur.rowcount
    if deleted != len(ids):
        raise RowsRejected(f"{len(ids) - deleted} row(s) of {entity} changed meanwhile")


# -- cross-organization look-ups (SECURITY DEFINER functions of migration 0002) ---------------


def find_user(conn: Connection, email: str | None, user_id: int | None) -> dict[str, Any] | None:
    with _batch_errors(), _driver(conn).cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM bulkops_find_user(%s, %s)", (email, user_id))
        return cur.fetchone()


def lookup_token(conn: Connection, token_hash: str) -> dict[str, Any] | None:
    """The live token with this hash (id, organization_id, user_id, role, email), read-only."""
    with _batch_errors(), _driver(conn).cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute("SELECT * FROM bulkops_lookup_token(%s)", (token_hash,))
        return cur.fetchone()


def touch_token(conn: Connection, token_id: int) -> None:
    with _batch_errors(), _driver(conn).cursor() as cur:
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
