"""The audit trail as one batch per applied chunk (``operation_changes``), on both databases.

What a user sees stays per record: the store's per-record view, the records API (cursor and
status filter across batch boundaries), rollback and its conflicts. Migration 0004 converts
per-record rows into batches and back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bulkops.engine import Context, rollback_operation
from bulkops.store import CHANGE_ID_STRIDE, Store
from bulkops.store.schema import alembic_config
from tests.conftest import PG_APP_ROLE, owner_database, pg_url
from tests.helpers import run, table, write_csv
from tests.integration.test_api import Api, start_api

HEADER = "sku,name,description,category,price\n"
FIELDS = ["sku", "name", "description", "category", "price"]


def _products(start: int, stop: int, price: str) -> str:
    return "".join(f"P-{i:04d},Product {i},,cat,{price}\n" for i in range(start, stop))


def _batches(ctx: Context, org_id: int, op_id: str) -> list[tuple[Any, ...]]:
    with ctx.store.transaction(org_id) as tx:
        return [
            tuple(r)
            for r in tx.conn.execute(
                text(
                    "SELECT id, first_record_index, record_count, status, data, outcomes "
                    "FROM operation_changes WHERE operation_id = :op ORDER BY id"
                ),
                {"op": op_id},
            )
        ]


def _records(ctx: Context, org_id: int, op_id: str, **options: Any) -> list[dict[str, Any]]:
    with ctx.store.transaction(org_id) as tx:
        return tx.audit.page(op_id, newest_first=False, limit=10_000_000, **options)


def test_an_import_of_2500_rows_writes_three_batches_that_expand_to_every_record(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv",
                                                     HEADER + _products(0, 1000, "1.00")))
    # Rows 2..1001 update the first 1000 products (price), rows 1002..2501 create 1500.
    text_ = HEADER + _products(0, 1000, "2.00") + _products(1000, 2500, "3.00")
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "b.csv", text_),
             chunk_size=1000)
    assert (op.created_records, op.updated_records) == (1500, 1000)

    batches = _batches(ctx, org_id, op.id)
    assert [(b[1], b[2], b[3], b[5]) for b in batches] == [
        (2, 1000, "applied", None),
        (1002, 1000, "applied", None),
        (2002, 500, "applied", None),
    ]
    first = orjson.loads(batches[0][4])
    assert first["fields"] == FIELDS and first["actions"] == "u" * 1000
    assert first["before"][0] == ["P-0000", "Product 0", None, "cat", "1.00"]
    assert first["after"][0] == ["P-0000", "Product 0", None, "cat", "2.00"]

    records = _records(ctx, org_id, op.id)
    assert len(records) == 2500
    assert sorted(r["record_index"] for r in records) == list(range(2, 2502))
    ids = [r["id"] for r in records]
    assert ids == sorted(ids) and len(set(ids)) == 2500
    assert {r["id"] // CHANGE_ID_STRIDE for r in records} == {b[0] for b in batches}
    rows = {r[0]: r[1:] for r in table(ctx, org_id, "products")}
    for record in records:
        after = orjson.loads(record["after_data"])
        assert tuple(after.values()) == rows[record["entity_id"]]
        assert (record["status"], record["error"]) == ("applied", None)
        if record["record_index"] <= 1001:
            assert record["action"] == "update"
            before = orjson.loads(record["before_data"])
            assert before == {**after, "price": "1.00"} and after["price"] == "2.00"
        else:
            assert record["action"] == "create" and record["before_data"] is None
            assert after["price"] == "3.00"

    # A page starting inside a batch, newest first, crosses into the previous batch.
    middle = records[1500]["id"]
    with ctx.store.transaction(org_id) as tx:
        page = tx.audit.page(op.id, newest_first=True, before_id=middle, limit=600)
    assert [r["id"] for r in page] == ids[900:1500][::-1]

    # A delete is one batch too, with the before images; its rollback brings them back.
    deleted = run(ctx, org_id, "delete", "products",
                  write_csv(tmp_path / "d.csv", "sku\nP-0001\nP-2499\n"))
    [batch] = _batches(ctx, org_id, deleted.id)
    assert orjson.loads(batch[4])["actions"] == "dd" and orjson.loads(batch[4])["after"] == [
        None, None]
    undone = rollback_operation(ctx, org_id, deleted.id, user_id=None)
    assert (undone.rolled_back_records, undone.conflict_records) == (2, 0)
    assert {r[0]: r[1:] for r in table(ctx, org_id, "products")} == rows
    assert _batches(ctx, org_id, deleted.id)[0][3:] == ("rolled_back", batch[4], None)


def test_the_record_by_record_fallback_writes_one_batch(ctx: Context, org_id: int) -> None:
    from bulkops.engine.apply import apply_plan
    from bulkops.engine.chunk import ChunkPlan
    from bulkops.entities import spec_for
    from bulkops.model import RawRecord

    spec = spec_for("products")
    chunk = [
        RawRecord(row=2, line=2, values=["K-1", "One", "", "", "1.00"]),
        RawRecord(row=3, line=3, values=["K-2", "Two", "", "", "2.00"]),
        RawRecord(row=4, line=4, values=["K-3", "Three", "", "", "3.00"]),
    ]
    plan = ChunkPlan(creates=[(r.row, (r.values[0], r.values[1], None, None, r.values[4]))
                              for r in chunk])
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.rows.insert("products", spec.field_names, [("K-2", "Other", None, None, "9.00")])
        apply_plan(tx, spec, "op-1", plan, chunk)
    [batch] = _batches(ctx, org_id, "op-1")
    assert batch[1:4] == (2, 2, "applied")
    assert [r["record_index"] for r in _records(ctx, org_id, "op-1")] == [2, 4]


def test_a_batch_delete_with_a_row_gone_meanwhile_deletes_the_others(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    """A row deleted by someone else after the look-up does not sink the chunk's deletes."""
    from bulkops.engine.apply import apply_plan
    from bulkops.engine.chunk import ChunkPlan
    from bulkops.entities import spec_for
    from bulkops.model import RawRecord

    spec = spec_for("products")
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv",
                                                     HEADER + _products(0, 30, "1.00")))
    rows = table(ctx, org_id, "products")
    doomed = rows[:20]
    chunk = [RawRecord(row=i + 2, line=i + 2, values=[r[1]]) for i, r in enumerate(doomed)]
    plan = ChunkPlan(deletes=[(i + 2, r[0], tuple(r[1:])) for i, r in enumerate(doomed)])
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.rows.delete("products", [doomed[5][0]])  # gone before the chunk's batch delete
        apply_plan(tx, spec, "op-del", plan, chunk)
    assert table(ctx, org_id, "products") == rows[20:]
    [batch] = _batches(ctx, org_id, "op-del")
    assert batch[1:4] == (2, 20, "applied")


# -- the records API across batch boundaries --------------------------------------------------


@pytest.fixture
def api(settings: Any) -> Iterator[Api]:
    yield from start_api(settings, worker=False)


def _all_pages(api: Api, op_id: str, limit: int, status: str | None = None) -> list[list[Any]]:
    client = api.client("viewer")
    pages: list[list[Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        response = client.get(f"/api/v1/operations/{op_id}/records", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


def test_the_records_api_pages_across_batches_with_a_cursor_and_a_status(
    api: Api, tmp_path: Path
) -> None:
    ctx, org = api.ctx, api.org_id
    op = run(ctx, org, "import", "products",
             write_csv(tmp_path / "a.csv", HEADER + _products(0, 2500, "1.00")), chunk_size=1000)
    assert len(_batches(ctx, org, op.id)) == 3

    pages = _all_pages(api, op.id, 700, "applied")
    assert [len(p) for p in pages] == [700, 700, 700, 400]
    items = [i for p in pages for i in p]
    assert [i["record_index"] for i in items] == list(range(2, 2502))
    assert items[0]["before_data"] is None and items[0]["after_data"]["sku"] == "P-0000"
    assert set(items[0]) == {"id", "record_index", "entity_id", "action", "before_data",
                             "after_data", "status", "error", "key"}

    # Someone changes a row of the first and of the last chunk: the rollback leaves them.
    run(ctx, org, "update", "products",
        write_csv(tmp_path / "u.csv", "sku,price\nP-0005,9.00\nP-2400,9.00\n"))
    undone = rollback_operation(ctx, org, op.id, user_id=None)
    assert (undone.rolled_back_records, undone.conflict_records) == (2498, 2)
    assert [b[3] for b in _batches(ctx, org, op.id)] == ["conflict", "rolled_back", "conflict"]

    conflicts = _all_pages(api, op.id, 1, "conflict")
    assert [[i["record_index"] for i in p] for p in conflicts] == [[7], [2402]]
    assert all("price" in p[0]["error"] for p in conflicts)
    rolled = [i for p in _all_pages(api, op.id, 300, "rolled_back") for i in p]
    assert len(rolled) == 2498 and {i["record_index"] for i in rolled}.isdisjoint({7, 2402})
    assert [i["id"] for i in rolled] == sorted(i["id"] for i in rolled)
    everything = _all_pages(api, op.id, 1000)
    assert [len(p) for p in everything] == [1000, 1000, 500]
    assert nothing_applied(api, op.id)

    # A forced second rollback retries only the two conflicts.
    forced = rollback_operation(ctx, org, op.id, user_id=None, force=True)
    assert (forced.rolled_back_records, forced.conflict_records) == (2500, 0)
    assert _all_pages(api, op.id, 10, "conflict") == [[]]
    assert [(b[3], b[5]) for b in _batches(ctx, org, op.id)] == [("rolled_back", None)] * 3
    assert table(ctx, org, "products") == []


def nothing_applied(api: Api, op_id: str) -> bool:
    return _all_pages(api, op_id, 100, "applied") == [[]]


# -- migration 0004: per-record rows to batches and back --------------------------------------


def _old_records() -> list[dict[str, Any]]:
    """Two operations as migration 0003 kept them: one half rolled back (with conflicts)."""
    records: list[dict[str, Any]] = []
    for i in range(1200):
        values = {"sku": f"P-{i}", "name": f"N {i}", "description": None, "category": None,
                  "price": "1.00"}
        status, error = ("applied", None) if i < 500 else ("rolled_back", None)
        if i in (600, 1100):
            status, error = "conflict", f"Changed after this operation wrote it ({i})"
        records.append({
            "organization_id": 1, "operation_id": "op-a", "record_index": i + 2,
            "entity_id": i + 1, "action": "create" if i % 2 else "update",
            "before_data": None if i % 2 else orjson.dumps({**values, "price": "0.50"}).decode(),
            "after_data": orjson.dumps(values).decode(), "status": status, "error": error,
        })
    for i in range(3):
        records.append({
            "organization_id": 2, "operation_id": "op-b", "record_index": i + 2,
            "entity_id": 10 + i, "action": "delete",
            "before_data": orjson.dumps({"code": f"W{i}", "name": "Main"}).decode(),
            "after_data": None, "status": "applied", "error": None,
        })
    return records


COLUMNS = ("organization_id", "operation_id", "record_index", "entity_id", "action",
           "before_data", "after_data", "status", "error")


def _old_rows(engine: Any, org: int) -> list[tuple[Any, ...]]:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT set_config('app.current_org', :o, true)"), {"o": str(org)})
        return [
            tuple(r)
            for r in conn.execute(
                text(f"SELECT {', '.join(COLUMNS)} FROM operation_records "
                     "WHERE organization_id = :o ORDER BY id"),
                {"o": org},
            )
        ]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0004_converts_records_to_batches_and_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with owner_database(kind, tmp_path, request) as url:
        engine = create_engine(url, poolclass=NullPool)
        try:
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "0003")
            old = _old_records()
            for org in (1, 2):
                with engine.begin() as conn:
                    if kind == "postgresql":
                        conn.execute(text("SELECT set_config('app.current_org', :o, true)"),
                                     {"o": str(org)})
                    conn.execute(
                        text(f"INSERT INTO operation_records ({', '.join(COLUMNS)}) VALUES "
                             f"({', '.join(':' + c for c in COLUMNS)})"),
                        [r for r in old if r["organization_id"] == org],
                    )
            with engine.begin() as conn:
                command.upgrade(alembic_config(conn), "head")

            # The application (on PostgreSQL its role, through the policies) sees the batches.
            app_url = url if kind == "sqlite" else pg_url(url.rsplit("/", 1)[1],
                                                          user=PG_APP_ROLE)
            store = Store(app_url)
            try:
                with store.transaction(1) as tx:
                    shape = [
                        (b.status, len(b), sorted(b.outcomes))
                        for b in tx.audit.change_batches("op-a", newest_first=False, limit=10)
                    ]
                    records = tx.audit.page("op-a", newest_first=False, limit=10_000)
                    conflicts = tx.audit.page("op-a", newest_first=False, status="conflict")
                    assert tx.audit.change_batches("op-b", newest_first=False) == []  # another org
                with store.transaction(2) as tx:
                    others = tx.audit.page("op-b", newest_first=False)
                    # New batches can be written (the id sequence is granted).
                    tx.audit.insert_changes("op-c", ["code", "name"],
                                      [(2, 5, "create", None, ("X", "Y"))])
            finally:
                store.dispose()
            # 500 applied, then 700 marked records in batches of up to 1000 (never mixed).
            assert shape == [("applied", 500, []), ("conflict", 700, [100, 600])]
            assert [(r["record_index"], r["entity_id"], r["action"], r["before_data"],
                     r["after_data"], r["status"], r["error"]) for r in records] == [
                tuple(o[c] for c in COLUMNS[2:]) for o in old[:1200]]
            assert [r["record_index"] for r in conflicts] == [602, 1102]
            assert [(r["action"], r["before_data"]) for r in others] == [
                (o["action"], o["before_data"]) for o in old[1200:]]

            with engine.begin() as conn:
                command.downgrade(alembic_config(conn), "0003")
            written = (2, "op-c", 2, 5, "create", None, '{"code":"X","name":"Y"}', "applied", None)
            expected = [*(tuple(o[c] for c in COLUMNS) for o in old), written]
            assert _old_rows(engine, 1) + _old_rows(engine, 2) == expected
        finally:
            engine.dispose()


def test_new_rows_and_their_audit_batch_agree_id_for_id_whatever_the_key_order(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    # Keys in no sorted order, chunks of 16 (PostgreSQL's batch insert, whose ids come back
    # matched to the keys); inventory's key has two columns, and an integer beside them.
    skus = [f"S-{(i * 37) % 101:03d}" for i in range(40)]
    products = HEADER + "".join(f"{sku},Part {sku},,cat,1.00\n" for sku in skus)
    run(ctx, org_id, "import", "warehouses",
        write_csv(tmp_path / "w.csv", "code,name\nW-B,Back\nW-A,Front\n"))
    stock = "sku,warehouse_code,quantity\n" + "".join(
        f"{sku},{code},{n}\n" for n, sku in enumerate(reversed(skus)) for code in ("W-B", "W-A")
    )
    for entity, text_, fields in (
        ("products", products, FIELDS),
        ("inventory", stock, ["sku", "warehouse_code", "quantity", "reason", "notes"]),
    ):
        op = run(ctx, org_id, "import", entity, write_csv(tmp_path / f"{entity}.csv", text_),
                 chunk_size=16)
        assert op.created_records == text_.count("\n") - 1
        lines = text_.splitlines()
        stored = {r[0]: r[1:] for r in table(ctx, org_id, entity)}
        seen = []
        for batch in _batches(ctx, org_id, op.id):
            doc = orjson.loads(batch[4])
            assert doc["fields"] == fields and doc["actions"] == "c" * batch[2]
            assert doc["before"] == [None] * batch[2] and batch[1] == doc["rows"][0]
            for row, entity_id, after in zip(doc["rows"], doc["ids"], doc["after"], strict=True):
                # The id is that of the row created from this record of the file.
                assert tuple(after) == stored[entity_id]
                assert lines[row - 1].split(",")[:2] == [str(v) for v in after[:2]]
                seen.append(entity_id)
        assert sorted(seen) == sorted(stored)


def test_new_rows_with_text_beyond_ascii_keep_it_exactly_in_their_audit_batch(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    # Accents, CJK, an emoji (four bytes in UTF-8), a quote and a backslash (escaped in the
    # batch's JSON), in chunks of new rows; the after-images are the rows as stored, the
    # per-record view shows them, and a rollback finds every row unchanged and deletes it.
    names = ["Crème brûlée", "扳手 套装", "Bolt 🔩 M6", 'Tape "heavy"', "Path C:\\tools", "Ünïcödé"]
    products = HEADER + "".join(
        f'S-{i:03d},"{names[i % len(names)].replace(chr(34), chr(34) * 2)} {i}",Déjà vu,cat,1.00\n'
        for i in range(60)
    )
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "p.csv", products),
             chunk_size=25)
    assert op.created_records == 60
    stored = {r[0]: r[1:] for r in table(ctx, org_id, "products")}
    afters = {}
    for batch in _batches(ctx, org_id, op.id):
        doc = orjson.loads(batch[4])
        for entity_id, after in zip(doc["ids"], doc["after"], strict=True):
            afters[entity_id] = tuple(after)
    assert afters == stored
    first = min(stored)
    assert stored[first][1] == "Crème brûlée 0" and stored[first + 3][1] == 'Tape "heavy" 3'
    records = _records(ctx, org_id, op.id)
    assert [orjson.loads(r["after_data"])["name"] for r in records][:6] == [
        f"{name} {i}" for i, name in enumerate(names)
    ]
    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert undone.status == "rolled_back" and undone.rolled_back_records == 60
    assert table(ctx, org_id, "products") == []
