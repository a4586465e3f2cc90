"""Organizations, users and API tokens (``store.accounts``): each call its own transaction."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bulkops.errors import Conflict
from bulkops.store.clock import aware, utcnow
from bulkops.store.dialects import Dialect
from bulkops.store.tables import api_tokens, organizations, users

__all__ = ["AccountStore"]

SystemTransaction = Callable[..., AbstractContextManager[Connection]]
"""``Store.system``: a transaction across organizations, or scoped to the one given."""


class AccountStore:
    """The accounts of one deployment."""

    def __init__(self, system: SystemTransaction, dialect: Dialect) -> None:
        self._system = system
        self._dialect = dialect

    # -- organizations -------------------------------------------------------------------------

    def create_organization(self, slug: str, name: str) -> int:
        with self._system() as conn:
            try:
                result = conn.execute(
                    insert(organizations).values(slug=slug, name=name, created_at=utcnow())
                )
            except IntegrityError as exc:
                raise Conflict(f"An organization with slug '{slug}' already exists.") from exc
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def list_organizations(self) -> list[dict[str, Any]]:
        with self._system() as conn:
            rows = conn.execute(select(organizations).order_by(organizations.c.id))
            return [dict(r._mapping) for r in rows]

    def find_organization(self, slug: str) -> dict[str, Any] | None:
        with self._system() as conn:
            row = conn.execute(select(organizations).where(organizations.c.slug == slug)).first()
            return dict(row._mapping) if row else None

    # -- users ---------------------------------------------------------------------------------

    def create_user(self, org_id: int, email: str, password_hash: str | None, role: str) -> int:
        with self._system(org_id) as conn:
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
        """By email or id, in any organization (signing in: the organization is not known)."""
        with self._system() as conn:
            return self._dialect.find_user(conn, email, user_id)

    def set_password_hash(self, org_id: int, user_id: int, password_hash: str) -> bool:
        """Replace the user's password; False when the organization has no such user."""
        with self._system(org_id) as conn:
            changed = conn.execute(
                update(users)
                .where(users.c.organization_id == org_id, users.c.id == user_id)
                .values(password_hash=password_hash)
            ).rowcount
            return bool(changed)

    def list_users(self, org_id: int) -> list[dict[str, Any]]:
        with self._system(org_id) as conn:
            rows = conn.execute(
                select(users).where(users.c.organization_id == org_id).order_by(users.c.id)
            )
            return [dict(r._mapping) for r in rows]

    # -- API tokens ----------------------------------------------------------------------------

    def create_token(self, org_id: int, user_id: int, name: str, token_hash: str) -> int:
        with self._system(org_id) as conn:
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
        with self._system(org_id) as conn:
            result = conn.execute(
                update(api_tokens)
                .where(api_tokens.c.id == token_id, api_tokens.c.organization_id == org_id)
                .values(revoked_at=utcnow())
            )
            return bool(result.rowcount)

    def list_tokens(self, org_id: int) -> list[dict[str, Any]]:
        """Every token of the organization (revoked ones too), oldest first, with its hash."""
        with self._system(org_id) as conn:
            rows = conn.execute(
                select(api_tokens)
                .where(api_tokens.c.organization_id == org_id)
                .order_by(api_tokens.c.id)
            )
            return [{k: aware(v) for k, v in r._mapping.items()} for r in rows]

    def lookup_token(self, token_hash: str) -> dict[str, Any] | None:
        """The live token with this hash, with its user's id, role and email (read-only).

        Marking it used is :meth:`touch_token`, in a transaction of its own: a read that turns
        into a write inside one SQLite transaction fails at once with "database is locked" when
        a writer committed meanwhile, which a busy server cannot afford.
        """
        with self._system() as conn:
            return self._dialect.lookup_token(conn, token_hash)

    def touch_token(self, token_id: int) -> None:
        with self._system() as conn:
            self._dialect.touch_token(conn, token_id)
