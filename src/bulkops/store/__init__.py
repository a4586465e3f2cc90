"""The only package that talks to the database (SQLAlchemy Core, Alembic, psycopg 3)."""

from bulkops.store.database import ActiveOperation, DuplicateRow, Store, Tx, utcnow
from bulkops.store.tables import ENTITY_TABLES

__all__ = ["ENTITY_TABLES", "ActiveOperation", "DuplicateRow", "Store", "Tx", "utcnow"]
