"""Undo you can trust: rollback, conflicts, one writer per entity (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from bulkops.engine import (
    Context,
    OperationConfig,
    create_operation,
    create_organization,
    execute,
    get_operation,
    request_cancel,
    rollback_operation,
    write_conflict_report,
)
from bulkops.engine.scheduling import try_start
from bulkops.errors import Conflict
from bulkops.model import EntityType, OperationStatus, OperationType
from tests.helpers import checksum, run, table, write_csv

PRODUCTS = (
    "sku,name,description,category,price\n"
    "A-1,Hammer,\"Steel, 500 g\",Tools,12.5\n"
    "A-2,Saw,,Tools,20.00\n"
    "A-3,Rake,\"A \"\"garden\"\" rake\",Garden,7\n"
)
WAREHOUSES = "code,name\nW1,Main\nW2,Second\nW3,Third\n"


def _events(ctx: Context, org_id: int, op_id: str) -> list[dict[str, Any]]:
    with ctx.store.transaction(org_id) as tx:
        return tx.events.after(op_id, 0, limit=100_000)


def _audit(ctx: Context, org_id: int, op_id: str) -> list[dict[str, Any]]:
    with ctx.store.transaction(org_id) as tx:
        return tx.audit.page(op_id, newest_first=False, limit=100_000)


def _by_key(ctx: Context, org_id: int, entity: str) -> dict[Any, tuple[Any, ...]]:
    return {r[1]: r for r in table(ctx, org_id, entity)}


# -- 1. what a rollback restores ----------------------------------------------------------------


def test_rollback_restores_creates_updates_and_deletes_with_same_ids(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    before_import = table(ctx, org_id, "products")
    changed = (
        PRODUCTS.replace("Saw,,Tools,20.00", "Saw,Sharp,Tools,21.00")
        + "A-4,Spade,,Garden,9.99\n"
    )
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "b.csv", changed))
    assert (op.created_records, op.updated_records, op.unchanged_records) == (1, 1, 2)
    after_import = table(ctx, org_id, "products")

    delete = run(ctx, org_id, "delete", "products",
                 write_csv(tmp_path / "d.csv", "sku\nA-1\nA-4\n"))
    assert delete.deleted_records == 2
    assert [r[1] for r in table(ctx, org_id, "products")] == ["A-2", "A-3"]

    undone = rollback_operation(ctx, org_id, delete.id, user_id=None)
    assert undone.status == "rolled_back"
    assert (undone.rolled_back_records, undone.conflict_records) == (2, 0)
    assert table(ctx, org_id, "products") == after_import  # same ids, same values

    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert undone.status == "rolled_back"
    assert (undone.rolled_back_records, undone.conflict_records) == (2, 0)
    rows = table(ctx, org_id, "products")
    assert rows == before_import
    assert _by_key(ctx, org_id, "products")["A-2"][1:] == ("A-2", "Saw", None, "Tools", "20.00")
    assert {r["status"] for r in _audit(ctx, org_id, op.id)} == {"rolled_back"}
    results = undone.results
    assert results["rollback"]["restored_records"] == 2
    assert results["rollback"]["conflict_records"] == 0


def test_rollback_goes_newest_first_through_rolling_back_with_progress_events(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    before = checksum(ctx, org_id)
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS),
             chunk_size=1, max_concurrent=1)
    ctx.settings.rollback_batches = 1  # one batch a transaction, one at a time: the order
    seen: list[tuple[str, list[str]]] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("phase") == "rolling_back":
            status = get_operation(ctx, org_id, op.id).status
            seen.append((status, [r[1] for r in table(ctx, org_id, "products")]))

    undone = rollback_operation(ctx, org_id, op.id, user_id=None, on_progress=on_progress)
    assert undone.status == "rolled_back"
    # One chunk (of one record) at a time, the last record of the file first.
    assert seen == [
        ("rolling_back", ["A-1", "A-2"]),
        ("rolling_back", ["A-1"]),
        ("rolling_back", []),
    ]
    assert checksum(ctx, org_id) == before

    events = _events(ctx, org_id, op.id)
    names = [e["event"] for e in events]
    first_rb = names.index("rollback-progress")
    assert {"event": "status", "status": "rolling_back"} in [
        {"event": e["event"], **e["data"]} for e in events[:first_rb]
        if e["event"] == "status"
    ]
    progress = [e["data"] for e in events if e["event"] == "rollback-progress"]
    assert [p["processed_records"] for p in progress] == [1, 2, 3]
    assert [p["rolled_back_records"] for p in progress] == [1, 2, 3]
    assert progress[-1]["percentage"] == 100.0
    assert all(p["total_records"] == 3 and "rate" in p for p in progress)
    assert names[-1] == "done" and events[-1]["data"]["status"] == "rolled_back"
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_a_rollback_restores_ten_batches_a_transaction_by_default(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    before = checksum(ctx, org_id)
    rows = "".join(f"G-{i:02},Gauge {i},,Tools,1.00\n" for i in range(25))
    path = write_csv(tmp_path / "g.csv", "sku,name,description,category,price\n" + rows)
    op = run(ctx, org_id, "import", "products", path, chunk_size=1)  # 25 batches
    left: list[int] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("phase") == "rolling_back":
            left.append(len(table(ctx, org_id, "products")))

    undone = rollback_operation(ctx, org_id, op.id, user_id=None, on_progress=on_progress)
    assert (undone.status, undone.rolled_back_records) == ("rolled_back", 25)
    assert checksum(ctx, org_id) == before
    # Ten batches, ten more, then the last five: three transactions, each with one ledger
    # row (its records) and one progress event. On PostgreSQL two of them are in flight at
    # a time (max_concurrent), so a progress event may come after both committed.
    assert left[-1] == 0 and left == sorted(left, reverse=True)
    assert left == [15, 5, 0] or ctx.store.dialect.concurrent_writers
    with ctx.store.transaction(org_id) as tx:
        assert tx.ledger.committed(op.id, "rollback") == {0: 10, 1: 10, 2: 5}
    progress = [e["data"] for e in _events(ctx, org_id, op.id)
                if e["event"] == "rollback-progress"]
    counts = [p["rolled_back_records"] for p in progress]
    # Each event carries the counters as its transaction left them: they only grow, whatever
    # order the groups in flight commit in.
    assert len(counts) == 3 and counts == sorted(counts) and counts[-1] == 25
    assert counts == [10, 20, 25] or ctx.store.dialect.concurrent_writers
    assert {r["status"] for r in _audit(ctx, org_id, op.id)} == {"rolled_back"}


@pytest.mark.parametrize("ending", ["completed", "failed", "cancelled"])
def test_completed_failed_and_cancelled_operations_can_be_rolled_back(
    ctx: Context, org_id: int, tmp_path: Path, ending: str
) -> None:
    run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    before = checksum(ctx, org_id)
    rows = "".join(
        f"W{i},Name {i}\n" if ending != "failed" or i % 2 else f"W{i},\n" for i in range(2, 40)
    )
    path = write_csv(tmp_path / "x.csv", "code,name\n" + rows)
    if ending == "cancelled":
        op = create_operation(ctx, org_id, operation_type=OperationType.IMPORT,
                              entity_type=EntityType.WAREHOUSES,
                              config=OperationConfig(chunk_size=5), source=path)

        def cancel_after_first(event: dict[str, Any]) -> None:
            if event.get("phase") == "applying":
                request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)

        op = execute(ctx, org_id, op.id, on_progress=cancel_after_first)
    else:
        op = run(ctx, org_id, "import", "warehouses", path, chunk_size=5, max_errors=3)
    assert op.status == ending
    assert op.created_records + op.updated_records > 0
    assert checksum(ctx, org_id) != before
    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert undone.status == "rolled_back"
    assert undone.rolled_back_records == op.created_records + op.updated_records
    assert undone.conflict_records == 0
    assert checksum(ctx, org_id) == before


# -- 2. conflicts --------------------------------------------------------------------------------


def test_rows_changed_since_are_conflicts_not_overwritten_and_listed(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    later = run(ctx, org_id, "update", "products",
                write_csv(tmp_path / "u.csv", "sku,price\nA-2,25.00\n"))
    assert later.updated_records == 1

    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert undone.status == "rolled_back"
    assert (undone.rolled_back_records, undone.conflict_records) == (2, 1)
    rows = _by_key(ctx, org_id, "products")
    assert list(rows) == ["A-2"]
    assert rows["A-2"][1:] == ("A-2", "Saw", None, "Tools", "25.00")  # the later change stays

    records = {r["record_index"]: r for r in _audit(ctx, org_id, op.id)}
    assert records[3]["status"] == "conflict"
    assert "price" in records[3]["error"] and "force" in records[3]["error"].lower()
    assert records[2]["status"] == records[4]["status"] == "rolled_back"

    report = io.StringIO()
    assert write_conflict_report(ctx, org_id, undone, report) == 1
    lines = report.getvalue().splitlines()
    assert lines[0].startswith("_row,_key,_entity_id,_action,_conflict,sku,")
    assert len(lines) == 2 and lines[1].startswith(f"3,A-2,{rows['A-2'][0]},create,")
    assert "A-2" in lines[1]

    # A second rollback is allowed only to force the conflicts through.
    with pytest.raises(Conflict) as caught:
        rollback_operation(ctx, org_id, op.id, user_id=None)
    assert "already rolled back" in str(caught.value) and "--force" in str(caught.value)
    forced = rollback_operation(ctx, org_id, op.id, user_id=None, force=True)
    assert forced.status == "rolled_back"
    assert (forced.rolled_back_records, forced.conflict_records) == (3, 0)
    assert table(ctx, org_id, "products") == []
    with pytest.raises(Conflict):
        rollback_operation(ctx, org_id, op.id, user_id=None, force=True)


def test_forced_rollback_overwrites_later_changes(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    before = checksum(ctx, org_id)
    op = run(ctx, org_id, "update", "products",
             write_csv(tmp_path / "u.csv", "sku,price\nA-1,1.00\nA-2,2.00\n"))
    run(ctx, org_id, "update", "products", write_csv(tmp_path / "v.csv", "sku,name\nA-1,Mallet\n"))
    forced = rollback_operation(ctx, org_id, op.id, user_id=None, force=True)
    assert (forced.status, forced.rolled_back_records, forced.conflict_records) == (
        "rolled_back", 2, 0)
    assert checksum(ctx, org_id) == before  # the name change of the later update is gone too


def test_deleted_since_and_recreated_since_are_conflicts(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    update = run(ctx, org_id, "update", "products",
                 write_csv(tmp_path / "u.csv", "sku,price\nA-1,1.00\nA-2,2.00\n"))
    delete = run(ctx, org_id, "delete", "products", write_csv(tmp_path / "d.csv", "sku\nA-3\n"))
    # Later: A-1 is deleted (after the update wrote it), A-3 comes back with a new id.
    run(ctx, org_id, "delete", "products", write_csv(tmp_path / "d2.csv", "sku\nA-1\n"))
    run(ctx, org_id, "import", "products",
        write_csv(tmp_path / "b.csv", "sku,name,description,category,price\nA-3,New rake,,,8\n"))
    state = table(ctx, org_id, "products")

    undone = rollback_operation(ctx, org_id, update.id, user_id=None)
    assert (undone.rolled_back_records, undone.conflict_records) == (1, 1)
    rows = _by_key(ctx, org_id, "products")
    assert "A-1" not in rows and rows["A-2"][5] == "20.00"
    conflict = [r for r in _audit(ctx, org_id, update.id) if r["status"] == "conflict"]
    assert len(conflict) == 1 and "deleted" in conflict[0]["error"]

    undone = rollback_operation(ctx, org_id, delete.id, user_id=None)
    assert (undone.status, undone.rolled_back_records, undone.conflict_records) == (
        "rolled_back", 0, 1)
    assert _by_key(ctx, org_id, "products")["A-3"] == next(r for r in state if r[1] == "A-3")


def test_rolling_back_what_a_later_operation_depends_on_reports_conflicts(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    products = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    run(ctx, org_id, "import", "inventory",
        write_csv(tmp_path / "i.csv", "sku,warehouse_code,quantity\nA-1,W1,5\nA-3,W2,1\n"))
    run(ctx, org_id, "import", "pricing",
        write_csv(tmp_path / "p.csv", "sku,price_tier,price\nA-3,gold,1.00\n"))
    inventory_before = table(ctx, org_id, "inventory")

    undone = rollback_operation(ctx, org_id, products.id, user_id=None)
    assert undone.status == "rolled_back"
    assert (undone.rolled_back_records, undone.conflict_records) == (1, 2)
    assert [r[1] for r in table(ctx, org_id, "products")] == ["A-1", "A-3"]
    assert table(ctx, org_id, "inventory") == inventory_before
    report = io.StringIO()
    assert write_conflict_report(ctx, org_id, undone, report) == 2
    assert "A-1" in report.getvalue() and "A-3" in report.getvalue()


def test_a_large_batch_is_undone_at_once_and_still_names_each_conflict(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    # Enough records for PostgreSQL's one-statement delete of the unchanged rows; the prices
    # are written in several forms, which the audit keeps canonical.
    forms = ("{}.5", "{}", "{}.50", "{}.0")
    rows = "".join(
        f"B-{i:02d},Item {i},\"Text, {i}\",Tools,\"{forms[i % 4].format(i)}\"\n"
        for i in range(12)
    )
    op = run(ctx, org_id, "import", "products",
             write_csv(tmp_path / "a.csv", "sku,name,description,category,price\n" + rows))
    assert op.created_records == 12
    run(ctx, org_id, "update", "products",
        write_csv(tmp_path / "u.csv", "sku,name\nB-03,Renamed\n"))
    run(ctx, org_id, "delete", "products", write_csv(tmp_path / "d.csv", "sku\nB-05\n"))
    run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    run(ctx, org_id, "import", "inventory",
        write_csv(tmp_path / "i.csv", "sku,warehouse_code,quantity\nB-07,W1,5\n"))

    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert undone.status == "rolled_back"
    assert (undone.rolled_back_records, undone.conflict_records) == (9, 3)
    assert sorted(_by_key(ctx, org_id, "products")) == ["B-03", "B-07"]
    # Rows 5, 7 and 9 of the file hold B-03, B-05 and B-07.
    audit = _audit(ctx, org_id, op.id)
    errors = {r["record_index"]: r["error"] for r in audit if r["status"] == "conflict"}
    assert sorted(errors) == [5, 7, 9]
    assert "(name)" in errors[5] and "force" in errors[5].lower()
    assert "deleted" in errors[7]
    assert "refused" in errors[9]
    assert sum(r["status"] == "rolled_back" for r in audit) == 9
    # On PostgreSQL the batch's statement was refused once (B-07 is used) and the batch went
    # again: one ledger row and one progress event, nothing of the first try.
    with ctx.store.transaction(org_id) as tx:
        assert tx.ledger.committed(op.id, "rollback") == {0: 12}
    progress = [e for e in _events(ctx, org_id, op.id) if e["event"] == "rollback-progress"]
    assert [(e["data"]["rolled_back_records"], e["data"]["conflict_records"])
            for e in progress] == [(9, 3)]


# -- 3. refusals ----------------------------------------------------------------------------------


def test_rolling_back_twice_is_refused_with_a_clear_message(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    rollback_operation(ctx, org_id, op.id, user_id=None)
    events = len(_events(ctx, org_id, op.id))
    with pytest.raises(Conflict) as caught:
        rollback_operation(ctx, org_id, op.id, user_id=None)
    message = str(caught.value)
    assert op.id in message and "already rolled back" in message
    assert "would undo nothing" in message
    with pytest.raises(Conflict):
        rollback_operation(ctx, org_id, op.id, user_id=None, force=True)
    after = get_operation(ctx, org_id, op.id)
    assert (after.status, after.rolled_back_records) == ("rolled_back", 3)
    assert len(_events(ctx, org_id, op.id)) == events


def test_pending_running_and_export_operations_cannot_be_rolled_back(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    pending = create_operation(ctx, org_id, operation_type=OperationType.UPDATE,
                               entity_type=EntityType.PRODUCTS, config=OperationConfig(),
                               source=write_csv(tmp_path / "u.csv", "sku,price\nA-1,1\n"))
    with pytest.raises(Conflict) as caught:
        rollback_operation(ctx, org_id, pending.id, user_id=None)
    assert "pending" in str(caught.value) and "cancel" in str(caught.value)
    assert try_start(
        ctx.store, org_id, pending.id, "other-process", 30, status=OperationStatus.PROCESSING
    )
    with pytest.raises(Conflict) as caught:
        rollback_operation(ctx, org_id, pending.id, user_id=None)
    assert "processing" in str(caught.value)
    export = run(ctx, org_id, "export", "products")
    with pytest.raises(Conflict) as caught:
        rollback_operation(ctx, org_id, export.id, user_id=None)
    assert "export" in str(caught.value).lower()


# -- 6. checksum before == checksum after rollback, for every entity and operation --------------

PREREQUISITES = {
    "products": "sku,name,description,category,price\n"
    "A-1,Hammer,,Tools,12.50\nA-2,Saw,,Tools,20.00\nA-3,Rake,,Garden,7.00\n",
    "warehouses": "code,name\nW1,Main\nW2,Second\n",
}

CASES: dict[str, dict[str, str]] = {
    "warehouses": {
        "base": "code,name\nW1,Main\nW2,Second\nW3,Third\n",
        "import": "code,name\nW1,Main\nW2,Second renamed\nW4,New\nW5,Newer\n",
        "update": "code,name\nW3,Third renamed\nW1,Main renamed\n",
        "delete": "code\nW2\nW3\n",
    },
    "products": {
        "base": PRODUCTS,
        "import": "sku,name,description,category,price\n"
        "A-1,Hammer,,Tools,13.00\nA-2,Saw,,Tools,20.00\nA-4,Spade,,Garden,9.99\n"
        "A-5,Hoe,Long,Garden,4\n",
        "update": "sku,price,category\nA-1,13.00,\nA-3,1.00,Sale\n",
        "delete": "sku\nA-1\nA-3\n",
    },
    "inventory": {
        "base": "sku,warehouse_code,quantity,reason,notes\n"
        "A-1,W1,5,,\nA-2,W1,3,initial,\nA-1,W2,7,,note\n",
        "import": "sku,warehouse_code,quantity,reason,notes\n"
        "A-1,W1,6,count,\nA-2,W1,3,initial,\nA-3,W2,1,,\nA-3,W1,0,,\n",
        "update": "sku,warehouse_code,quantity,notes\nA-2,W1,0,\nA-1,W2,8,recount\n",
        "delete": "sku,warehouse_code\nA-1,W1\nA-1,W2\n",
    },
    "pricing": {
        "base": "sku,price_tier,price,min_quantity\n"
        "A-1,standard,10.00,1\nA-1,wholesale,8.00,10\nA-2,standard,5,\n",
        "import": "sku,price_tier,price,min_quantity\n"
        "A-1,standard,11.00,1\nA-1,wholesale,8.00,10\nA-3,gold,3.50,1\nA-3,gold,3.00,100\n",
        "update": "sku,price_tier,min_quantity,price\nA-2,standard,1,4.00\nA-1,wholesale,10,7\n",
        "delete": "sku,price_tier,min_quantity\nA-1,wholesale,10\nA-2,standard,1\n",
    },
    "customers": {
        "base": "email,name,company,price_tier\n"
        "ann@example.com,Ann,Acme,\nBob@Example.com,Bob,,wholesale\ncy@example.org,Cy,,\n",
        "import": "email,name,company,price_tier\n"
        "ANN@example.com,Ann B,Acme,\ncarl@example.com,Carl,,\ncy@example.org,Cy,,\n",
        "update": "email,company\nbob@example.com,Bobco\nann@EXAMPLE.com,\n",
        "delete": "email\nann@example.com\nCY@example.org\n",
    },
}


@pytest.mark.parametrize("operation", ["import", "update", "delete"])
@pytest.mark.parametrize("entity", list(CASES))
def test_rollback_restores_the_exact_checksum(
    ctx: Context, org_id: int, tmp_path: Path, entity: str, operation: str
) -> None:
    if entity in ("inventory", "pricing"):
        for name in ("products", "warehouses"):
            run(ctx, org_id, "import", name,
                write_csv(tmp_path / f"{name}.csv", PREREQUISITES[name]))
    base = run(ctx, org_id, "import", entity,
               write_csv(tmp_path / "base.csv", CASES[entity]["base"]))
    assert base.status == "completed" and base.failed_records == 0, base.results
    before = checksum(ctx, org_id)

    op = run(ctx, org_id, operation, entity,
             write_csv(tmp_path / f"{operation}.csv", CASES[entity][operation]), chunk_size=2)
    assert op.status == "completed" and op.failed_records == 0, op.results
    changed = op.created_records + op.updated_records + op.deleted_records
    assert changed >= 2
    assert checksum(ctx, org_id) != before

    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert undone.status == "rolled_back"
    assert (undone.rolled_back_records, undone.conflict_records) == (changed, 0)
    assert checksum(ctx, org_id) == before


# -- 7. one writer per (organization, entity) ---------------------------------------------------


def _queue(ctx: Context, org_id: int, entity: str, path: Path) -> dict[str, Any]:
    return create_operation(ctx, org_id, operation_type=OperationType.IMPORT,
                            entity_type=EntityType(entity), config=OperationConfig(), source=path)


def test_one_writer_per_organization_and_entity(ctx: Context, org_id: int, tmp_path: Path) -> None:
    products = write_csv(tmp_path / "p.csv", PRODUCTS)
    first = _queue(ctx, org_id, "products", products)
    second = _queue(ctx, org_id, "products", write_csv(tmp_path / "q.csv", PRODUCTS.replace(
        "12.5", "13")))
    assert try_start(
        ctx.store, org_id, first.id, "other-process", 30, status=OperationStatus.PROCESSING
    )

    # The second waits as pending, whoever asks.
    assert not try_start(ctx.store, org_id, second.id, "me", 30, status=OperationStatus.PROCESSING)
    waits: list[int] = []

    def give_up() -> bool:
        waits.append(1)
        return False

    stays = execute(ctx, org_id, second.id, wait=give_up)
    assert stays.status == "pending" and waits == [1]
    assert table(ctx, org_id, "products") == []

    # Another entity, and the same entity of another organization, are not held up.
    warehouses = run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    assert warehouses.status == "completed"
    other_org = create_organization(ctx.store, "other", "Other")
    other = run(ctx, other_org, "import", "products", products)
    assert (other.status, other.created_records) == ("completed", 3)

    # A third, queued later, does not jump the queue once the first has ended.
    third = _queue(ctx, org_id, "products", products)
    done = execute(ctx, org_id, first.id, owner="other-process")
    assert (done.status, done.created_records) == ("completed", 3)
    assert not try_start(ctx.store, org_id, third.id, "me", 30, status=OperationStatus.PROCESSING)
    assert get_operation(ctx, org_id, third.id).status == "pending"
    second_done = execute(ctx, org_id, second.id)
    assert (second_done.status, second_done.updated_records) == ("completed", 1)
    third_done = execute(ctx, org_id, third.id)
    assert (third_done.status, third_done.updated_records) == ("completed", 1)


def test_a_dead_writers_lease_expires(ctx: Context, org_id: int, tmp_path: Path) -> None:
    products = write_csv(tmp_path / "p.csv", PRODUCTS)
    first = _queue(ctx, org_id, "products", products)
    second = _queue(ctx, org_id, "products", products)
    assert try_start(
        ctx.store, org_id, first.id, "dead-process", -1, status=OperationStatus.PROCESSING
    )
    # The first holder's lease has already expired: the line is free again.
    assert try_start(ctx.store, org_id, second.id, "me", 30, status=OperationStatus.PROCESSING)


def test_rollback_waits_for_the_running_writer_of_its_entity(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    later = _queue(ctx, org_id, "products", write_csv(tmp_path / "b.csv", "sku,name\nA-9,New\n"))
    assert try_start(
        ctx.store, org_id, later.id, "other-process", 30, status=OperationStatus.PROCESSING
    )
    assert not try_start(ctx.store, org_id, op.id, "me", 30, status=OperationStatus.ROLLING_BACK)
    assert get_operation(ctx, org_id, op.id).status == "completed"


def test_forced_rollback_of_rows_the_database_refuses_still_ends(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    products = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", WAREHOUSES))
    run(ctx, org_id, "import", "inventory",
        write_csv(tmp_path / "i.csv", "sku,warehouse_code,quantity\nA-1,W1,5\n"))
    first = rollback_operation(ctx, org_id, products.id, user_id=None)
    assert (first.rolled_back_records, first.conflict_records) == (2, 1)
    # Forcing cannot delete a product that inventory still refers to: still a conflict, and
    # the forced rollback ends (it used to fetch the same conflict page forever).
    forced = rollback_operation(ctx, org_id, products.id, user_id=None, force=True)
    assert (forced.status, forced.rolled_back_records, forced.conflict_records) == (
        "rolled_back", 2, 1)
    assert [r[1] for r in table(ctx, org_id, "products")] == ["A-1"]
    conflict = [r for r in _audit(ctx, org_id, products.id) if r["status"] == "conflict"]
    assert len(conflict) == 1 and "refused" in conflict[0]["error"]


def test_rolling_back_later_operations_first_leaves_no_conflicts(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    before = checksum(ctx, org_id)
    first = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    second = run(ctx, org_id, "update", "products",
                 write_csv(tmp_path / "u.csv", "sku,price,name\nA-1,1.00,Mallet\nA-3,2,Fork\n"))
    third = run(ctx, org_id, "delete", "products", write_csv(tmp_path / "d.csv", "sku\nA-3\n"))
    for op, restored in ((third, 1), (second, 2), (first, 3)):
        undone = rollback_operation(ctx, org_id, op.id, user_id=None)
        assert (undone.status, undone.rolled_back_records, undone.conflict_records) == (
            "rolled_back", restored, 0)
    assert checksum(ctx, org_id) == before


def test_a_rollback_that_is_running_elsewhere_is_refused(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    assert try_start(
        ctx.store, org_id, op.id, "other-process", 30, status=OperationStatus.ROLLING_BACK
    )
    with pytest.raises(Conflict) as caught:
        rollback_operation(ctx, org_id, op.id, user_id=None)
    assert "already being rolled back" in str(caught.value)
    assert len(table(ctx, org_id, "products")) == 3


def test_a_cancel_stops_a_rollback_within_one_transaction_and_a_new_rollback_goes_on(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    rows = "".join(f"C-{i},Chisel {i},,Tools,1.00\n" for i in range(100))
    path = write_csv(tmp_path / "p.csv", "sku,name,description,category,price\n" + rows)
    # 50 batches of 2 records: a rollback transaction restores ten of them, 20 records.
    op = run(ctx, org_id, "import", "products", path, chunk_size=2)
    batches: list[int] = []

    def cancel_after_the_second(event: dict[str, Any]) -> None:
        if event.get("phase") == "rolling_back":
            batches.append(event["rolled_back_records"])
            if len(batches) == 2:
                request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)

    stopped = rollback_operation(
        ctx, org_id, op.id, user_id=None, on_progress=cancel_after_the_second
    )

    assert stopped.status is OperationStatus.CANCELLED
    restored = stopped.rolled_back_records
    assert stopped.results["rollback"]["stopped"]
    # The counts shown only grow, a group of 20 records at a time, up to what was restored.
    assert batches == sorted(set(batches)) and batches[-1] == restored
    assert all(count % 20 == 0 for count in batches)
    # No group starts after the cancel. SQLite restores one group at a time: the cancel came
    # after the second. On PostgreSQL (max_concurrent 2) at most the one group in flight
    # beside the one shown commits after it (groups commit in any order, and a count
    # overtaken by a larger one is not shown, so the second count shown may be 40 or more).
    if ctx.store.dialect.concurrent_writers:
        assert restored - batches[1] <= 20
    else:
        assert batches == [20, 40] and restored == 40
    assert len(table(ctx, org_id, "products")) == 100 - restored
    with pytest.raises(Conflict):
        request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)  # it has ended

    done = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert (done.status, done.rolled_back_records) == (OperationStatus.ROLLED_BACK, 100)
    assert table(ctx, org_id, "products") == []
