"""Import, update, delete and export through the engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest

from bulkops.engine import Context, execute, write_error_report
from bulkops.errors import FileRejected
from tests.helpers import queue, run, table, write_csv

PRODUCTS = (
    "sku,name,description,category,price\n"
    'A-1,Hammer,"Steel, 500 g",Tools,12.5\n'
    "A-2,Saw,,Tools,20.00\n"
    'A-3,Rake,"A ""garden"" rake",Garden,7\n'
)


def test_import_creates_rows_and_reimport_is_unchanged(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "p.csv", PRODUCTS)
    op = run(ctx, org_id, "import", "products", path)
    assert op.status == "completed"
    assert (op.created_records, op.failed_records, op.total_records) == (3, 0, 3)
    rows = table(ctx, org_id, "products")
    assert [r[1:] for r in rows] == [
        ("A-1", "Hammer", "Steel, 500 g", "Tools", "12.50"),
        ("A-2", "Saw", None, "Tools", "20.00"),
        ("A-3", "Rake", 'A "garden" rake', "Garden", "7.00"),
    ]
    again = run(ctx, org_id, "import", "products", path)
    assert (again.unchanged_records, again.created_records, again.updated_records) == (
        3,
        0,
        0,
    )


def test_import_updates_changed_rows_and_audits_before_and_after(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    changed = PRODUCTS.replace("Saw,,Tools,20.00", "Saw,,Tools,21.00")
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "b.csv", changed))
    assert (op.updated_records, op.unchanged_records) == (1, 2)
    with ctx.store.transaction(org_id) as tx:
        records = tx.audit.page(op.id, newest_first=False)
    assert len(records) == 1
    assert records[0]["record_index"] == 3
    assert '"price":"20.00"' in records[0]["before_data"]
    assert '"price":"21.00"' in records[0]["after_data"]


def test_row_errors_name_row_line_column_and_value(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        "sku,name,description,category,price\n"
        'B-1,Good,"two\nlines",x,1.00\n'
        'B-2,Bad price,,x,"12,50"\n'
        "B-1,Duplicate,,x,3.00\n"
        "B-4,,,x,3.00\n"
    )
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "e.csv", text))
    assert op.status == "completed"
    assert (op.created_records, op.failed_records) == (1, 3)
    report = io.StringIO()
    write_error_report(ctx, org_id, op, report)
    lines = report.getvalue().splitlines()
    assert lines[0] == "_row,_line,_errors,sku,name,description,category,price"
    assert lines[1].startswith("3,4,")
    assert "12,50" in lines[1] and "point" in lines[1]
    assert lines[2].startswith("4,5,") and "row 2" in lines[2]
    assert lines[3].startswith("5,6,") and "required" in lines[3]


def test_error_report_can_be_fixed_and_reimported(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "sku,name,description,category,price\nC-1,Ok,,x,1.00\nC-2,Bad,,x,abc\n"
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "e.csv", text))
    report = io.StringIO()
    write_error_report(ctx, org_id, op, report)
    fixed = report.getvalue().replace(",abc", ",2.00")
    again = run(ctx, org_id, "import", "products", write_csv(tmp_path / "fixed.csv", fixed))
    assert (again.created_records, again.failed_records) == (1, 0)


def test_update_changes_only_present_columns_and_reports_not_found(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    text = "sku,price,category\nA-1,13.00,\nA-9,1.00,x\n"
    op = run(ctx, org_id, "update", "products", write_csv(tmp_path / "u.csv", text))
    assert (op.updated_records, op.failed_records) == (1, 1)
    rows = {r[1]: r[1:] for r in table(ctx, org_id, "products")}
    assert rows["A-1"] == ("A-1", "Hammer", "Steel, 500 g", None, "13.00")
    assert "not found" in str(op.results).lower()


def test_a_record_naming_two_missing_rows_is_told_of_both(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", "code,name\nW1,Main\n"))
    inv = "sku,warehouse_code,quantity\nA-404,W9,5\nA-1,W9,1\nA-1,W1,2\n"
    op = run(ctx, org_id, "import", "inventory", write_csv(tmp_path / "i.csv", inv))
    assert (op.created_records, op.failed_records) == (1, 2)
    report = io.StringIO()
    write_error_report(ctx, org_id, op, report)
    both, warehouse = report.getvalue().splitlines()[1:]
    assert both.startswith("2,2,") and "There is no product with sku 'A-404'" in both
    assert "warehouse_code: There is no warehouse with code 'W9'" in both
    assert warehouse.startswith("3,3,") and "product" not in warehouse
    assert "There is no warehouse with code 'W9'" in warehouse


def test_delete_refuses_products_with_inventory(ctx: Context, org_id: int, tmp_path: Path) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    run(ctx, org_id, "import", "warehouses", write_csv(tmp_path / "w.csv", "code,name\nW1,Main\n"))
    inv = "sku,warehouse_code,quantity\nA-1,W1,5\nA-404,W1,1\n"
    op = run(ctx, org_id, "import", "inventory", write_csv(tmp_path / "i.csv", inv))
    assert (op.created_records, op.failed_records) == (1, 1)
    assert "A-404" in str(op.results)
    delete = run(
        ctx, org_id, "delete", "products", write_csv(tmp_path / "d.csv", "sku\nA-1\nA-2\nA-7\n")
    )
    assert (delete.deleted_records, delete.failed_records) == (1, 2)
    assert "inventory" in str(delete.results)
    assert [r[1] for r in table(ctx, org_id, "products")] == ["A-1", "A-3"]


def test_validate_only_reports_plan_and_changes_nothing(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    before = table(ctx, org_id, "products")
    text = PRODUCTS.replace("Saw,,Tools,20.00", "Saw,,Tools,21.00") + "A-4,New,,x,1.00\nA-5,,,x,1\n"
    op = run(
        ctx, org_id, "import", "products", write_csv(tmp_path / "v.csv", text), validate_only=True
    )
    assert op.status == "completed"
    counts = (
        op.created_records,
        op.updated_records,
        op.unchanged_records,
        op.failed_records,
    )
    assert counts == (1, 1, 2, 1)
    assert table(ctx, org_id, "products") == before


def test_rollback_on_error_applies_nothing_when_a_row_fails(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "sku,name,description,category,price\nD-1,Ok,,x,1.00\nD-2,Bad,,x,-1\n"
    op = run(
        ctx,
        org_id,
        "import",
        "products",
        write_csv(tmp_path / "r.csv", text),
        rollback_on_error=True,
    )
    assert op.status == "rolled_back"
    assert op.failed_records == 1
    assert table(ctx, org_id, "products") == []


def test_export_round_trips_and_neutralises_formulas(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        "sku,name,description,category,price\n"
        'F-1,=HYPERLINK("x"),@risk,-minus,1.00\n'
        "F-2,'=already,+plus,normal,2.00\n"
    )
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "f.csv", text))
    op = run(ctx, org_id, "export", "products")
    assert op.status == "completed" and op.processed_records == 2
    exported = Path(op.file_path).read_text(encoding="utf-8")
    assert "'=HYPERLINK" in exported and "'@risk" in exported and "'-minus" in exported
    again = run(ctx, org_id, "import", "products", Path(op.file_path))
    assert (again.unchanged_records, again.created_records, again.updated_records) == (
        2,
        0,
        0,
    )


def test_a_run_stores_a_few_progress_events_a_second_and_its_caller_sees_each_chunk(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    rows = "".join(f"P-{i:04},Part {i},,Tools,1.00\n" for i in range(600))
    path = write_csv(tmp_path / "p.csv", "sku,name,description,category,price\n" + rows)
    op_id = queue(ctx, org_id, "import", "products", path, chunk_size=5)  # 120 chunks
    seen: list[dict[str, Any]] = []
    started = time.monotonic()
    final = execute(ctx, org_id, op_id, on_progress=seen.append)
    elapsed = time.monotonic() - started
    assert final.created_records == 600
    # The caller (the CLI's progress bar) hears of every chunk.
    applying = [e["processed_records"] for e in seen if e.get("phase") == "applying"]
    assert applying == list(range(5, 601, 5))
    # The stream stores the first chunk's event, then at most one every 0.25 s.
    with ctx.store.transaction(org_id) as tx:
        stored = [e["data"] for e in tx.events.after(op_id, 0, 100_000) if e["event"] == "progress"]
    interval = ctx.settings.progress_event_seconds
    assert interval == 0.25
    assert stored[0]["processed_records"] == 5
    assert len(stored) <= 2 + elapsed / interval, (len(stored), elapsed)
    assert len(stored) < len(applying)
    counts = [e["processed_records"] for e in stored]
    assert counts == sorted(counts) and set(counts) <= set(applying)


def test_chunks_and_max_errors(ctx: Context, org_id: int, tmp_path: Path) -> None:
    rows = "".join(f"G-{i},Name {i},,x,{'bad' if i % 2 else '1.00'}\n" for i in range(40))
    op = run(
        ctx,
        org_id,
        "import",
        "products",
        write_csv(tmp_path / "m.csv", "sku,name,description,category,price\n" + rows),
        chunk_size=5,
        max_errors=6,
    )
    assert op.status == "failed"
    assert op.failed_records == 7  # 2 + 3 + 2: stops after the chunk that passed 6
    assert op.processed_records == 15


def test_bad_header_rejects_file_before_anything_exists(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    with pytest.raises(FileRejected) as caught:
        run(
            ctx,
            org_id,
            "import",
            "products",
            write_csv(tmp_path / "h.csv", "sku,nmae,sku\nx,y,z\n"),
        )
    text = str(caught.value)
    assert "nmae" in text and "name" in text
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.list() == []


def test_organizations_do_not_see_each_other(ctx: Context, org_id: int, tmp_path: Path) -> None:
    from bulkops.engine import create_organization

    other = create_organization(ctx.store, "other", "Other")
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    op = run(ctx, other, "import", "products", write_csv(tmp_path / "b.csv", PRODUCTS))
    assert op.created_records == 3  # same skus, another organization
    assert len(table(ctx, org_id, "products")) == 3
    with ctx.store.transaction(other) as tx:
        assert len(tx.operations.list()) == 1


def test_a_record_the_database_refuses_fails_alone_with_its_row(ctx: Context, org_id: int) -> None:
    """When a batched write hits a constraint, records are retried one by one (savepoints)."""
    from bulkops.engine.apply import apply_plan
    from bulkops.engine.chunk import ChunkPlan
    from bulkops.entities import spec_for
    from bulkops.model import RawRecord

    spec = spec_for("products")
    chunk = [
        RawRecord(row=2, line=2, values=["K-1", "One", "", "", "1.00"]),
        RawRecord(row=3, line=4, values=["K-2", "Two", "", "", "2.00"]),
    ]
    plan = ChunkPlan(
        creates=[(2, ("K-1", "One", None, None, "1.00")), (3, ("K-2", "Two", None, None, "2.00"))]
    )
    with ctx.store.transaction(org_id, write=True) as tx:
        # Someone else created K-2 after the chunk was decided.
        tx.rows.insert("products", spec.field_names, [("K-2", "Other", None, None, "9.00")])
        apply_plan(tx, spec, "op-1", plan, chunk)
    assert [row for row, _ in plan.creates] == [2]
    [(raw, errors)] = plan.failures
    assert (raw.row, raw.line, errors[0].line) == (3, 4, 4)
    assert "refused" in errors[0].message
    assert sorted(r[1:3] for r in table(ctx, org_id, "products")) == [
        ("K-1", "One"),
        ("K-2", "Other"),
    ]


def test_a_batch_refused_without_its_savepoint_asks_for_the_chunk_again(
    ctx: Context, org_id: int
) -> None:
    from bulkops.engine.apply import BatchRefused, apply_plan
    from bulkops.engine.chunk import ChunkPlan
    from bulkops.entities import spec_for
    from bulkops.model import RawRecord

    spec = spec_for("products")
    chunk = [RawRecord(row=2, line=2, values=["K-2", "Two", "", "", "2.00"])]
    plan = ChunkPlan(creates=[(2, ("K-2", "Two", None, None, "2.00"))])
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.rows.insert("products", spec.field_names, [("K-2", "Other", None, None, "9.00")])
    with pytest.raises(BatchRefused), ctx.store.transaction(org_id, write=True) as tx:
        apply_plan(tx, spec, "op-1", plan, chunk, careful=False)
    # The plan is untouched, ready for the careful second try.
    assert [row for row, _ in plan.creates] == [2] and plan.failures == []
    assert [r[1:3] for r in table(ctx, org_id, "products")] == [("K-2", "Other")]


def test_a_file_over_the_row_limit_is_refused_before_anything_changes(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    small = Context(ctx.store, ctx.settings.model_copy(update={"max_rows": 5}))
    rows = "".join(f"R-{i},Name {i},,x,1.00\n" for i in range(8))
    path = write_csv(tmp_path / "big.csv", "sku,name,description,category,price\n" + rows)
    with pytest.raises(FileRejected) as caught:
        run(small, org_id, "import", "products", path, chunk_size=2)
    assert "5" in str(caught.value)
    assert table(ctx, org_id, "products") == []
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.list() == []
    within = "sku,name,description,category,price\n" + rows[: rows.index("R-5")]
    ok = run(small, org_id, "import", "products", write_csv(tmp_path / "ok.csv", within))
    assert ok.created_records == 5


def test_a_fault_half_way_ends_the_operation_as_failed_with_the_reason(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    from bulkops.engine import create_operation, execute, get_operation
    from bulkops.engine.operations import OperationConfig
    from bulkops.model import EntityType, OperationType

    op = create_operation(
        ctx,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=OperationConfig(),
        source=write_csv(tmp_path / "p.csv", PRODUCTS),
    )
    Path(op.file_path).unlink()  # the stored file is lost before a worker runs it
    with pytest.raises(FileNotFoundError):
        execute(ctx, org_id, op.id)
    failed = get_operation(ctx, org_id, op.id)
    assert failed.status == "failed" and failed.lease_owner is None
    assert "FileNotFoundError" in str(failed.results)


def test_an_import_into_an_empty_table_still_refuses_a_row_written_behind_its_back(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    """The first import of an entity skips the look-up of current rows (there are none);
    a row someone writes into the table meanwhile is still caught by the unique key."""
    from bulkops.engine import create_operation, execute
    from bulkops.engine.operations import OperationConfig
    from bulkops.entities import spec_for
    from bulkops.model import EntityType, OperationType

    rows = "".join(f"E-{i:03d},Name {i},,x,1.00\n" for i in range(50))
    path = write_csv(tmp_path / "p.csv", "sku,name,description,category,price\n" + rows)
    op = create_operation(
        ctx,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=OperationConfig(chunk_size=10),
        source=path,
    )
    fields = spec_for("products").field_names

    def sneak_in(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] == 10:
            with ctx.store.transaction(org_id, write=True) as tx:
                tx.rows.insert("products", fields, [("E-040", "Sneaked", None, None, "2.00")])

    final = execute(ctx, org_id, op.id, on_progress=sneak_in)
    assert final.status == "completed"
    assert (final.created_records, final.failed_records) == (49, 1)
    with ctx.store.transaction(org_id) as tx:
        [error] = tx.audit.iter_errors(op.id)
        audit = tx.audit.page(op.id, newest_first=False, limit=1000)
        chunks = tx.ledger.committed(op.id, "apply")
    assert error["row"] == 42 and "refused" in error["errors"][0]["message"]
    assert [r[2] for r in table(ctx, org_id, "products") if r[1] == "E-040"] == ["Sneaked"]
    # The refused chunk was applied again from the start: nothing of the first try is left.
    assert sorted(r["record_index"] for r in audit) == [i for i in range(2, 52) if i != 42]
    assert len(chunks) == 5
    # A second import of the same file is not an import into an empty table any more.
    again = run(ctx, org_id, "import", "products", path, chunk_size=10)
    assert (again.unchanged_records, again.updated_records) == (49, 1)
