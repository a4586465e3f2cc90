"""Failed password log-ins (``store.logins``), shared by every server process: each call its
own transaction. The rule (how many, how long) is the engine's; this only keeps the rows."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from bulkops.store.clock import aware
from bulkops.store.tables import login_failures

__all__ = ["LoginFailureStore"]

SystemTransaction = Callable[..., AbstractContextManager[Connection]]
"""``Store.system``: a transaction outside any organization."""


class LoginFailureStore:
    """The ``login_failures`` rows of one deployment."""

    def __init__(self, system: SystemTransaction) -> None:
        self._system = system

    def record(self, email: str, client_address: str, at: datetime) -> None:
        with self._system() as conn:
            conn.execute(
                insert(login_failures).values(email=email, client_address=client_address, at=at)
            )

    def recent(
        self, email: str, client_address: str, since: datetime
    ) -> tuple[list[datetime], list[datetime]]:
        """The times of failures since ``since``, oldest first: (for the account, from the
        address). Rows older than ``since`` are deleted first: the window is all they serve."""
        with self._system() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.at < since))
            by_account = conn.execute(
                select(login_failures.c.at)
                .where(login_failures.c.email == email, login_failures.c.at >= since)
                .order_by(login_failures.c.at)
            ).scalars()
            account = [aware(at) for at in by_account]
            by_address = conn.execute(
                select(login_failures.c.at)
                .where(
                    login_failures.c.client_address == client_address,
                    login_failures.c.at >= since,
                )
                .order_by(login_failures.c.at)
            ).scalars()
            return account, [aware(at) for at in by_address]

    def clear_account(self, email: str) -> None:
        with self._system() as conn:
            conn.execute(delete(login_failures).where(login_failures.c.email == email))
