"""The store: one SQLAlchemy engine and the transactions the engine package works in.

Everything the engine needs from the database goes through :class:`Store` (accounts, log-in
failures, schema, connections) and :class:`~bulkops.store.transaction.Tx` (one transaction
scoped to one organization). What differs between SQLite and PostgreSQL is the
:class:`Dialect` chosen here, once. Driver exceptions become
:class:`bulkops.errors.StoreError` at this boundary (``errors.translate``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError

from bulkops.store.accounts import AccountStore
from bulkops.store.dialects import Dialect, dialect_for
from bulkops.store.errors import translate
from bulkops.store.logins import LoginFailureStore
from bulkops.store.transaction import Tx
from bulkops.store.waiters import EventWaiter

if TYPE_CHECKING:
    from bulkops.store.pipelined import CreatedRows

__all__ = ["Store"]


class Store:
    """The database of one deployment. Built by an entry point from ``Settings``."""

    @staticmethod
    def missing_sqlite_file(url: str) -> Path | None:
        """The SQLite file ``url`` names, when it does not exist yet (None otherwise)."""
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        path = Path(parsed.database)
        return None if path.exists() else path

    def __init__(self, url: str, *, echo: bool = False, owner_url: str | None = None) -> None:
        self.url = url
        # PostgreSQL: migrations run as the owner of the tables; the application role owns
        # nothing and is subject to row-level security.
        self.owner_url = owner_url
        self.dialect: Dialect = dialect_for(url)
        self._pinned = threading.local()  # see pinned()
        self.engine: Engine = self.dialect.create_engine(url, echo=echo)
        self.accounts = AccountStore(self.system, self.dialect)
        self.logins = LoginFailureStore(self.system)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------------

    def migrate(self, owner_url: str | None = None) -> tuple[str | None, str | None]:
        """Upgrade the schema; on PostgreSQL as ``owner_url`` (default: the owner given, or url).
        Returns the revisions before (None: no schema yet) and after."""
        return self.dialect.migrate(self.engine, owner_url or self.owner_url or self.url)

    @staticmethod
    def setup_roles(admin_url: str, app_url: str, owner_url: str | None) -> list[str]:
        """PostgreSQL: create the application and owner roles and the database (a superuser)."""
        from bulkops.store import postgres

        return postgres.setup_roles(admin_url, app_url, owner_url)

    @contextmanager
    def listen_events(self) -> Iterator[EventWaiter]:
        """Wake-ups for progress events written by any process (the events table is the truth).

        PostgreSQL: LISTEN/NOTIFY on a dedicated connection. SQLite: a short sleep, then the
        caller reads the table again.
        """
        with self.dialect.event_waiter(self.url) as waiter:
            yield waiter

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(
        self, org_id: int, *, write: bool = False, bulk: bool = False
    ) -> Iterator[Tx]:
        """One transaction for one organization. ``write`` takes SQLite's write lock at once.

        ``bulk`` (a chunk of a bulk operation, never its last transaction): on PostgreSQL the
        commit does not wait for the WAL flush. A server crash can then lose only the last
        chunks, whole, with their ledger rows, so a resume applies them again; the
        operation's final, ordinary commit makes every chunk before it durable (the WAL is
        flushed in order) before anyone is told that the operation ended. Inside
        :meth:`pinned` (same thread), it runs on the pinned connection.
        """
        with translate():
            pinned: Connection | None = getattr(self._pinned, "conn", None)
            if (
                pinned is not None
                and not pinned.in_transaction()
                and not getattr(self._pinned, "busy", False)  # see created_rows()
            ):
                pinned.execution_options(bulkops_immediate=write)
                with pinned.begin():
                    yield Tx(pinned, self.dialect, org_id, bulk=bulk)
                return
            conn = self.engine.connect()
            try:
                if write:
                    conn = conn.execution_options(bulkops_immediate=True)
                with conn.begin():
                    yield Tx(conn, self.dialect, org_id, bulk=bulk)
            finally:
                conn.close()

    @contextmanager
    def pinned(self) -> Iterator[None]:
        """Run this thread's transactions on one connection until the block ends.

        A long run of short transactions (one per chunk) then skips the pool's check-out,
        reset and (PostgreSQL) liveness ping around each of them. A connection lost meanwhile
        is replaced on its next use.
        """
        if getattr(self._pinned, "conn", None) is not None:
            yield  # already pinned by an outer block
            return
        with translate():
            conn = self.engine.connect()
        self._pinned.conn = conn
        try:
            yield
        finally:
            self._pinned.conn = None
            conn.close()

    @contextmanager
    def created_rows(
        self, org_id: int, entity: str, fields: Sequence[str], reserve: int
    ) -> Iterator[CreatedRows | None]:
        """Chunks of new ``entity`` rows written one round trip each, on this thread's pinned
        connection (:mod:`bulkops.store.pipelined`); None where chunks go through
        :meth:`transaction` (SQLite, a driver without pipeline mode, or no connection
        pinned). ``reserve``: the most rows a chunk holds."""
        conn: Connection | None = getattr(self._pinned, "conn", None)
        if not self.dialect.pipelines or conn is None:
            yield None
            return
        from bulkops.store.pipelined import CreatedRows, supported

        if not supported():  # a libpq older than 14
            yield None
            return

        # Meanwhile this thread's other transactions (a progress callback's, say) take a
        # connection of their own: the pinned one is in pipeline mode.
        self._pinned.busy = True
        try:
            with translate(), CreatedRows(conn, org_id, entity, fields, reserve) as writer:
                yield writer
        finally:
            self._pinned.busy = False

    @contextmanager
    def system(self, org_id: int | None = None) -> Iterator[Connection]:
        """A transaction for cross-organization work; with ``org_id``, scoped to it (RLS)."""
        with translate(), self.engine.begin() as conn:
            if org_id is not None:
                self.dialect.scope(conn, org_id)
            yield conn
