"""check, then apply: uploads, remembered mappings, planned changes

``uploads`` holds a file stored before any operation uses it (for its preview and mapping);
an operation made from it takes the stored file over and the upload records which one.
``saved_mappings`` remembers the mapping of a completed operation per organization, entity
and header (``header_key``: SHA-256 of the header cells as headers are compared).
``operation_plans`` keeps the plan of a ``validate_only`` run: one row per chunk holding the
records that would change (column arrays, one JSON document), like ``operation_changes``.
``operations.differs_from_check`` counts the records of an applied check whose outcome
differs from the check's plan. On PostgreSQL the new tables get the same row-level security
as every tenant table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

APP_ROLE = "bulkops_app"
CURRENT_ORG = "nullif(current_setting('app.current_org', true), '')::bigint"
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", Id, nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("operation_type", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("file_path", sa.String(length=1024), nullable=False),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("created_by", Id, nullable=True),
        sa.Column("used_by_operation", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
    )
    op.create_index("ix_uploads_created", "uploads", ["created_at"], unique=False)
    op.create_table(
        "saved_mappings",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("organization_id", Id, nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("header_key", sa.String(length=64), nullable=False),
        sa.Column("header", sa.Text(), nullable=False),
        sa.Column("mapping", sa.Text(), nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("updated_by", Id, nullable=True),
        sa.Column("operation_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_saved_mappings")),
        sa.UniqueConstraint(
            "organization_id", "entity_type", "header_key", name="uq_saved_mappings_key"
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "operation_plans",
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("organization_id", Id, nullable=False),
        sa.Column("first_row", sa.BigInteger(), nullable=False),
        sa.Column("last_row", sa.BigInteger(), nullable=False),
        sa.Column("creates", sa.Integer(), nullable=False),
        sa.Column("updates", sa.Integer(), nullable=False),
        sa.Column("deletes", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("operation_id", "chunk_index", name=op.f("pk_operation_plans")),
    )
    with op.batch_alter_table("operations") as batch:
        batch.add_column(
            sa.Column("differs_from_check", sa.BigInteger(), nullable=False, server_default="0")
        )
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for table in ("uploads", "saved_mappings", "operation_plans"):
        _secure(table)
    # A chunk's plan is a few hundred kB of JSON: PostgreSQL's default compression (pglz)
    # costs more than writing it; lz4 is several times faster. A server built without lz4
    # keeps pglz.
    op.execute(
        "DO $$ BEGIN "
        "ALTER TABLE operation_plans ALTER COLUMN payload SET COMPRESSION lz4; "
        "EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN NULL; "
        "END $$"
    )
    sequence = bind.execute(
        sa.text("SELECT pg_get_serial_sequence('saved_mappings', 'id')")
    ).scalar_one()
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE {sequence} TO {APP_ROLE}")


def _secure(table: str) -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_select ON {table} FOR SELECT "
        f"USING (organization_id = {CURRENT_ORG})"
    )
    op.execute(
        f"CREATE POLICY {table}_insert ON {table} FOR INSERT "
        f"WITH CHECK (organization_id = {CURRENT_ORG})"
    )
    op.execute(
        f"CREATE POLICY {table}_update ON {table} FOR UPDATE "
        f"USING (organization_id = {CURRENT_ORG}) WITH CHECK (organization_id = {CURRENT_ORG})"
    )
    op.execute(
        f"CREATE POLICY {table}_delete ON {table} FOR DELETE "
        f"USING (organization_id = {CURRENT_ORG})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {APP_ROLE}")


def downgrade() -> None:
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("differs_from_check")
    op.drop_table("operation_plans")
    op.drop_table("saved_mappings")
    op.drop_index("ix_uploads_created", table_name="uploads")
    op.drop_table("uploads")
