"""The store: one SQLAlchemy engine, tenant-scoped transactions, and the per-chunk fast paths.

Everything the engine needs from the database goes through :class:`Store` (accounts and the
system-wide look-ups) and :class:`Tx` (one transaction scoped to one organization). Driver
exceptions are translated into :class:`bulkops.errors.StoreError` at this boundary.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy import (
    Engine,
    Numeric,
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from bulkops.errors import Conflict, StoreError
from bulkops.store.tables import (
    ENTITY_TABLES,
    api_tokens,
    natural_key,
    operation_changes,
    operation_chunk_plans,
    operation_chunks,
    operation_errors,
    operation_events,
    operations,
    organizations,
    users,
)

# ``postgres`` (psycopg) and ``schema`` (Alembic) are imported where they are used: together
# they took over half a second of every command's start-up, and SQLite needs neither.

__all__ = [
    "CHANGE_ID_STRIDE",
    "ActiveOperation",
    "AuditRecord",
    "ChangeBatch",
    "DuplicateRow",
    "EventWaiter",
    "Store",
    "Tx",
    "utcnow",
]

ACTIVE_STATUSES = ("processing", "rolling_back")
_COUNTERS = (
    "processed_records",
    "successful_records",
    "failed_records",
    "unchanged_records",
    "created_records",
    "updated_records",
    "deleted_records",
    "rolled_back_records",
    "conflict_records",
)


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
        """One record as a per-record audit item (the keys of ``Tx.audit_page``)."""
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class DuplicateRow(StoreError):
    """A batched write hit a unique or foreign key constraint (the engine retries per record)."""


class EventWaiter(Protocol):
    def wait(self, op_id: str | None, timeout: float) -> bool:
        """Block until an event of ``op_id`` (None: any) may have been written, or the timeout.

        True means "read the events table again"; False means the timeout passed quietly.
        """
        ...


class _SleepWaiter:
    """SQLite has no notifications: wake up often and let the caller read the table."""

    def wait(self, op_id: str | None, timeout: float) -> bool:
        time.sleep(min(timeout, 0.25))
        return True


@dataclass(frozen=True, slots=True)
class ActiveOperation:
    id: str
    status: str


class Store:
    """The database of one deployment. Built by an entry point from ``Settings``."""

    def __init__(self, url: str, *, echo: bool = False, owner_url: str | None = None) -> None:
        self.url = url
        # PostgreSQL: migrations run as the owner of the tables; the application role owns
        # nothing and is subject to row-level security.
        self.owner_url = owner_url
        self.dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
        self._pinned = threading.local()  # see pinned()
        if self.dialect == "sqlite":
            # A pooled connection per thread: opening one costs PRAGMAs, closing the last one
            # checkpoints the WAL.
            self.engine: Engine = create_engine(
                url,
                echo=echo,
                pool_size=4,
                max_overflow=16,
                connect_args={"timeout": 60, "check_same_thread": False},
            )
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        else:
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True)
            event.listen(self.engine, "connect", _postgres_on_connect)

    def dispose(self) -> None:
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------------

    def migrate(self, owner_url: str | None = None) -> None:
        """Upgrade the schema; on PostgreSQL as ``owner_url`` (default: the owner given, or url)."""
        from bulkops.store import schema
        if self.dialect == "sqlite":
            with _translate(), self.engine.begin() as conn:
                schema.upgrade(conn)
            return
        # As the owner, on a connection of its own: the application's connections drop to the
        # application role, which may not create tables.
        owner = create_engine(owner_url or self.owner_url or self.url, poolclass=NullPool)
        try:
            with _translate(), owner.begin() as conn:
                schema.upgrade(conn)
        finally:
            owner.dispose()
        self.engine.dispose()  # connections opened before the roles existed

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
        from bulkops.store import postgres
        if self.dialect == "sqlite":
            yield _SleepWaiter()
            return
        listener = postgres.EventListener(self.url)
        try:
            yield listener
        finally:
            listener.close()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self, org_id: int, *, write: bool = False) -> Iterator[Tx]:
        """One transaction for one organization. ``write`` takes SQLite's write lock at once.

        Inside :meth:`pinned` (same thread), it runs on the pinned connection.
        """
        with _translate():
            pinned: Connection | None = getattr(self._pinned, "conn", None)
            if pinned is not None and not pinned.in_transaction():
                pinned.execution_options(bulkops_immediate=write)
                with pinned.begin():
                    yield Tx(pinned, self.dialect, org_id)
                return
            conn = self.engine.connect()
            try:
                if write:
                    conn = conn.execution_options(bulkops_immediate=True)
                with conn.begin():
                    yield Tx(conn, self.dialect, org_id)
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
        with _translate():
            conn = self.engine.connect()
        self._pinned.conn = conn
        try:
            yield
        finally:
            self._pinned.conn = None
            conn.close()

    @contextmanager
    def system(self, org_id: int | None = None) -> Iterator[Connection]:
        """A transaction for cross-organization work; with ``org_id``, scoped to it (RLS)."""
        with _translate(), self.engine.begin() as conn:
            if org_id is not None and self.dialect == "postgresql":
                conn.execute(
                    text("SELECT set_config('app.current_org', :org, true)"), {"org": str(org_id)}
                )
            yield conn

    # -- organizations, users, tokens -----------------------------------------------------------

    def create_organization(self, slug: str, name: str) -> int:
        with self.system() as conn:
            try:
                result = conn.execute(
                    insert(organizations).values(slug=slug, name=name, created_at=utcnow())
                )
            except IntegrityError as exc:
                raise Conflict(f"An organization with slug '{slug}' already exists.") from exc
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def list_organizations(self) -> list[dict[str, Any]]:
        with self.system() as conn:
            rows = conn.execute(select(organizations).order_by(organizations.c.id))
            return [dict(r._mapping) for r in rows]

    def find_organization(self, slug: str) -> dict[str, Any] | None:
        with self.system() as conn:
            row = conn.execute(select(organizations).where(organizations.c.slug == slug)).first()
            return dict(row._mapping) if row else None

    def create_user(self, org_id: int, email: str, password_hash: str | None, role: str) -> int:
        with self.system(org_id) as conn:
            try:
                result = conn.execute(
                    insert(users).values(
                        organization_id=org_id,
                        email=email,
                        password_hash=password_hash,
                        role=role,
                        created_at=utcnow(),
                    )
                )
            except IntegrityError as exc:
                raise Conflict(f"A user with email '{email}' already exists.") from exc
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def find_user(
        self, *, email: str | None = None, user_id: int | None = None
    ) -> dict[str, Any] | None:
        from bulkops.store import postgres
        if self.dialect == "postgresql":
            # Before the organization is known: a SECURITY DEFINER function (migration 0002).
            with self.system() as conn:
                return postgres.find_user(conn, email or None, None if email else user_id)
        query = select(users)
        query = query.where(users.c.email == email) if email else query.where(users.c.id == user_id)
        with self.system() as conn:
            row = conn.execute(query).first()
            return dict(row._mapping) if row else None

    def list_users(self, org_id: int) -> list[dict[str, Any]]:
        with self.system(org_id) as conn:
            rows = conn.execute(
                select(users).where(users.c.organization_id == org_id).order_by(users.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def create_token(self, org_id: int, user_id: int, name: str, token_hash: str) -> int:
        with self.system(org_id) as conn:
            result = conn.execute(
                insert(api_tokens).values(
                    organization_id=org_id,
                    user_id=user_id,
                    name=name,
                    token_hash=token_hash,
                    created_at=utcnow(),
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def revoke_token(self, org_id: int, token_id: int) -> bool:
        with self.system(org_id) as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.organization_id == org_id)
                .values(revoked_at=utcnow())
            )
            return bool(result.rowcount)

    # -- scheduling -----------------------------------------------------------------------------

    def try_start(
        self, org_id: int, op_id: str, owner: str, lease_seconds: float, *, status: str
    ) -> bool:
        """Move the operation to ``status`` if it is the next in line for its entity.

        One writer per (organization, entity): the operation starts only when no other of the
        same entity is active with a live lease, and no pending one was created before it.
        """
        now = time.time()
        with self.transaction(org_id, write=True) as tx:
            op = tx.get_operation(op_id)
            if op is None:
                return False
            if (
                op["status"] in ACTIVE_STATUSES
                and op["lease_owner"] != owner
                and (op["lease_expires_at"] or 0) > now
            ):
                return False
            # An export only reads: it waits for nobody, and nobody waits for it.
            others = [] if op["operation_type"] == "export" else tx.conn.execute(
                select(
                    operations.c.id,
                    operations.c.status,
                    operations.c.lease_expires_at,
                    operations.c.created_at,
                ).where(
                    operations.c.organization_id == org_id,
                    operations.c.entity_type == op["entity_type"],
                    operations.c.operation_type != "export",
                    operations.c.id != op_id,
                    operations.c.status.in_(("pending", *ACTIVE_STATUSES)),
                )
            ).all()
            for other in others:
                if other.status in ACTIVE_STATUSES and (other.lease_expires_at or 0) > now:
                    return False
                if other.status == "pending" and _aware(other.created_at) < op["created_at"]:
                    return False
            values: dict[str, Any] = {
                "status": status,
                "lease_owner": owner,
                "lease_expires_at": now + lease_seconds,
            }
            if status == "processing":
                values["attempts"] = operations.c.attempts + 1
                if op["started_at"] is None:
                    values["started_at"] = utcnow()
            tx.update_operation(op_id, values)
            return True

    # -- API tokens, listed (the HTTP API's token management) -------------------------------------

    def list_tokens(self, org_id: int) -> list[dict[str, Any]]:
        """Every token of the organization (revoked ones too), oldest first, with its hash."""
        with self.system(org_id) as conn:
            rows = conn.execute(
                select(api_tokens)
                .where(api_tokens.c.organization_id == org_id)
                .order_by(api_tokens.c.id)
            )
            return [{k: _aware(v) for k, v in r._mapping.items()} for r in rows]

    def lookup_token(self, token_hash: str) -> dict[str, Any] | None:
        """The live token with this hash, with its user's id, role and email (read-only).

        Marking it used is :meth:`touch_token`, in a transaction of its own: a read that turns
        into a write inside one SQLite transaction fails at once with "database is locked" when
        a writer committed meanwhile, which a busy server cannot afford.
        """
        from bulkops.store import postgres
        if self.dialect == "postgresql":
            with self.system() as conn:
                return postgres.lookup_token(conn, token_hash)
        with self.system() as conn:
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

    def touch_token(self, token_id: int) -> None:
        from bulkops.store import postgres
        if self.dialect == "postgresql":
            with self.system() as conn:
                postgres.touch_token(conn, token_id)
            return
        with self.system() as conn:
            conn.execute(
                update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=utcnow())
            )


class Tx:
    """One transaction scoped to one organization: every query filters by it."""

    def __init__(self, conn: Connection, dialect: str, org_id: int) -> None:
        self.conn = conn
        self.dialect = dialect
        self.org_id = org_id
        self._ph = "?" if dialect == "sqlite" else "%s"
        # Filtering by organization where rows are found by id: on SQLite the unary plus keeps
        # the (organization, key) index out, which would otherwise walk (and, for a page in id
        # order, sort) every row of the organization; the rowid serves instead.
        self._org_by_id = "+organization_id" if dialect == "sqlite" else "organization_id"
        if dialect == "postgresql":
            conn.execute(
                text("SELECT set_config('app.current_org', :org, true)"), {"org": str(org_id)}
            )

    # -- operations ----------------------------------------------------------------------------

    def insert_operation(self, values: Mapping[str, Any]) -> None:
        row = {c: 0 for c in _COUNTERS} | dict(values)
        row["organization_id"] = self.org_id
        self.conn.execute(insert(operations).values(**row))

    def get_operation(self, op_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            select(operations).where(
                operations.c.id == op_id, operations.c.organization_id == self.org_id
            )
        ).first()
        return {k: _aware(v) for k, v in row._mapping.items()} if row else None

    def find_operation_by_idempotency_key(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            select(operations.c.id).where(
                operations.c.idempotency_key == key, operations.c.organization_id == self.org_id
            )
        ).first()
        return self.get_operation(row.id) if row else None

    def update_operation(self, op_id: str, values: Mapping[str, Any]) -> None:
        self.conn.execute(
            update(operations)
            .where(operations.c.id == op_id, operations.c.organization_id == self.org_id)
            .values(**values)
        )

    def advance(
        self, op_id: str, owner: str | None, deltas: Mapping[str, int], **values: Any
    ) -> dict[str, Any] | None:
        """Add a chunk's counters (and set ``values``), if ``owner`` holds the lease (if given).

        Returns the operation as it is after the update, or None when ``owner`` no longer
        holds it (or it is gone). One statement: the row it returns is read under the
        update's lock, so a cancel committed before it shows, and none can slip in after.
        """
        held = [] if owner is None else [operations.c.lease_owner == owner]
        changes: dict[str, Any] = {
            name: getattr(operations.c, name) + delta for name, delta in deltas.items() if delta
        }
        row = self.conn.execute(
            update(operations)
            .where(
                operations.c.id == op_id,
                operations.c.organization_id == self.org_id,
                *held,
            )
            .values(**changes, **values)
            .returning(*operations.c)
        ).first()
        return {k: _aware(v) for k, v in row._mapping.items()} if row else None

    def list_operations(
        self,
        *,
        status: Sequence[str] = (),
        operation_type: Sequence[str] = (),
        entity_type: Sequence[str] = (),
        created_by: int | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        query: str | None = None,
        limit: int = 50,
        before: tuple[datetime, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``before`` is the (created_at, id) of the last row of the previous page."""
        c = operations.c
        conditions = [c.organization_id == self.org_id]
        if status:
            conditions.append(c.status.in_(status))
        if operation_type:
            conditions.append(c.operation_type.in_(operation_type))
        if entity_type:
            conditions.append(c.entity_type.in_(entity_type))
        if created_by is not None:
            conditions.append(c.created_by == created_by)
        if created_after is not None:
            conditions.append(c.created_at >= created_after)
        if created_before is not None:
            conditions.append(c.created_at < created_before)
        if query:
            pattern = (
                "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            conditions.append(c.file_name.ilike(pattern, escape="\\") | (c.id == query))
        if before is not None:
            at, op_id = before
            conditions.append((c.created_at < at) | and_(c.created_at == at, c.id < op_id))
        rows = self.conn.execute(
            select(operations)
            .where(*conditions)
            .order_by(c.created_at.desc(), c.id.desc())
            .limit(limit)
        )
        return [{k: _aware(v) for k, v in r._mapping.items()} for r in rows]

    def orphaned_operations(self) -> list[str]:
        """Ids of operations left processing or rolling back by a process whose lease expired."""
        rows = self.conn.execute(
            select(operations.c.id)
            .where(
                operations.c.organization_id == self.org_id,
                operations.c.status.in_(ACTIVE_STATUSES),
                (operations.c.lease_expires_at.is_(None))
                | (operations.c.lease_expires_at < time.time()),
            )
            .order_by(operations.c.created_at)
        )
        return [r.id for r in rows]

    def renew_lease(self, op_id: str, owner: str, lease_seconds: float) -> None:
        self.update_operation(
            op_id, {"lease_owner": owner, "lease_expires_at": time.time() + lease_seconds}
        )

    # -- ledger, events, errors ----------------------------------------------------------------

    def committed_chunks(self, op_id: str, phase: str) -> dict[int, int]:
        """chunk index -> records, for chunks of ``phase`` already committed."""
        rows = self.conn.execute(
            select(operation_chunks.c.chunk_index, operation_chunks.c.records).where(
                operation_chunks.c.operation_id == op_id,
                operation_chunks.c.phase == phase,
                operation_chunks.c.organization_id == self.org_id,
            )
        )
        return {int(r.chunk_index): int(r.records) for r in rows}

    def record_chunk(
        self,
        op_id: str,
        phase: str,
        index: int,
        first_row: int | None,
        last_row: int | None,
        records: int,
        *,
        worker: str | None = None,
    ) -> None:
        try:
            self.conn.execute(
                insert(operation_chunks).values(
                    operation_id=op_id,
                    phase=phase,
                    chunk_index=index,
                    organization_id=self.org_id,
                    first_row=first_row,
                    last_row=last_row,
                    records=records,
                    committed_at=utcnow(),
                    worker=worker,
                )
            )
        except IntegrityError as exc:
            # Another worker committed this chunk first: this whole transaction must not land.
            raise Conflict(f"Chunk {index} of operation {op_id} was already committed.") from exc

    def chunk_workers(self, op_id: str, phase: str) -> dict[int, str | None]:
        """chunk index -> the process that applied it, for committed chunks of ``phase``."""
        c = operation_chunks.c
        rows = self.conn.execute(
            select(c.chunk_index, c.worker).where(
                c.operation_id == op_id, c.phase == phase, c.organization_id == self.org_id
            )
        )
        return {int(r.chunk_index): r.worker for r in rows}

    # -- chunks planned for several workers ----------------------------------------------------

    def add_chunk_plan(
        self,
        op_id: str,
        index: int,
        first_row: int,
        last_row: int,
        records: int,
        byte_count: int,
        payload: str,
    ) -> None:
        self.conn.execute(
            insert(operation_chunk_plans).values(
                operation_id=op_id,
                chunk_index=index,
                organization_id=self.org_id,
                first_row=first_row,
                last_row=last_row,
                records=records,
                byte_count=byte_count,
                payload=payload,
                created_at=utcnow(),
            )
        )

    def chunk_plans(self, op_id: str) -> list[dict[str, Any]]:
        """The chunks planned and not applied yet (without their records), by index."""
        c = operation_chunk_plans.c
        rows = self.conn.execute(
            select(c.chunk_index, c.lease_owner, c.lease_expires_at)
            .where(c.operation_id == op_id, c.organization_id == self.org_id)
            .order_by(c.chunk_index)
        )
        return [dict(r._mapping) for r in rows]

    def claim_chunk_plan(
        self, op_id: str, index: int, owner: str, lease_seconds: float
    ) -> dict[str, Any] | None:
        """Take the lease of a planned chunk (free, expired or already ours); None if taken."""
        c = operation_chunk_plans.c
        now = time.time()
        claimed = self.conn.execute(
            update(operation_chunk_plans)
            .where(
                c.operation_id == op_id,
                c.chunk_index == index,
                c.organization_id == self.org_id,
                c.lease_owner.is_(None) | (c.lease_expires_at < now) | (c.lease_owner == owner),
            )
            .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
        ).rowcount
        if not claimed:
            return None
        row = self.conn.execute(
            select(operation_chunk_plans).where(
                c.operation_id == op_id, c.chunk_index == index, c.organization_id == self.org_id
            )
        ).first()
        return dict(row._mapping) if row else None

    def delete_chunk_plans(self, op_id: str, index: int | None = None) -> None:
        """Forget one planned chunk (it was applied), or all of them (the operation ended)."""
        c = operation_chunk_plans.c
        conditions = [c.operation_id == op_id, c.organization_id == self.org_id]
        if index is not None:
            conditions.append(c.chunk_index == index)
        self.conn.execute(operation_chunk_plans.delete().where(*conditions))

    def lease_owners(self) -> set[str]:
        """Who holds a lease in this organization: on running operations and planned chunks."""
        ops = self.conn.execute(
            select(operations.c.lease_owner).where(
                operations.c.organization_id == self.org_id,
                operations.c.status.in_(ACTIVE_STATUSES),
                operations.c.lease_owner.is_not(None),
                operations.c.lease_expires_at > time.time(),
            )
        )
        plans = self.conn.execute(
            select(operation_chunk_plans.c.lease_owner).where(
                operation_chunk_plans.c.organization_id == self.org_id,
                operation_chunk_plans.c.lease_owner.is_not(None),
                operation_chunk_plans.c.lease_expires_at > time.time(),
            )
        )
        return {r[0] for r in ops} | {r[0] for r in plans}

    def expire_leases(self, owners: Sequence[str]) -> int:
        """End every lease these owners hold now (they are known to be dead)."""
        if not owners:
            return 0
        expired = self.conn.execute(
            update(operations)
            .where(
                operations.c.organization_id == self.org_id,
                operations.c.lease_owner.in_(owners),
                operations.c.status.in_(ACTIVE_STATUSES),
            )
            .values(lease_expires_at=0.0)
        ).rowcount
        expired += self.conn.execute(
            update(operation_chunk_plans)
            .where(
                operation_chunk_plans.c.organization_id == self.org_id,
                operation_chunk_plans.c.lease_owner.in_(owners),
            )
            .values(lease_expires_at=0.0)
        ).rowcount
        return int(expired)

    def add_event(self, op_id: str, name: str, data: Mapping[str, Any]) -> int:
        result = self.conn.execute(
            insert(operation_events).values(
                organization_id=self.org_id,
                operation_id=op_id,
                event=name,
                data=orjson.dumps(data, default=str).decode(),
                created_at=utcnow(),
            )
        )
        event_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        if self.dialect == "postgresql":
            self.conn.execute(text("SELECT pg_notify('bulkops_events', :op)"), {"op": op_id})
        return event_id

    def events_after(self, op_id: str, after_id: int, limit: int = 500) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            select(operation_events.c.id, operation_events.c.event, operation_events.c.data)
            .where(
                operation_events.c.operation_id == op_id,
                operation_events.c.organization_id == self.org_id,
                operation_events.c.id > after_id,
            )
            .order_by(operation_events.c.id)
            .limit(limit)
        )
        return [{"id": r.id, "event": r.event, "data": orjson.loads(r.data)} for r in rows]

    def insert_errors(self, op_id: str, rows: Sequence[tuple[int, int, str, str]]) -> None:
        """rows: (row, line, errors JSON, raw values JSON)."""
        if not rows:
            return
        ph = self._ph
        self.conn.exec_driver_sql(
            "INSERT INTO operation_errors (organization_id, operation_id, row, line, errors, raw) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph})",
            [(self.org_id, op_id, *r) for r in rows],
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

    # -- audit: one batch of changes per applied chunk (see tables.operation_changes) ---------

    def insert_changes(
        self, op_id: str, fields: Sequence[str], records: Sequence[AuditRecord]
    ) -> None:
        """One chunk's audit as ONE row: (record_index, entity_id, action, before, after).

        ``before`` and ``after`` are the row's values in ``fields`` order (None for the side a
        create or delete lacks), already JSON-native. The whole batch is one ``orjson.dumps``.
        """
        ph = self._ph
        statement = (
            "INSERT INTO operation_changes (organization_id, operation_id, first_record_index, "
            f"record_count, data, status) VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, 'applied')"
        )
        # A batch never holds more records than a synthetic id has room for (chunks are far
        # smaller); split rather than overflow.
        for start in range(0, len(records), CHANGE_ID_STRIDE):
            part = records[start : start + CHANGE_ID_STRIDE]
            rows, ids, actions, before, after = zip(*part, strict=True)
            data = orjson.dumps(
                {
                    "fields": fields,
                    "rows": rows,
                    "ids": ids,
                    "actions": "".join([a[0] for a in actions]),
                    "before": before,
                    "after": after,
                }
            )
            self.conn.exec_driver_sql(
                statement, (self.org_id, op_id, min(rows), len(part), data.decode())
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
    ) -> list[ChangeBatch]:
        """Batches by id (``before_id``/``after_id``: batch ids, exclusive), of ``statuses``."""
        c = operation_changes.c
        conditions = [c.operation_id == op_id, c.organization_id == self.org_id]
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
        ph = self._ph
        self.conn.exec_driver_sql(
            f"UPDATE operation_changes SET status = {ph}, outcomes = {ph} WHERE id = {ph} "
            f"AND organization_id = {ph}",
            (status, stored, batch_id, self.org_id),
        )
        return status

    def audit_page(
        self,
        op_id: str,
        *,
        newest_first: bool,
        before_id: int | None = None,
        after_id: int | None = None,
        limit: int = 1000,
        status: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per-record audit items, expanded from the batches, in the order they were written.

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
        fetch = 1  # batches can be large: one first, more while more records are wanted
        while True:
            batches = self.change_batches(
                op_id,
                newest_first=newest_first,
                statuses=statuses,
                before_id=upper,
                after_id=lower,
                limit=fetch,
            )
            for batch in batches:
                base = batch.id * CHANGE_ID_STRIDE
                for position in batch.positions(reverse=newest_first):
                    if before_id is not None and base + position >= before_id:
                        continue
                    if after_id is not None and base + position <= after_id:
                        continue
                    if status is not None and batch.outcome(position)[0] != status:
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

    # -- entity rows: the per-chunk fast paths ---------------------------------------------------

    def fetch_existing(
        self,
        entity: str,
        key: Sequence[str],
        fields: Sequence[str],
        keys: Sequence[tuple[Any, ...]],
    ) -> dict[tuple[Any, ...], tuple[int, tuple[Any, ...]]]:
        """Current rows for these natural keys: key -> (id, field values in ``fields`` order)."""
        from bulkops.store import postgres
        if not keys:
            return {}
        columns = ", ".join(fields)
        found: Sequence[Sequence[Any]]
        if self.dialect == "postgresql":
            found = postgres.rows_by_keys(
                self.conn, self.org_id, entity, key, ("id", *fields), keys
            )
        else:
            where, params = self._key_filter(key, keys)
            sql = f"SELECT id, {columns} FROM {entity} WHERE organization_id = ? AND {where}"
            found = self._select(sql, (self.org_id, *params))
        positions = [fields.index(k) for k in key]
        result: dict[tuple[Any, ...], tuple[int, tuple[Any, ...]]] = {}
        for row in self._engine_rows(entity, fields, found):
            values = row[1:]
            result[tuple([values[p] for p in positions])] = (row[0], values)
        return result

    def has_rows(self, entity: str) -> bool:
        """Whether the organization has any row of ``entity``."""
        found = self.conn.exec_driver_sql(
            f"SELECT 1 FROM {ENTITY_TABLES[entity].name} WHERE organization_id = {self._ph} "
            "LIMIT 1",
            (self.org_id,),
        ).first()
        return found is not None

    def existing_keys(
        self, entity: str, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> set[tuple[Any, ...]]:
        from bulkops.store import postgres
        if not keys:
            return set()
        if self.dialect == "postgresql":
            rows = postgres.rows_by_keys(self.conn, self.org_id, entity, key, key, keys)
            return {tuple(r) for r in rows}
        where, params = self._key_filter(key, keys)
        columns = ", ".join(key)
        sql = f"SELECT {columns} FROM {entity} WHERE organization_id = {self._ph} AND {where}"
        return {tuple(r) for r in self._select(sql, (self.org_id, *params))}

    def count_referencing(self, entity: str, column: str, values: Sequence[Any]) -> dict[Any, int]:
        if not values:
            return {}
        where, params = self._key_filter((column,), [(v,) for v in values])
        sql = (
            f"SELECT {column}, count(*) FROM {entity} WHERE organization_id = {self._ph} "
            f"AND {where} GROUP BY {column}"
        )
        return {r[0]: int(r[1]) for r in self._select(sql, (self.org_id, *params))}

    def insert_rows(
        self,
        entity: str,
        fields: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        ids: Sequence[int] | None = None,
    ) -> list[int]:
        """Insert rows (values in ``fields`` order); returns their ids, in order.

        With ``ids`` the rows get exactly those ids (a rollback re-creating deleted rows).
        """
        from bulkops.store import postgres
        if not rows:
            return []
        if self.dialect == "postgresql" and len(rows) >= postgres.STAGE_MIN_ROWS:
            with _staged():
                return postgres.insert_staged(self.conn, self.org_id, entity, fields, rows, ids)
        if ids is None:
            ids = self._allocate_ids(entity, len(rows))
        ph = self._ph
        columns = ", ".join(fields)
        marks = ", ".join([ph] * (len(fields) + 2))
        sql = f"INSERT INTO {entity} (id, organization_id, {columns}) VALUES ({marks})"
        org = self.org_id
        self._write(sql, [(i, org, *r) for i, r in zip(ids, rows, strict=True)])
        return list(ids)

    def update_rows(
        self, entity: str, fields: Sequence[str], rows: Sequence[tuple[int, tuple[Any, ...]]]
    ) -> None:
        """Set the rows' values by id; ``fields`` include the natural key, which stays as it is.

        Records are matched by their natural key, so it never changes here. Leaving it out of
        ``SET`` spares the unique index: SQLite rewrites the index entry of a column that is
        set (this halved an update's writes), and PostgreSQL can update the row in place.
        """
        from bulkops.store import postgres
        key = natural_key(entity)
        kept = [i for i, f in enumerate(fields) if f not in key]
        if not rows or not kept:
            return
        if len(kept) < len(fields):
            fields = [fields[i] for i in kept]
            rows = [(row_id, tuple([values[i] for i in kept])) for row_id, values in rows]
        if self.dialect == "postgresql" and len(rows) >= postgres.STAGE_MIN_ROWS:
            with _staged():
                postgres.update_staged(self.conn, self.org_id, entity, fields, rows)
            return
        ph = self._ph
        assignments = ", ".join(f"{f} = {ph}" for f in fields)
        sql = f"UPDATE {entity} SET {assignments} WHERE id = {ph} AND organization_id = {ph}"
        org = self.org_id
        self._write(sql, [(*values, i, org) for i, values in rows])

    def delete_rows(self, entity: str, ids: Sequence[int]) -> None:
        from bulkops.store import postgres
        if not ids:
            return
        if self.dialect == "postgresql":
            with _staged():
                postgres.delete_by_ids(self.conn, self.org_id, entity, ids)
            return
        ph = self._ph
        sql = f"DELETE FROM {entity} WHERE id = {ph} AND organization_id = {ph}"
        org = self.org_id
        self._write(sql, [(i, org) for i in ids])

    def rows_by_id(
        self, entity: str, fields: Sequence[str], ids: Sequence[int]
    ) -> dict[int, tuple[Any, ...]]:
        from bulkops.store import postgres
        if not ids:
            return {}
        found: Sequence[Sequence[Any]]
        if self.dialect == "postgresql":
            found = postgres.rows_by_keys(
                self.conn, self.org_id, entity, ("id",), ("id", *fields), [(i,) for i in ids]
            )
        else:
            where, params = self._key_filter(("id",), [(i,) for i in ids])
            sql = (
                f"SELECT id, {', '.join(fields)} FROM {entity} "
                f"WHERE {self._org_by_id} = {self._ph} AND {where}"
            )
            found = self._select(sql, (self.org_id, *params))
        return {r[0]: r[1:] for r in self._engine_rows(entity, fields, found)}

    def iter_rows(
        self,
        entity: str,
        fields: Sequence[str],
        *,
        after_id: int = 0,
        limit: int = 5000,
        where: Mapping[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """A page of rows ordered by id: (id, *fields)."""
        ph = self._ph
        conditions = [f"{self._org_by_id} = {ph}", f"id > {ph}"]
        params: list[Any] = [self.org_id, after_id]
        for column, value in (where or {}).items():
            if column not in fields:
                raise ValueError(column)
            conditions.append(f"{column} = {ph}")
            params.append(value)
        sql = (
            f"SELECT id, {', '.join(fields)} FROM {entity} WHERE {' AND '.join(conditions)} "
            f"ORDER BY id LIMIT {int(limit)}"
        )
        return self._engine_rows(entity, fields, self._select(sql, tuple(params)))

    def count_rows(self, entity: str) -> int:
        table = ENTITY_TABLES[entity]
        return int(
            self.conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.organization_id == self.org_id)
            ).scalar_one()
        )

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        with _translate(), self.conn.begin_nested():
            yield

    # -- helpers ---------------------------------------------------------------------------------

    def _engine_rows(
        self, entity: str, fields: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[tuple[Any, ...]]:
        """(id, *fields) rows with values as the engine compares them.

        PostgreSQL returns NUMERIC columns as Decimal; the engine keeps prices as canonical
        text. Only those columns are converted (SQLite stores them as text already).
        """
        numeric = (
            [i + 1 for i, f in enumerate(fields) if _is_numeric(entity, f)]
            if self.dialect == "postgresql"
            else []
        )
        if not numeric:
            return [tuple(r) for r in rows]
        out = []
        for r in rows:
            row = list(r)
            for i in numeric:
                row[i] = _from_db(row[i])
            out.append(tuple(row))
        return out

    def _select(self, sql: str, params: tuple[Any, ...]) -> Sequence[Sequence[Any]]:
        """Bulk reads as plain tuples, straight from the driver's cursor.

        Never a prepared generic plan on PostgreSQL (see postgres.py); on SQLite the
        driver's rows skip SQLAlchemy's row objects, which cost as much as the query.
        """
        from bulkops.store import postgres
        if self.dialect == "postgresql":
            return postgres.select_unprepared(self.conn, sql, params)
        cursor = self.conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            rows: Sequence[Any] = cursor.fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"Database error: {exc}") from exc
        finally:
            cursor.close()
        return rows

    def _write(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        try:
            self.conn.exec_driver_sql(sql, params)
        except IntegrityError as exc:
            raise DuplicateRow(str(exc.orig)) from exc

    def _allocate_ids(self, entity: str, count: int) -> list[int]:
        if self.dialect == "sqlite":
            # The chunk holds SQLite's write lock, so nobody else allocates meanwhile; AUTOINCREMENT
            # keeps ids of deleted rows unused, so a rollback can bring them back.
            seq = self.conn.exec_driver_sql(
                "SELECT seq FROM sqlite_sequence WHERE name = ?", (entity,)
            ).scalar()
            top = self.conn.exec_driver_sql(f"SELECT max(id) FROM {entity}").scalar()
            start = max(int(seq or 0), int(top or 0)) + 1
            return list(range(start, start + count))
        rows = self.conn.exec_driver_sql(
            f"SELECT nextval(pg_get_serial_sequence('{entity}', 'id')) FROM generate_series(1, %s)",
            (count,),
        )
        return [int(r[0]) for r in rows]

    def _key_filter(
        self, key: Sequence[str], keys: Sequence[tuple[Any, ...]]
    ) -> tuple[str, tuple[Any, ...]]:
        """A WHERE fragment matching any of ``keys``, with one or a few parameters."""
        if self.dialect == "sqlite":
            if len(key) == 1:
                payload = orjson.dumps([k[0] for k in keys]).decode()
                return f"{key[0]} IN (SELECT value FROM json_each(?))", (payload,)
            picks = ", ".join(f"value ->> {i}" for i in range(len(key)))
            payload = orjson.dumps([list(k) for k in keys]).decode()
            return f"({', '.join(key)}) IN (SELECT {picks} FROM json_each(?))", (payload,)
        if len(key) == 1:
            # Typed, so that the index on the key serves it (an untyped array is not used).
            cast = "bigint[]" if isinstance(keys[0][0], int) else "text[]"
            return f"{key[0]} = ANY(%s::{cast})", ([k[0] for k in keys],)
        arrays = tuple([k[i] for k in keys] for i in range(len(key)))
        casts = ", ".join(
            "%s::bigint[]" if isinstance(keys[0][i], int) else "%s::text[]" for i in range(len(key))
        )
        return f"({', '.join(key)}) IN (SELECT * FROM unnest({casts}))", arrays

    # -- events, latest (the SSE stream's starting point) -----------------------------------------

    def latest_event(self, op_id: str) -> dict[str, Any] | None:
        """The operation's newest event (id, event, data), or None."""
        row = self.conn.execute(
            select(operation_events.c.id, operation_events.c.event, operation_events.c.data)
            .where(
                operation_events.c.operation_id == op_id,
                operation_events.c.organization_id == self.org_id,
            )
            .order_by(operation_events.c.id.desc())
            .limit(1)
        ).first()
        return {"id": row.id, "event": row.event, "data": orjson.loads(row.data)} if row else None


def _is_numeric(entity: str, field: str) -> bool:
    return isinstance(ENTITY_TABLES[entity].c[field].type, Numeric)


def _from_db(value: Any) -> Any:
    # PostgreSQL NUMERIC comes back as Decimal; the engine compares prices as canonical text.
    if value.__class__.__name__ == "Decimal":
        return f"{value:.2f}"
    return value


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    from bulkops.store import postgres
    postgres.prepare_session(dbapi_connection)


@contextmanager
def _staged() -> Iterator[None]:
    from bulkops.store import postgres
    try:
        yield
    except postgres.RowsRejected as exc:
        raise DuplicateRow(str(exc)) from exc


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


@contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except DuplicateRow:
        raise
    except OperationalError as exc:
        raise StoreError(f"The database is not available: {exc.orig}") from exc
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError):
            raise DuplicateRow(str(exc.orig)) from exc
        raise StoreError(f"Database error: {exc.orig}") from exc
