"""foreign keys that point at products and warehouses: ON DELETE RESTRICT on PostgreSQL

Inventory and pricing refer to a product (and inventory to a warehouse) by its natural key.
Both actions refuse to delete a row still in use, with the same error. PostgreSQL's default,
NO ACTION, also looks for another row with the same key that would take the deleted one's
place before it looks for references: a second look-up per deleted row and foreign key. A key
is never updated and never held by two rows, so there is nothing to find; RESTRICT skips that
look-up (measured: a batch of 1,000 product deletes spent 20 ms in these checks, 8 ms after).
Deleting products or warehouses, and rolling back an import of them, gain.

SQLite keeps NO ACTION: there RESTRICT checks each row at once, which measured slower (1,000
deletes a transaction, 200k products: 0.97-1.38 s of CPU against 0.83-0.94 s), and changing a
constraint would rebuild both tables.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: table -> its foreign keys: (name, referred table, columns, referred columns)
FOREIGN_KEYS: dict[str, list[tuple[str, str, list[str], list[str]]]] = {
    "inventory": [
        ("fk_inventory_product", "products", ["organization_id", "sku"],
         ["organization_id", "sku"]),
        ("fk_inventory_warehouse", "warehouses", ["organization_id", "warehouse_code"],
         ["organization_id", "code"]),
    ],
    "pricing": [
        ("fk_pricing_product", "products", ["organization_id", "sku"],
         ["organization_id", "sku"]),
    ],
}


def upgrade() -> None:
    _set_delete_action("RESTRICT")


def downgrade() -> None:
    _set_delete_action(None)


def _set_delete_action(action: str | None) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, keys in FOREIGN_KEYS.items():
        clauses = []
        for name, referred, columns, referred_columns in keys:
            clauses.append(f"DROP CONSTRAINT {name}")
            clauses.append(
                f"ADD CONSTRAINT {name} FOREIGN KEY ({', '.join(columns)}) "
                f"REFERENCES {referred} ({', '.join(referred_columns)})"
                + (f" ON DELETE {action}" if action else "")
            )
        op.execute(f"ALTER TABLE {table} {', '.join(clauses)}")
