"""SQLAlchemy Core tables. Every tenant row carries ``organization_id``; unique keys include it.

Money is kept exact: ``price`` is NUMERIC(12,2) on PostgreSQL and the canonical text
``"12.50"`` on SQLite (whose NUMERIC affinity would turn it into a float).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)

__all__ = [
    "ENTITY_TABLES",
    "MIXED_CASE_FOLDED",
    "TENANT_TABLES",
    "ascii_lowered",
    "metadata",
    "mixed_case",
    "natural_key",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Price = Numeric(12, 2).with_variant(String(16), "sqlite")
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
Timestamp = DateTime(timezone=True)


def _org_column() -> Column[int]:
    return Column("organization_id", Id, nullable=False)


organizations = Table(
    "organizations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    sqlite_autoincrement=True,
)

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("email", String(254), nullable=False),
    Column("password_hash", String(255), nullable=True),
    Column("role", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("disabled_at", Timestamp, nullable=True),
    UniqueConstraint("email", name="uq_users_email"),
    sqlite_autoincrement=True,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("user_id", Id, nullable=False),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    Column("last_used_at", Timestamp, nullable=True),
    Column("revoked_at", Timestamp, nullable=True),
    sqlite_autoincrement=True,
)

warehouses = Table(
    "warehouses",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("code", String(32), nullable=False),
    Column("name", String(255), nullable=False),
    UniqueConstraint("organization_id", "code", name="uq_warehouses_key"),
    sqlite_autoincrement=True,
)

products = Table(
    "products",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("sku", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=True),
    Column("category", String(100), nullable=True),
    Column("price", Price, nullable=True),
    UniqueConstraint("organization_id", "sku", name="uq_products_key"),
    sqlite_autoincrement=True,
)

#: Foreign keys that are ON DELETE RESTRICT on PostgreSQL; SQLite keeps NO ACTION, which costs
#: less there (migration 0010 says why). Both refuse to delete a row still in use.
RESTRICTED_ON_POSTGRESQL = frozenset(
    {"fk_inventory_product", "fk_inventory_warehouse", "fk_pricing_product"}
)

inventory = Table(
    "inventory",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("sku", String(64), nullable=False),
    Column("warehouse_code", String(32), nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("reason", String(255), nullable=True),
    Column("notes", Text, nullable=True),
    UniqueConstraint("organization_id", "sku", "warehouse_code", name="uq_inventory_key"),
    ForeignKeyConstraint(
        ["organization_id", "sku"],
        ["products.organization_id", "products.sku"],
        name="fk_inventory_product",
        ondelete="RESTRICT",
    ),
    ForeignKeyConstraint(
        ["organization_id", "warehouse_code"],
        ["warehouses.organization_id", "warehouses.code"],
        name="fk_inventory_warehouse",
        ondelete="RESTRICT",
    ),
    Index("ix_inventory_warehouse", "organization_id", "warehouse_code"),
    sqlite_autoincrement=True,
)

pricing = Table(
    "pricing",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("sku", String(64), nullable=False),
    Column("price_tier", String(50), nullable=False),
    Column("price", Price, nullable=False),
    Column("min_quantity", BigInteger, nullable=False),
    UniqueConstraint("organization_id", "sku", "price_tier", "min_quantity", name="uq_pricing_key"),
    ForeignKeyConstraint(
        ["organization_id", "sku"],
        ["products.organization_id", "products.sku"],
        name="fk_pricing_product",
        ondelete="RESTRICT",
    ),
    sqlite_autoincrement=True,
)

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("email", String(254), nullable=False),
    Column("name", String(255), nullable=False),
    Column("company", String(255), nullable=True),
    Column("price_tier", String(50), nullable=False),
    UniqueConstraint("organization_id", "email", name="uq_customers_key"),
    sqlite_autoincrement=True,
)

operations = Table(
    "operations",
    metadata,
    Column("id", String(36), primary_key=True),
    _org_column(),
    Column("operation_type", String(16), nullable=False),
    Column("entity_type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("file_name", String(255), nullable=True),
    Column("file_path", String(1024), nullable=True),
    Column("file_size_bytes", BigInteger, nullable=True),
    Column("file_sha256", String(64), nullable=True),
    Column("total_records", BigInteger, nullable=True),
    Column("processed_records", BigInteger, nullable=False, default=0),
    Column("successful_records", BigInteger, nullable=False, default=0),
    Column("failed_records", BigInteger, nullable=False, default=0),
    Column("unchanged_records", BigInteger, nullable=False, default=0),
    Column("created_records", BigInteger, nullable=False, default=0),
    Column("updated_records", BigInteger, nullable=False, default=0),
    Column("deleted_records", BigInteger, nullable=False, default=0),
    Column("rolled_back_records", BigInteger, nullable=False, default=0),
    Column("conflict_records", BigInteger, nullable=False, default=0),
    Column("bytes_processed", BigInteger, nullable=False, default=0),
    Column("estimated_completion", Timestamp, nullable=True),
    Column("started_at", Timestamp, nullable=True),
    Column("completed_at", Timestamp, nullable=True),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", Id, nullable=True),
    Column("cancel_requested_at", Timestamp, nullable=True),
    Column("cancel_rollback", Boolean, nullable=False, default=False),
    Column("cancelled_at", Timestamp, nullable=True),
    Column("cancelled_by", Id, nullable=True),
    Column("rollback_requested_by", Id, nullable=True),
    Column("rollback_force", Boolean, nullable=False, default=False),
    Column("rollback_started_at", Timestamp, nullable=True),
    Column("rollback_completed_at", Timestamp, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    # SHA-256 of the request the key was first used with (file, type, entity, options): the
    # same key with another request is refused. NULL before migration 0006 (and without a key).
    Column("idempotency_fingerprint", String(64), nullable=True),
    # Who runs it: "inline" (the command that created it, e.g. the CLI) or "worker" (the
    # service's workers pick it up).
    Column("executor", String(16), nullable=False, server_default="inline"),
    # Who started it, in words: a user's e-mail (API, dashboard, ``--as``) or
    # ``cli:<os-user>@<host>``. NULL for operations made before migration 0009.
    Column("actor", String(320), nullable=True),
    # config's validate_only, as a column so that lists filter by outcome in SQL.
    Column("validate_only", Boolean, nullable=False, default=False, server_default=false()),
    # Set once a coordinating worker has planned the whole file into chunks for several
    # workers (see operation_chunk_plans); NULL for an operation run in one process.
    Column("chunk_count", Integer, nullable=True),
    # Take-ups in a row without a committed chunk (a chunk commit resets it).
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    # An applied check (config.checked_by): records whose outcome differs from the check's.
    Column("differs_from_check", BigInteger, nullable=False, default=0, server_default="0"),
    Column("config", Text, nullable=False),
    Column("header", Text, nullable=True),
    Column("results", Text, nullable=False),
    Index("ix_operations_org_created", "organization_id", "created_at"),
    Index("ix_operations_org_entity_status", "organization_id", "entity_type", "status"),
    UniqueConstraint("organization_id", "idempotency_key", name="uq_operations_idempotency"),
)

# The audit trail: one row per applied chunk (a "batch") holding the before and after images
# of all its records, written with one statement. ``data`` is one JSON document, arrays in
# the order the records were written (creates, then updates, then deletes):
#   {"fields": [...],            the entity's fields, the order of every image below
#    "rows": [...],              record indexes (spreadsheet rows)
#    "ids": [...],               entity row ids
#    "actions": "ccud...",       one letter per record: c(reate), u(pdate), d(elete)
#    "before": [[...] | null],   values in "fields" order; null for a create
#    "after": [[...] | null]}    values in "fields" order; null for a delete
# ``status``: applied; rolled_back (every record restored); conflict (rolled back except
# some records). ``outcomes`` is NULL until a rollback marks the batch; then a JSON object
# listing only the records whose outcome is not a plain "rolled_back":
# {"<position in the batch>": [status, error]} (in practice the conflicts). A record's
# synthetic id in the per-record views is batch id * CHANGE_ID_STRIDE + its position.
operation_changes = Table(
    "operation_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("operation_id", String(36), nullable=False),
    Column("first_record_index", BigInteger, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("outcomes", Text, nullable=True),
    # Rollback pages through one operation's batches by id, newest first.
    Index("ix_operation_changes_op", "operation_id", "id"),
    sqlite_autoincrement=True,
)

operation_errors = Table(
    "operation_errors",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("operation_id", String(36), nullable=False),
    Column("row", BigInteger, nullable=False),
    Column("line", BigInteger, nullable=False),
    Column("errors", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Index("ix_operation_errors_op", "operation_id", "row"),
    sqlite_autoincrement=True,
)

operation_chunks = Table(
    "operation_chunks",
    metadata,
    Column("operation_id", String(36), primary_key=True),
    Column("phase", String(16), primary_key=True),
    Column("chunk_index", Integer, primary_key=True),
    _org_column(),
    Column("first_row", BigInteger, nullable=True),
    Column("last_row", BigInteger, nullable=True),
    Column("records", Integer, nullable=False),
    Column("committed_at", Timestamp, nullable=False),
    Column("worker", String(64), nullable=True),  # the process that applied it
)

# Chunks read and checked by a coordinating worker, waiting to be applied by any worker:
# the prepared records travel here (JSON), never in a task message. A row is deleted in the
# transaction that applies its chunk.
operation_chunk_plans = Table(
    "operation_chunk_plans",
    metadata,
    Column("operation_id", String(36), primary_key=True),
    Column("chunk_index", Integer, primary_key=True),
    _org_column(),
    Column("first_row", BigInteger, nullable=False),
    Column("last_row", BigInteger, nullable=False),
    Column("records", Integer, nullable=False),
    Column("byte_count", BigInteger, nullable=False),  # bytes of the file it spans
    Column("payload", Text, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("created_at", Timestamp, nullable=False),
)

operation_events = Table(
    "operation_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("operation_id", String(36), nullable=False),
    Column("event", String(32), nullable=False),
    Column("data", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Index("ix_operation_events_op", "operation_id", "id"),
    sqlite_autoincrement=True,
)

# A file stored for review before an operation uses it (CONTRACT section 7). ``options``: the
# read options last given (JSON: encoding, delimiter, decimal_separator, sheet). An operation
# made from it takes the stored file over and is named in ``used_by_operation``; an unused
# upload is deleted after BULKOPS_UPLOAD_TTL_HOURS.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    _org_column(),
    Column("entity_type", String(16), nullable=False),
    Column("operation_type", String(16), nullable=False),
    Column("file_name", String(255), nullable=True),
    Column("file_path", String(1024), nullable=False),
    Column("file_size_bytes", BigInteger, nullable=False),
    Column("file_sha256", String(64), nullable=False),
    Column("options", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", Id, nullable=True),
    Column("used_by_operation", String(36), nullable=True),
    Index("ix_uploads_created", "created_at"),
)

# The mapping of the last completed operation per organization, entity and header.
# ``header_key``: SHA-256 of the header cells as headers are compared (trimmed, any case).
saved_mappings = Table(
    "saved_mappings",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    _org_column(),
    Column("entity_type", String(16), nullable=False),
    Column("header_key", String(64), nullable=False),
    Column("header", Text, nullable=False),  # JSON list of the header cells
    Column("mapping", Text, nullable=False),  # JSON object header -> field or ""
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", Id, nullable=True),
    Column("operation_id", String(36), nullable=True),  # the operation it was saved from
    UniqueConstraint(
        "organization_id", "entity_type", "header_key", name="uq_saved_mappings_key"
    ),
    sqlite_autoincrement=True,
)

# The plan of a validate_only operation: one row per chunk with at least one record that would
# change. ``payload`` is one JSON document (plans.PlanImages): the entity's fields and key, and
# per action the records' rows and images, {"creates": [[row, values]], "updates": [[row,
# before, after]], "deletes": [[row, before]]}, as the check decided them. Which fields an
# update changes (and each record's key) is worked out when a page is read, so a check pays
# only one orjson.dumps per chunk. The counts per action let a page filtered by action skip
# chunks.
operation_plans = Table(
    "operation_plans",
    metadata,
    Column("operation_id", String(36), primary_key=True),
    Column("chunk_index", Integer, primary_key=True),
    _org_column(),
    Column("first_row", BigInteger, nullable=False),
    Column("last_row", BigInteger, nullable=False),
    Column("creates", Integer, nullable=False),
    Column("updates", Integer, nullable=False),
    Column("deletes", Integer, nullable=False),
    Column("payload", Text, nullable=False),
)

# Case twins (keys that differ only by letter case) are looked up by lower() of each text part
# of the key (migration 0006; see rows.py). Customers' email is stored lower-case: its unique
# key serves. Products and warehouses, as PostgreSQL has them (migration 0011): only the keys
# with both upper- and lower-case ASCII letters, lowered as SQLite's lower() does; SQLite keeps
# lower() of every key (its schema comparison skips expression indexes).
#: The tables whose folded-key index is partial on PostgreSQL: table -> its one-column key.
MIXED_CASE_FOLDED = {"warehouses": "code", "products": "sku"}


def ascii_lowered(column: str) -> str:
    """SQL: the column with its ASCII letters lowered (as SQLite's ``lower()``)."""
    return f'lower({column} COLLATE "C")'


def mixed_case(column: str) -> str:
    """SQL: the partial index's predicate, which a look-up repeats word for word (the
    planner uses a partial index only for a query that states its condition)."""
    return f'{column} <> {ascii_lowered(column)} AND {column} <> upper({column} COLLATE "C")'


for _table, _column in MIXED_CASE_FOLDED.items():
    Index(
        f"ix_{_table}_folded_key",
        metadata.tables[_table].c.organization_id,
        text(ascii_lowered(_column)),
        postgresql_where=text(mixed_case(_column)),
    )
del _table, _column
Index(
    "ix_inventory_folded_key",
    inventory.c.organization_id,
    func.lower(inventory.c.sku),
    func.lower(inventory.c.warehouse_code),
)
Index(
    "ix_pricing_folded_key",
    pricing.c.organization_id,
    func.lower(pricing.c.sku),
    func.lower(pricing.c.price_tier),
    pricing.c.min_quantity,
)

# Failed password log-ins of the last minutes, for the log-in rate limit (per account and per
# client address). Not a tenant table: the organization is not known before the log-in.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False),  # normalised: trimmed, lower-case
    Column("client_address", String(64), nullable=False),
    Column("at", Timestamp, nullable=False),
    Index("ix_login_failures_email", "email", "at"),
    Index("ix_login_failures_client", "client_address", "at"),
    Index("ix_login_failures_at", "at"),
    sqlite_autoincrement=True,
)

ENTITY_TABLES: dict[str, Table] = {
    t.name: t for t in (warehouses, products, inventory, pricing, customers)
}


def natural_key(entity: str) -> tuple[str, ...]:
    """The columns of an entity's unique key within its organization (``uq_<table>_key``)."""
    table = ENTITY_TABLES[entity]
    for constraint in table.constraints:
        if constraint.name == f"uq_{table.name}_key":
            columns = constraint.columns  # type: ignore[attr-defined]
            return tuple(c.name for c in columns if c.name != "organization_id")
    raise KeyError(entity)


TENANT_TABLES: tuple[Table, ...] = (
    users,
    api_tokens,
    warehouses,
    products,
    inventory,
    pricing,
    customers,
    operations,
    operation_changes,
    operation_errors,
    operation_chunks,
    operation_chunk_plans,
    operation_events,
    uploads,
    saved_mappings,
    operation_plans,
)
