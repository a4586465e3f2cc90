"""What the entry points (CLI, workers, ASGI app) need of the database, beside operations.

Opening and closing the store for some settings, the schema, the organizations, finding a
user before the organization is known, and the look-ups that tell an executor which
operations are waiting to run. The entry points call these rather than the store, so the
store's interface can change without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bulkops.config import Settings
from bulkops.engine.operations import Context
from bulkops.model import Operation
from bulkops.store import Store

__all__ = [
    "RunnableOperations",
    "close_context",
    "database_reachable",
    "find_user_by_email",
    "list_organizations",
    "migrate_schema",
    "missing_database",
    "open_context",
    "pending_worker_operations",
    "release_lease",
    "runnable_operations",
    "setup_database_roles",
    "uses_postgresql",
]

# As many operations as one look-up considers; the rest are found by the next one.
_LOOKUP_LIMIT = 200


def missing_database(settings: Settings) -> Path | None:
    """The SQLite file the settings name, when it does not exist (so a command that is not
    ``init`` can say so instead of creating an empty database there)."""
    return Store.missing_sqlite_file(settings.database_url)


def open_context(settings: Settings) -> Context:
    """A context on a new connection pool for ``settings`` (close it with close_context)."""
    return Context(Store(settings.database_url), settings)


def close_context(ctx: Context) -> None:
    """Close the context's connection pool (its connections are not reused afterwards)."""
    ctx.store.dispose()


def migrate_schema(ctx: Context) -> str:
    """Create or upgrade the schema; on PostgreSQL as the owner role of the settings.

    Returns what it did, for the person running it: created, upgraded from one revision to
    another, or already up to date."""
    before, after = ctx.store.migrate(owner_url=ctx.settings.database_owner_url)
    if before is None:
        return f"Created the schema, revision {after}"
    if before != after:
        return f"Upgraded the schema from revision {before} to {after}"
    return f"Schema is up to date, revision {after}"


def setup_database_roles(admin_url: str, settings: Settings) -> list[str]:
    """PostgreSQL, as a superuser: create the owner and application roles and the database.

    Returns one line per step taken, for the person running the set-up.
    """
    return Store.setup_roles(admin_url, settings.database_url, settings.database_owner_url)


def uses_postgresql(ctx: Context) -> bool:
    return ctx.store.dialect.name == "postgresql"


def database_reachable(ctx: Context) -> bool:
    return ctx.store.ping()


def list_organizations(ctx: Context) -> list[dict[str, Any]]:
    """Every organization, oldest first."""
    return ctx.store.accounts.list_organizations()


def find_user_by_email(ctx: Context, email: str) -> dict[str, Any] | None:
    """The user with this (normalised: stripped, lower-case) email, in any organization."""
    return ctx.store.accounts.find_user(email=email.strip().lower())


@dataclass(frozen=True, slots=True)
class RunnableOperations:
    """What an executor may pick up in one organization, read in one transaction.

    ``pending``: operations created for a worker (``executor = worker``), oldest first;
    the CLI runs the operations it creates itself. ``orphaned``: operations processing or
    rolling back whose lease expired (their process died, or the API queued a rollback).
    """

    pending: list[Operation]
    orphaned: list[Operation]


def runnable_operations(ctx: Context, org_id: int) -> RunnableOperations:
    with ctx.store.transaction(org_id) as tx:
        newest_first = tx.operations.list(status=["pending"], limit=_LOOKUP_LIMIT)
        orphaned = [tx.operations.get(op_id) for op_id in tx.operations.orphaned()]
    return RunnableOperations(
        pending=_for_workers_oldest_first(newest_first),
        orphaned=[op for op in orphaned if op is not None],
    )


def pending_worker_operations(ctx: Context, org_id: int) -> list[Operation]:
    """The organization's operations waiting for a worker, oldest first."""
    with ctx.store.transaction(org_id) as tx:
        newest_first = tx.operations.list(status=["pending"], limit=_LOOKUP_LIMIT)
    return _for_workers_oldest_first(newest_first)


def _for_workers_oldest_first(newest_first: list[Operation]) -> list[Operation]:
    return [op for op in reversed(newest_first) if op.executor == "worker"]


def release_lease(ctx: Context, org_id: int, op_id: str, owner: str) -> None:
    """End ``owner``'s lease on the operation at once, so that another process may take it.

    Nothing happens if someone else holds the lease by now.
    """
    with ctx.store.transaction(org_id, write=True) as tx:
        current = tx.operations.get(op_id)
        if current is not None and current.lease_owner == owner:
            tx.operations.renew_lease(op_id, owner, -1.0)
