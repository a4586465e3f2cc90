"""folded keys

Expression indexes on ``lower()`` of the text parts of each entity's natural key, so that
an import finds the case twins of its new keys (a key that differs from an existing one only
by letter case) through an index instead of a scan. Customers' email is stored lower-case:
its unique key already serves. Nothing else changes: existing twins stay as they are
(``bulkops doctor`` lists them).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

#: index name -> (table, indexed expressions)
INDEXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ix_warehouses_folded_key": ("warehouses", ("organization_id", "lower(code)")),
    "ix_products_folded_key": ("products", ("organization_id", "lower(sku)")),
    "ix_inventory_folded_key": (
        "inventory",
        ("organization_id", "lower(sku)", "lower(warehouse_code)"),
    ),
    "ix_pricing_folded_key": (
        "pricing",
        ("organization_id", "lower(sku)", "lower(price_tier)", "min_quantity"),
    ),
}


def upgrade() -> None:
    for name, (table, expressions) in INDEXES.items():
        columns = [sa.text(e) if "(" in e else e for e in expressions]
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in INDEXES.items():
        op.drop_index(name, table_name=table)
