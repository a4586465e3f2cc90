"""One transaction scoped to one organization, made of one small store per kind of row."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection

from bulkops.store.audit import AuditStore
from bulkops.store.dialects import Dialect
from bulkops.store.errors import translate
from bulkops.store.ledger import EventStore, LedgerStore
from bulkops.store.operations import OperationStore
from bulkops.store.plans import PlanStore
from bulkops.store.rows import RowStore
from bulkops.store.uploads import MappingStore, UploadStore

__all__ = ["Tx"]


class Tx:
    """One transaction of one organization: every query of its stores filters by it."""

    __slots__ = (
        "audit",
        "conn",
        "dialect",
        "events",
        "ledger",
        "mappings",
        "operations",
        "org_id",
        "plans",
        "rows",
        "uploads",
    )

    def __init__(
        self, conn: Connection, dialect: Dialect, org_id: int, *, bulk: bool = False
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self.org_id = org_id
        dialect.scope(conn, org_id, bulk=bulk)
        self.operations = OperationStore(conn, dialect, org_id)
        self.ledger = LedgerStore(conn, dialect, org_id)
        self.events = EventStore(conn, dialect, org_id)
        self.audit = AuditStore(conn, dialect, org_id)
        self.rows = RowStore(conn, dialect, org_id)
        self.plans = PlanStore(conn, dialect, org_id)
        self.uploads = UploadStore(conn, dialect, org_id)
        self.mappings = MappingStore(conn, dialect, org_id)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: an error inside undoes only what the block wrote."""
        with translate(), self.conn.begin_nested():
            yield
