"""The only package that talks to the database (SQLAlchemy Core, Alembic, psycopg 3)."""

from bulkops.store.audit import CHANGE_ID_STRIDE, AuditRecord, ChangeBatch
from bulkops.store.clock import utcnow
from bulkops.store.database import Store
from bulkops.store.errors import DuplicateRow
from bulkops.store.ledger import LedgerEntry
from bulkops.store.operations import ACTIVE_STATUSES, Competitor, OperationTotals
from bulkops.store.plans import PlanChunk, PlanImages, decode_plan
from bulkops.store.tables import ENTITY_TABLES
from bulkops.store.transaction import Tx
from bulkops.store.waiters import EventWaiter

__all__ = [
    "ACTIVE_STATUSES",
    "CHANGE_ID_STRIDE",
    "ENTITY_TABLES",
    "AuditRecord",
    "ChangeBatch",
    "Competitor",
    "DuplicateRow",
    "EventWaiter",
    "LedgerEntry",
    "OperationTotals",
    "PlanChunk",
    "PlanImages",
    "Store",
    "Tx",
    "decode_plan",
    "utcnow",
]
