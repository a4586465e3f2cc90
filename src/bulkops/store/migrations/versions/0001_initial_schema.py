"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28 12:58:04.381231
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "customers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("company", sa.String(length=255), nullable=True),
        sa.Column("price_tier", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("organization_id", "email", name="uq_customers_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "operation_chunks",
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("first_row", sa.BigInteger(), nullable=True),
        sa.Column("last_row", sa.BigInteger(), nullable=True),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("committed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "operation_id", "phase", "chunk_index", name=op.f("pk_operation_chunks")
        ),
    )
    op.create_table(
        "operation_errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_errors")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("operation_errors", schema=None) as batch_op:
        batch_op.create_index("ix_operation_errors_op", ["operation_id", "row"], unique=False)

    op.create_table(
        "operation_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("operation_events", schema=None) as batch_op:
        batch_op.create_index("ix_operation_events_op", ["operation_id", "id"], unique=False)

    op.create_table(
        "operation_records",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("operation_id", sa.String(length=36), nullable=False),
        sa.Column("record_index", sa.BigInteger(), nullable=False),
        sa.Column("entity_id", sa.BigInteger(), nullable=True),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("before_data", sa.Text(), nullable=True),
        sa.Column("after_data", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operation_records")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("operation_records", schema=None) as batch_op:
        batch_op.create_index("ix_operation_records_op", ["operation_id", "id"], unique=False)

    op.create_table(
        "operations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("operation_type", sa.String(length=16), nullable=False),
        sa.Column("entity_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=True),
        sa.Column("file_path", sa.String(length=1024), nullable=True),
        sa.Column("file_size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("file_sha256", sa.String(length=64), nullable=True),
        sa.Column("total_records", sa.BigInteger(), nullable=True),
        sa.Column("processed_records", sa.BigInteger(), nullable=False),
        sa.Column("successful_records", sa.BigInteger(), nullable=False),
        sa.Column("failed_records", sa.BigInteger(), nullable=False),
        sa.Column("unchanged_records", sa.BigInteger(), nullable=False),
        sa.Column("created_records", sa.BigInteger(), nullable=False),
        sa.Column("updated_records", sa.BigInteger(), nullable=False),
        sa.Column("deleted_records", sa.BigInteger(), nullable=False),
        sa.Column("rolled_back_records", sa.BigInteger(), nullable=False),
        sa.Column("conflict_records", sa.BigInteger(), nullable=False),
        sa.Column("bytes_processed", sa.BigInteger(), nullable=False),
        sa.Column("estimated_completion", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_rollback", sa.Boolean(), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "cancelled_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        ),
        sa.Column(
            "rollback_requested_by",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("rollback_force", sa.Boolean(), nullable=False),
        sa.Column("rollback_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rollback_completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.Float(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("executor", sa.String(length=16), server_default="inline", nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("header", sa.Text(), nullable=True),
        sa.Column("results", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operations")),
        sa.UniqueConstraint("organization_id", "idempotency_key", name="uq_operations_idempotency"),
    )
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_operations_org_created", ["organization_id", "created_at"], unique=False
        )
        batch_op.create_index(
            "ix_operations_org_entity_status",
            ["organization_id", "entity_type", "status"],
            unique=False,
        )

    op.create_table(
        "organizations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_organizations")),
        sa.UniqueConstraint("slug", name=op.f("uq_organizations_slug")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "products",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column(
            "price",
            sa.Numeric(precision=12, scale=2).with_variant(sa.String(length=16), "sqlite"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("organization_id", "sku", name="uq_products_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "users",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "warehouses",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_warehouses")),
        sa.UniqueConstraint("organization_id", "code", name="uq_warehouses_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "inventory",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("warehouse_code", sa.String(length=32), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id", "sku"],
            ["products.organization_id", "products.sku"],
            name="fk_inventory_product",
        ),
        sa.ForeignKeyConstraint(
            ["organization_id", "warehouse_code"],
            ["warehouses.organization_id", "warehouses.code"],
            name="fk_inventory_warehouse",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory")),
        sa.UniqueConstraint("organization_id", "sku", "warehouse_code", name="uq_inventory_key"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("inventory", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inventory_warehouse", ["organization_id", "warehouse_code"], unique=False
        )

    op.create_table(
        "pricing",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column(
            "organization_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("price_tier", sa.String(length=50), nullable=False),
        sa.Column(
            "price",
            sa.Numeric(precision=12, scale=2).with_variant(sa.String(length=16), "sqlite"),
            nullable=False,
        ),
        sa.Column("min_quantity", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id", "sku"],
            ["products.organization_id", "products.sku"],
            name="fk_pricing_product",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pricing")),
        sa.UniqueConstraint(
            "organization_id", "sku", "price_tier", "min_quantity", name="uq_pricing_key"
        ),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("pricing")
    with op.batch_alter_table("inventory", schema=None) as batch_op:
        batch_op.drop_index("ix_inventory_warehouse")

    op.drop_table("inventory")
    op.drop_table("warehouses")
    op.drop_table("users")
    op.drop_table("products")
    op.drop_table("organizations")
    with op.batch_alter_table("operations", schema=None) as batch_op:
        batch_op.drop_index("ix_operations_org_entity_status")
        batch_op.drop_index("ix_operations_org_created")

    op.drop_table("operations")
    with op.batch_alter_table("operation_records", schema=None) as batch_op:
        batch_op.drop_index("ix_operation_records_op")

    op.drop_table("operation_records")
    with op.batch_alter_table("operation_events", schema=None) as batch_op:
        batch_op.drop_index("ix_operation_events_op")

    op.drop_table("operation_events")
    with op.batch_alter_table("operation_errors", schema=None) as batch_op:
        batch_op.drop_index("ix_operation_errors_op")

    op.drop_table("operation_errors")
    op.drop_table("operation_chunks")
    op.drop_table("customers")
    op.drop_table("api_tokens")
