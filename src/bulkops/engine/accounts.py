"""Organizations, users and API tokens: passwords hashed with Argon2id, tokens with SHA-256.

Password log-ins are rate-limited per account and per client address (:func:`log_in`): the
failures live in the database, so every server process counts the same ones.
"""

from __future__ import annotations

import getpass
import hashlib
import math
import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bulkops.errors import AuthenticationFailed, BulkopsError, NotFound, UsageError
from bulkops.model import Role
from bulkops.store import Store, utcnow

__all__ = [
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_FAILURE_WINDOW",
    "LoginThrottled",
    "Principal",
    "Starter",
    "authenticate_password",
    "authenticate_token",
    "cli_starter",
    "create_organization",
    "create_token",
    "create_user",
    "generate_password",
    "log_in",
    "resolve_organization",
]

_hasher = PasswordHasher()
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
TOKEN_PREFIX = "bo_"  # noqa: S105 (a public prefix, not a secret)
LOGIN_FAILURE_LIMIT = 10
"""Failed log-ins for one account, or from one client address, that refuse further log-ins
for as long as that many of them are younger than :data:`LOGIN_FAILURE_WINDOW`."""
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
_MAX_ADDRESS = 64  # the column's width; longer (odd) addresses are cut, still one key each


class LoginThrottled(BulkopsError):
    """Too many failed log-ins for this account or from this address: try again later."""

    http_status = 429
    exit_code = 2
    title = "Too many requests"

    def __init__(self, retry_after_seconds: int) -> None:
        self.retry_after_seconds = retry_after_seconds
        wait = _in_words(retry_after_seconds)
        super().__init__(f"Too many failed attempts. Try again in {wait}.")


def _in_words(seconds: int) -> str:
    """A wait as people say it, rounded up: "45 seconds", "1 minute", "14 minutes"."""
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is acting: a user of one organization with a role."""

    org_id: int
    user_id: int | None
    email: str
    role: Role

    def may_write(self) -> bool:
        return self.role in (Role.ADMIN, Role.EDITOR)

    def may_administer(self) -> bool:
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class Starter:
    """Who starts an operation: ``created_by`` (a user id, or None) and ``actor`` (words)."""

    user_id: int | None
    actor: str


def cli_starter(store: Store, org_id: int, as_email: str | None) -> Starter:
    """The command line's starter: the user ``--as`` names (a user of this organization who
    is not disabled), else ``cli:<os-user>@<host>`` with no user id."""
    if as_email is None:
        try:
            os_user = getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (a bare container)
            os_user = str(os.getuid())
        return Starter(None, f"cli:{os_user}@{socket.gethostname()}")
    user = store.accounts.find_user(email=as_email.strip().lower())
    if user is None or user["organization_id"] != org_id or user["disabled_at"] is not None:
        raise UsageError(
            f"--as {as_email}: no such user in this organization; `bulkops user list` shows "
            "them."
        )
    return Starter(user["id"], user["email"])


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_organization(store: Store, slug: str, name: str | None = None) -> int:
    if not _SLUG.match(slug):
        raise UsageError(
            f"'{slug}' is not a valid organization slug: use lower-case letters, digits and '-'."
        )
    return store.accounts.create_organization(slug, name or slug)


def resolve_organization(store: Store, slug: str | None) -> dict[str, Any]:
    """The organization named by ``slug``, or the only one when no slug is given."""
    if slug:
        org = store.accounts.find_organization(slug)
        if org is None:
            raise NotFound(f"No organization '{slug}'. Create it with: bulkops org create {slug}")
        return org
    orgs = store.accounts.list_organizations()
    if not orgs:
        raise UsageError("There is no organization yet. Run: bulkops init")
    if len(orgs) > 1:
        slugs = ", ".join(o["slug"] for o in orgs)
        raise UsageError(f"There are several organizations ({slugs}); choose one with --org.")
    return orgs[0]


def create_user(store: Store, org_id: int, email: str, role: Role, password: str | None) -> int:
    email = email.strip().lower()
    if "@" not in email:
        raise UsageError(f"'{email}' is not an email address.")
    if password is not None and len(password) < 10:
        raise UsageError("The password must be at least 10 characters long.")
    password_hash = _hasher.hash(password) if password is not None else None
    return store.accounts.create_user(org_id, email, password_hash, role.value)


def authenticate_password(store: Store, email: str, password: str) -> Principal:
    user = store.accounts.find_user(email=email.strip().lower())
    failure = AuthenticationFailed("Wrong email or password.")
    if user is None or not user["password_hash"] or user["disabled_at"] is not None:
        _hasher.hash(password)  # the same work either way, so timing tells nothing
        raise failure
    try:
        _hasher.verify(user["password_hash"], password)
    except (VerificationError, InvalidHashError):
        raise failure from None
    return Principal(user["organization_id"], user["id"], user["email"], Role(user["role"]))


def _reopens_at(failures: list[datetime]) -> datetime | None:
    """When a list of failures (oldest first) stops closing the door, or None if it does not.

    The door opens again once fewer than the limit are in the window: when the failure that
    makes the count reach the limit (the oldest one counted, normally) leaves it.
    """
    if len(failures) < LOGIN_FAILURE_LIMIT:
        return None
    return failures[len(failures) - LOGIN_FAILURE_LIMIT] + LOGIN_FAILURE_WINDOW


def log_in(
    store: Store,
    email: str,
    password: str,
    client_address: str,
    *,
    now: datetime | None = None,
) -> Principal:
    """A password log-in under the rate limit (the dashboard's door).

    After :data:`LOGIN_FAILURE_LIMIT` failures in :data:`LOGIN_FAILURE_WINDOW` for the account
    or from the address, it raises :class:`LoginThrottled` without looking at the password (the
    right one too: a guesser must learn nothing). A failure is recorded; a success clears the
    account's failures (not the address's: a guesser's own success must not reset them).
    """
    email = email.strip().lower()
    address = client_address[:_MAX_ADDRESS]
    moment = now or utcnow()
    by_account, by_address = store.logins.recent(email, address, moment - LOGIN_FAILURE_WINDOW)
    reopen = [at for at in (_reopens_at(by_account), _reopens_at(by_address)) if at is not None]
    if reopen:
        raise LoginThrottled(max(1, math.ceil((max(reopen) - moment).total_seconds())))
    try:
        principal = authenticate_password(store, email, password)
    except AuthenticationFailed:
        store.logins.record(email, address, moment)
        raise
    store.logins.clear_account(email)
    return principal


def create_token(store: Store, org_id: int, user_id: int, name: str) -> str:
    """A new API token, returned once; only its hash is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store.accounts.create_token(org_id, user_id, name, hash_token(token))
    return token


def authenticate_token(store: Store, token: str) -> Principal:
    """The user behind a live token; marks the token used (in a transaction of its own)."""
    found = (
        store.accounts.lookup_token(hash_token(token)) if token.startswith(TOKEN_PREFIX) else None
    )
    if found is None:
        raise AuthenticationFailed("Missing, revoked or unknown API token.")
    store.accounts.touch_token(found["id"])
    return Principal(
        found["organization_id"], found["user_id"], found["email"], Role(found["role"])
    )


def set_password(store: Store, org_id: int, email: str, password: str | None) -> str:
    """Give the organization's user ``email`` a new password (a generated one when None);
    returns it (to be shown once)."""
    user = store.accounts.find_user(email=email.strip().lower())
    if user is None or user["organization_id"] != org_id:
        raise NotFound(f"No user {email.strip().lower()} in this organization.")
    password = generate_password() if password is None else password
    if len(password) < 10:
        raise UsageError("The password must be at least 10 characters long.")
    store.accounts.set_password_hash(org_id, user["id"], _hasher.hash(password))
    return password
