"""What every part of a transaction holds: its connection, organization and dialect."""

from __future__ import annotations

from sqlalchemy.engine import Connection

from bulkops.store.dialects import Dialect

__all__ = ["Scoped"]


class Scoped:
    """A part of one transaction scoped to one organization: every query filters by it."""

    __slots__ = ("conn", "dialect", "org_id")

    def __init__(self, conn: Connection, dialect: Dialect, org_id: int) -> None:
        self.conn = conn
        self.dialect = dialect
        self.org_id = org_id
