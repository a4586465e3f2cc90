"""The reads (and the few account writes) that the API and the dashboard make, one call each.

The HTTP API and the dashboard reach the store only through these functions and the rest of
the engine, so the organization scoping, the transactions and the store's shape stay in the
engine's hands. Lists page by key (never by offset): :func:`keyset_page` is the one place
that fetches one row more than asked to know whether another page follows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from bulkops.engine.accounts import TOKEN_PREFIX, Principal, hash_token
from bulkops.engine.operations import Context
from bulkops.entities import spec_for
from bulkops.errors import NotFound, UsageError
from bulkops.model import Operation, Outcome, Role
from bulkops.store import EventWaiter, OperationTotals

__all__ = [
    "MIN_ID_PREFIX",
    "OperationTotals",
    "Page",
    "audit_records",
    "entity_rows",
    "error_rows",
    "events_after",
    "keyset_page",
    "list_operations",
    "listen_for_events",
    "live_token",
    "mark_token_used",
    "operation_by_idempotency_key",
    "operation_id_from_prefix",
    "operation_totals",
    "operation_with_latest_event",
    "organization_token",
    "organization_tokens",
    "organization_user",
    "organization_users",
    "revoke_token",
]

Row = TypeVar("Row")
Position = TypeVar("Position")


# -- paging -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Page(Generic[Row, Position]):
    """One page of a list and, when more rows follow, the position of its last row."""

    items: list[Row]
    next_position: Position | None


def keyset_page(
    fetch: Callable[[int], Sequence[Row]], limit: int, position: Callable[[Row], Position]
) -> Page[Row, Position]:
    """Up to ``limit`` rows of ``fetch(limit + 1)``; the extra row only says "there is more"."""
    rows = list(fetch(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, position(rows[-1]) if more and rows else None)


# -- operations and their reports -----------------------------------------------------------------


def operation_by_idempotency_key(ctx: Context, org_id: int, key: str) -> Operation | None:
    with ctx.store.transaction(org_id) as tx:
        return tx.operations.find_by_idempotency_key(key)


def list_operations(
    ctx: Context,
    org_id: int,
    *,
    limit: int,
    status: Sequence[str] = (),
    operation_type: Sequence[str] = (),
    entity_type: Sequence[str] = (),
    created_by: int | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    query: str | None = None,
    outcome: Sequence[Outcome] = (),
    before: tuple[datetime, str] | None = None,
) -> list[Operation]:
    """Newest first; ``before`` is the (created_at, id) of the last row of the previous page."""
    with ctx.store.transaction(org_id) as tx:
        return tx.operations.list(
            status=status,
            operation_type=operation_type,
            entity_type=entity_type,
            created_by=created_by,
            created_after=created_after,
            created_before=created_before,
            query=query,
            outcome=outcome,
            limit=limit,
            before=before,
        )


def operation_totals(ctx: Context, org_id: int, since: datetime) -> OperationTotals:
    """Operations started since ``since`` (the start of someone's day), the records they
    changed and the records that failed, summed in SQL (no operation row is loaded)."""
    with ctx.store.transaction(org_id) as tx:
        return tx.operations.totals(since)


def error_rows(
    ctx: Context, org_id: int, op_id: str, *, limit: int, after_row: int = 0
) -> list[dict[str, Any]]:
    """The rejected rows of an operation after row ``after_row``, in row order."""
    with ctx.store.transaction(org_id) as tx:
        return tx.audit.iter_errors(op_id, after_row=after_row, limit=limit)


def audit_records(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    limit: int,
    after_id: int | None = None,
    before_id: int | None = None,
    status: str | None = None,
    key_contains: str | None = None,
) -> list[dict[str, Any]]:
    """Audit records (before and after images) in the order they were written, each with
    ``key``: the record's natural key (the SKU, the (sku, warehouse_code) pair…), by name.

    ``after_id`` pages forward; ``before_id`` gives the ``limit`` records just before that
    one (still in the order written). ``key_contains`` keeps only records one of whose key
    values contains that text, in any letter case.
    """
    with ctx.store.transaction(org_id) as tx:
        op = tx.operations.require(op_id)
        key = spec_for(op.entity_type).key
        records = tx.audit.page(
            op_id,
            newest_first=before_id is not None,
            after_id=after_id,
            before_id=before_id,
            limit=limit,
            status=status,
            key_fields=key,
            key_contains=key_contains or None,
        )
    if before_id is not None:
        records.reverse()
    for record in records:
        image = orjson.loads(record["after_data"] or record["before_data"] or "{}")
        record["key"] = {name: image.get(name) for name in key}
    return records


def entity_rows(
    ctx: Context,
    org_id: int,
    entity: str,
    fields: Sequence[str],
    *,
    limit: int,
    after_id: int = 0,
    where: Mapping[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """Rows of an entity ordered by id: (id, *fields)."""
    with ctx.store.transaction(org_id) as tx:
        return tx.rows.iter(entity, fields, after_id=after_id, limit=limit, where=where)


# -- progress events ----------------------------------------------------------------------------


def events_after(
    ctx: Context, org_id: int, op_id: str, after_id: int, limit: int
) -> list[dict[str, Any]]:
    with ctx.store.transaction(org_id) as tx:
        return tx.events.after(op_id, after_id, limit)


def operation_with_latest_event(
    ctx: Context, org_id: int, op_id: str
) -> tuple[Operation | None, dict[str, Any] | None]:
    """The operation and its newest event, read in one transaction (so they agree)."""
    with ctx.store.transaction(org_id) as tx:
        return tx.operations.get(op_id), tx.events.latest(op_id)


def listen_for_events(ctx: Context) -> AbstractContextManager[EventWaiter]:
    """Wake-ups when any process writes a progress event (PostgreSQL: LISTEN/NOTIFY)."""
    return ctx.store.listen_events()


# -- users and API tokens -----------------------------------------------------------------------


def organization_users(ctx: Context, org_id: int) -> list[dict[str, Any]]:
    return ctx.store.accounts.list_users(org_id)


def organization_user(ctx: Context, org_id: int, user_id: int) -> dict[str, Any] | None:
    """The user, or None when there is none of that id in the organization."""
    user = ctx.store.accounts.find_user(user_id=user_id)
    if user is None or user["organization_id"] != org_id:
        return None
    return user


def organization_tokens(ctx: Context, org_id: int) -> list[dict[str, Any]]:
    """Every token of the organization (revoked ones too), oldest first, with its hash."""
    return ctx.store.accounts.list_tokens(org_id)


def organization_token(
    ctx: Context, org_id: int, *, token_id: int | None = None, token: str | None = None
) -> dict[str, Any] | None:
    """The organization's token of this id, or the one whose secret is ``token``."""
    digest = hash_token(token) if token is not None else None
    return next(
        (
            t
            for t in ctx.store.accounts.list_tokens(org_id)
            if (token_id is None or t["id"] == token_id)
            and (digest is None or t["token_hash"] == digest)
        ),
        None,
    )


def revoke_token(ctx: Context, org_id: int, token_id: int) -> bool:
    """Revoke the organization's token; False when it has none of that id."""
    if organization_token(ctx, org_id, token_id=token_id) is None:
        return False
    return ctx.store.accounts.revoke_token(org_id, token_id)


def live_token(ctx: Context, token: str) -> tuple[Principal, int] | None:
    """Who a live (not revoked, user not disabled) API token belongs to, and the token's id.

    Read-only: marking the token used is :func:`mark_token_used`, which callers may do less
    often than they authenticate.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    found = ctx.store.accounts.lookup_token(hash_token(token))
    if found is None:
        return None
    principal = Principal(
        found["organization_id"], found["user_id"], found["email"], Role(found["role"])
    )
    return principal, int(found["id"])


def mark_token_used(ctx: Context, token_id: int) -> None:
    ctx.store.accounts.touch_token(token_id)


MIN_ID_PREFIX = 6
"""The shortest operation id prefix accepted (``bulkops show 8c10a2``)."""


def operation_id_from_prefix(ctx: Context, org_id: int, text: str) -> str:
    """The full id of the organization's one operation whose id starts with ``text``.

    A whole id is returned as it is. A prefix shorter than :data:`MIN_ID_PREFIX`, or one that
    several operations share (they are listed), is a UsageError; none is NotFound.
    """
    text = text.strip().lower()
    if len(text) >= 36:
        return text
    if len(text) < MIN_ID_PREFIX:
        raise UsageError(
            f"'{text}' is too short to name an operation: give at least {MIN_ID_PREFIX} "
            "characters of its id (bulkops history lists them)."
        )
    with ctx.store.transaction(org_id) as tx:
        found = tx.operations.starting_with(text, limit=6)
    if not found:
        raise NotFound(f"No operation whose id starts with {text}.")
    if len(found) > 1:
        listed = "; ".join(
            f"{op.id} ({op.operation_type.value} {op.entity_type.value}, "
            f"{op.created_at:%Y-%m-%d %H:%M})"
            for op in found[:5]
        )
        more = " …" if len(found) > 5 else ""
        raise UsageError(
            f"'{text}' names several operations: {listed}{more}. Give more characters."
        )
    return found[0].id
