"""chunks of one operation on several workers

``operation_chunk_plans`` holds the chunks a coordinating worker has read and checked but
that are not applied yet (their records, ready to apply, and a lease per chunk);
``operations.chunk_count`` is set once the whole file is planned; ``operation_chunks.worker``
says which process applied a chunk. On PostgreSQL the new table gets the same row-level
security as every tenant table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

APP_ROLE = "bulkops_app"
CURRENT_ORG = "nullif(current_setting('app.current_org', true), '')::bigint"
TABLE = "operation_chunk_plans"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("first_row", sa.BigInteger(), nullable=False),
        sa.Column("last_row", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("byte_count", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("operation_id", "chunk_index", name=op.f("pk_" + TABLE)),
    )
    with op.batch_alter_table("operations") as batch:
        batch.add_column(sa.Column("chunk_count", sa.Integer(), nullable=True))
    with op.batch_alter_table("operation_chunks") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {TABLE}_select ON {TABLE} FOR SELECT "
        f"USING (organization_id = {CURRENT_ORG})"
    )
    op.execute(
        f"CREATE POLICY {TABLE}_insert ON {TABLE} FOR INSERT "
        f"WITH CHECK (organization_id = {CURRENT_ORG})"
    )
    op.execute(
        f"CREATE POLICY {TABLE}_update ON {TABLE} FOR UPDATE "
        f"USING (organization_id = {CURRENT_ORG}) WITH CHECK (organization_id = {CURRENT_ORG})"
    )
    op.execute(
        f"CREATE POLICY {TABLE}_delete ON {TABLE} FOR DELETE "
        f"USING (organization_id = {CURRENT_ORG})"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLE} TO {APP_ROLE}")


def downgrade() -> None:
    with op.batch_alter_table("operation_chunks") as batch:
        batch.drop_column("worker")
    with op.batch_alter_table("operations") as batch:
        batch.drop_column("chunk_count")
    op.drop_table(TABLE)
