"""The only package that talks to the database (SQLAlchemy Core, Alembic, psycopg 3)."""

from bulkops.store.database import (
    CHANGE_ID_STRIDE,
    ActiveOperation,
    AuditRecord,
    ChangeBatch,
    DuplicateRow,
    Store,
    Tx,
    utcnow,
)
from bulkops.store.tables import ENTITY_TABLES

__all__ = [
    "CHANGE_ID_STRIDE",
    "ENTITY_TABLES",
    "ActiveOperation",
    "AuditRecord",
    "ChangeBatch",
    "DuplicateRow",
    "Store",
    "Tx",
    "utcnow",
]
