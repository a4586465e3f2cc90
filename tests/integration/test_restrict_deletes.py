"""Migration 0010: on PostgreSQL the foreign keys that point at products and warehouses
restrict deletes; SQLite keeps NO ACTION.

On both databases an upgraded database keeps every row, its indexes and the ids already used;
a product or warehouse still used cannot be deleted, one no longer used can. The downgrade
puts the default action back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from bulkops.store import tables
from bulkops.store.schema import alembic_config
from tests.conftest import owner_database

ORG = 1
KEYS = {
    "inventory": {"fk_inventory_product", "fk_inventory_warehouse"},
    "pricing": {"fk_pricing_product"},
}
assert KEYS["inventory"] | KEYS["pricing"] == tables.RESTRICTED_ON_POSTGRESQL


def _scoped(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT set_config('app.current_org', :o, true)"), {"o": str(ORG)})


def _fill(conn: Connection) -> None:
    _scoped(conn)
    conn.execute(text("INSERT INTO warehouses (organization_id, code, name) VALUES "
                      "(1, 'W1', 'Main'), (1, 'W2', 'Spare')"))
    conn.execute(text("INSERT INTO products (organization_id, sku, name) VALUES "
                      "(1, 'P1', 'One'), (1, 'P2', 'Two'), (1, 'P3', 'Three')"))
    conn.execute(text("INSERT INTO inventory (organization_id, sku, warehouse_code, quantity) "
                      "VALUES (1, 'P1', 'W1', 5), (1, 'P2', 'W1', 7), (1, 'P3', 'W1', 9)"))
    conn.execute(text("INSERT INTO pricing (organization_id, sku, price_tier, price, "
                      "min_quantity) VALUES (1, 'P1', 'gold', 9.5, 1), (1, 'P1', 'gold', 9, 10)"))
    # The newest rows go: their ids must never be given again.
    conn.execute(text("DELETE FROM inventory WHERE sku = 'P3'"))
    conn.execute(text("DELETE FROM pricing WHERE min_quantity = 10"))


def _rows(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    _scoped(conn)
    return {
        table: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY id"))]
        for table in ("inventory", "pricing")
    }


def _delete_actions(conn: Connection) -> dict[str, str | None]:
    found = {}
    for table, names in KEYS.items():
        for key in inspect(conn).get_foreign_keys(table):
            if key["name"] in names:
                found[key["name"]] = (key.get("options") or {}).get("ondelete")
    return found


def _indexes(conn: Connection) -> set[str]:
    if conn.dialect.name == "postgresql":
        query = "SELECT indexname FROM pg_indexes WHERE tablename IN ('inventory', 'pricing')"
    else:
        query = ("SELECT name FROM sqlite_master WHERE type = 'index' "
                 "AND tbl_name IN ('inventory', 'pricing')")
    return {r[0] for r in conn.execute(text(query))}


def _refused(conn: Connection, statement: str) -> bool:
    try:
        with conn.begin_nested():
            conn.execute(text(statement))
    except IntegrityError as exc:
        assert "foreign key" in str(exc).lower()
        return True
    return False


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0010_restricts_deletes_and_keeps_rows_indexes_and_ids(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with owner_database(kind, tmp_path, request) as url:
        engine = create_engine(url, poolclass=NullPool)
        if kind == "sqlite":  # as the store's connections have it
            event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA foreign_keys = ON"))
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0009")
            with engine.begin() as conn:
                _fill(conn)
            with engine.connect() as conn:
                before, indexes = _rows(conn), _indexes(conn)
                assert set(_delete_actions(conn).values()) == {None}
            assert {"ix_inventory_folded_key", "ix_pricing_folded_key"} <= indexes

            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "head")
            with engine.begin() as conn:
                assert _rows(conn) == before
                assert _indexes(conn) == indexes
                assert _delete_actions(conn) == dict.fromkeys(
                    KEYS["inventory"] | KEYS["pricing"],
                    "RESTRICT" if kind == "postgresql" else None,
                )
                _scoped(conn)
                new_id = conn.execute(text(
                    "INSERT INTO inventory (organization_id, sku, warehouse_code, quantity) "
                    "VALUES (1, 'P3', 'W2', 1) RETURNING id")).scalar()
                assert new_id == 4  # not 3, which a deleted row had
                assert _refused(conn, "DELETE FROM products WHERE sku = 'P1'")  # both use it
                assert _refused(conn, "DELETE FROM products WHERE sku = 'P2'")  # inventory
                assert _refused(conn, "DELETE FROM warehouses WHERE code = 'W2'")
                assert _refused(conn, "DELETE FROM products WHERE sku = 'P3'")
                conn.execute(text("DELETE FROM inventory WHERE id = 4"))
                assert not _refused(conn, "DELETE FROM products WHERE sku = 'P3'")
                assert not _refused(conn, "DELETE FROM warehouses WHERE code = 'W2'")
                assert conn.execute(text("SELECT count(*) FROM products")).scalar() == 2

            with engine.begin() as conn:
                command.downgrade(alembic_config(conn), "0009")
            with engine.connect() as conn:
                assert set(_delete_actions(conn).values()) == {None}
                assert _indexes(conn) == indexes
                assert _rows(conn)["pricing"] == before["pricing"]
        finally:
            engine.dispose()
