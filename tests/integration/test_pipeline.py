"""The file read and checked in a second process while the first one writes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkops.engine import Context, OperationConfig, create_operation, execute, request_cancel
from bulkops.errors import FileRejected
from bulkops.model import EntityType, OperationType
from tests.helpers import run, table, write_csv

HEADER = "sku,name,description,category,price\n"


def children() -> set[int]:
    """Processes whose parent is this one."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == os.getpid():
                found.add(int(entry.name))
    return found


def with_reader(ctx: Context, background: bool) -> Context:
    return Context(ctx.store, ctx.settings.model_copy(update={"read_in_background": background}))


def test_a_reader_process_gives_the_same_result_as_one_process(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    from bulkops.engine import create_organization

    rows = [f"S-{i:04d},Name {i},\"A, b \"\"c\"\"\",cat,{i % 50 + 1}.5\n" for i in range(1_200)]
    rows[300] = "S-0010,Again,,cat,1.00\n"  # a duplicate of row 12
    rows[700] = "S-BAD,Bad,,cat,12,50\n"  # too many fields
    rows[900] = "S-PRICE,Bad,,cat,abc\n"
    path = write_csv(tmp_path / "p.csv", HEADER + "".join(rows))
    results = {}
    for background in (True, False):
        org = org_id if background else create_organization(ctx.store, "one", "One process")
        final = run(with_reader(ctx, background), org, "import", "products", path, chunk_size=100)
        with ctx.store.transaction(org) as tx:
            errors = tx.audit.iter_errors(final.id)
            # The audit as a user reads it: on PostgreSQL the reader's run writes it from the
            # values as the reader encoded them (NewRows), the other from decoded values.
            audit = tx.audit.page(final.id, newest_first=False, limit=10_000)
            ids = {row[0]: row[1:] for row in table(ctx, org, "products")}
        results[background] = (
            {k: getattr(final, k) for k in ("status", "created_records", "failed_records",
                                   "processed_records", "total_records")},
            [(e["row"], e["line"], e["errors"], e["raw"]) for e in errors],
            [row[1:] for row in table(ctx, org, "products")],
            [(r["record_index"], r["action"], r["before_data"], r["after_data"],
              ids[r["entity_id"]]) for r in audit],
        )
    assert results[True] == results[False]
    counters, errors, products, audit = results[True]
    assert len(audit) == 1_197 and audit[0][:2] == (2, "create")
    assert all(record[4][0] == orjson.loads(record[3])["sku"] for record in audit)
    assert counters["created_records"] == 1_197 and counters["failed_records"] == 3
    assert [e[0] for e in errors] == [302, 702, 902]
    assert "already appears in row 12" in errors[0][2][0]["message"]
    assert products[0] == ("S-0000", "Name 0", 'A, b "c"', "cat", "1.50")


def test_new_rows_built_by_the_reader_land_only_where_every_record_is_new(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    """The reader builds an import's rows as the database sends them; the writer uses them
    only for a chunk whose valid records are all new. A case twin in a chunk is refused, and
    the rest of that chunk lands with its own values, not its neighbours'."""
    rows = [f"S-{i:04d},Name {i},,cat,{i % 90 + 1}.25\n" for i in range(600)]
    rows[250] = "s-0010,Twin,,cat,9.99\n"  # a case twin of row 12, in the third chunk
    path = write_csv(tmp_path / "p.csv", HEADER + "".join(rows))
    final = run(with_reader(ctx, True), org_id, "import", "products", path, chunk_size=100)
    assert (final.status.value, final.created_records, final.failed_records) == (
        "completed", 599, 1
    )
    stored = table(ctx, org_id, "products")
    expected = [(f"S-{i:04d}", f"Name {i}", None, "cat", f"{i % 90 + 1}.25")
                for i in range(600) if i != 250]
    assert [row[1:] for row in stored] == expected
    with ctx.store.transaction(org_id) as tx:
        errors = tx.audit.iter_errors(final.id)
        audited = {
            item["entity_id"]: item["after_data"]
            for item in tx.audit.page(final.id, newest_first=False, limit=1_000)
        }
    assert [e["row"] for e in errors] == [252]
    ids = [row[0] for row in stored]
    assert ids == sorted(ids)  # in file order
    for row in stored:  # each audit record names the row it created, with its values
        after = audited[row[0]]
        assert f'"sku":"{row[1]}"' in after and f'"price":"{row[5]}"' in after


def test_a_record_refused_by_the_database_is_reported_with_its_cells_as_read(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    """The reader sends the cells apart; a record that fails in the writer still has them."""
    from bulkops.engine import create_organization

    products = write_csv(
        tmp_path / "p.csv", HEADER + "".join(f"S-{i},Name,,cat,1.00\n" for i in range(400))
    )
    warehouses = write_csv(tmp_path / "w.csv", "code,name\nWH-1,One\n")
    stock = write_csv(
        tmp_path / "i.csv",
        "sku,warehouse_code,quantity,reason,notes\n"
        + "".join(
            f"{ {3: 'S-404', 250: 'S-405'}.get(i, f'S-{i}') },{'WH-1' if i != 7 else 'WH-9'},{i},"
            f"count,\"note, {i}\"\n"
            for i in range(400)
        ),
    )
    reports = {}
    for background in (True, False):
        org = org_id if background else create_organization(ctx.store, "one", "One process")
        for path, entity in ((products, "products"), (warehouses, "warehouses")):
            run(ctx, org, "import", entity, path)
        final = run(with_reader(ctx, background), org, "import", "inventory", stock, chunk_size=100)
        with ctx.store.transaction(org) as tx:
            reports[background] = [(e["row"], e["raw"]) for e in tx.audit.iter_errors(final.id)]
    assert reports[True] == reports[False]
    assert reports[True] == [
        (5, ["S-404", "WH-1", "3", "count", "note, 3"]),
        (9, ["S-7", "WH-9", "7", "count", "note, 7"]),
        (252, ["S-405", "WH-1", "250", "count", "note, 250"]),
    ]


def test_a_fault_the_reader_meets_half_way_fails_the_operation_with_its_reason(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    small = Context(ctx.store, ctx.settings.model_copy(update={"max_rows": 50}))
    op = create_operation(
        small,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=OperationConfig(chunk_size=10),
        source=write_csv(tmp_path / "p.csv", HEADER + "".join(
            f"R-{i},Name {i},,x,1.00\n" for i in range(40))),
    )
    with Path(op.file_path).open("a", encoding="utf-8") as stored:  # grows after the check
        stored.writelines(f"T-{i},Name {i},,x,1.00\n" for i in range(40))
    before = children()
    with pytest.raises(FileRejected) as caught:
        execute(small, org_id, op.id)
    assert "50" in str(caught.value)
    from bulkops.engine import get_operation

    failed = get_operation(ctx, org_id, op.id)
    assert failed.status == "failed" and "50" in str(failed.results)
    assert failed.created_records == len(table(ctx, org_id, "products")) == 50
    assert children() <= before  # the reader process is gone


def test_cancel_stops_the_reader_process_too(ctx: Context, org_id: int, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", HEADER + "".join(
        f"C-{i:05d},Name {i},,x,1.00\n" for i in range(5_000)))
    op = create_operation(
        ctx,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=OperationConfig(chunk_size=100),
        source=path,
    )
    before = children()

    def cancel_at_300(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] >= 300:
            request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)

    final = execute(ctx, org_id, op.id, on_progress=cancel_at_300)
    assert final.status == "cancelled" and final.created_records == 300
    assert children() <= before


def test_a_chunk_planned_in_the_one_document_form_still_decodes() -> None:
    """Chunk plans stored before the cells were split off are applied after an upgrade."""
    import orjson

    from bulkops.engine.pipeline import NoKeys, decode_prepared
    from bulkops.engine.plan import Evaluator
    from bulkops.entities import map_header, spec_for

    spec = spec_for("products")
    header = map_header(spec, HEADER.strip().split(","), OperationType.IMPORT)
    evaluator = Evaluator(spec, OperationType.IMPORT, header, NoKeys())
    values = {"sku": "S-1", "name": "One", "description": None, "category": "cat",
              "price": "1.00"}
    payload = orjson.dumps([
        4,
        1234,
        [[2, 2, ["S-1", "One", "", "cat", "1.00"], None],
         [3, 3, ["S-2", "Two", "", "cat", "abc"], None]],
        [[2, values]],
        [[3, [["price", "abc", "'abc' is not a valid price"]]]],
    ]).decode()
    prepared = decode_prepared(payload, evaluator)
    assert (prepared.index, prepared.bytes_consumed) == (4, 1234)
    assert [raw.row for raw in prepared.chunk] == [2, 3]
    assert [(raw.row, v, key) for raw, v, key in prepared.valid] == [
        (2, ("S-1", "One", None, "cat", "1.00"), ("S-1",))
    ]
    (failed, errors), = prepared.plan.failures
    assert failed.row == 3 and errors[0].message == "'abc' is not a valid price"
    assert list(prepared.cells_of(failed)) == ["S-2", "Two", "", "cat", "abc"]


def test_a_chunk_planned_with_records_as_objects_still_decodes() -> None:
    """Chunk plans stored while validated records travelled as field -> value objects (the
    two-document form) are applied after an upgrade, with values in the fields' order."""
    import orjson

    from bulkops.engine.pipeline import NoKeys, decode_prepared
    from bulkops.engine.plan import Evaluator
    from bulkops.entities import map_header, spec_for

    spec = spec_for("products")
    header = map_header(spec, ["price", "name", "sku"], OperationType.IMPORT)
    evaluator = Evaluator(spec, OperationType.IMPORT, header, NoKeys())
    head = [
        0, 99, [2, 3], [2, 3], [],
        [{"sku": "S-2", "name": "Two", "description": None, "category": None,
          "price": "2.00"},
         {"sku": "S-1", "name": "One", "description": None, "category": None,
          "price": "1.00"}],
        None, [], [],
    ]
    cells = [["2.00", "Two", "S-2"], ["1", "One", "S-1"]]
    prepared = decode_prepared(orjson.dumps(head) + b"\n" + orjson.dumps(cells), evaluator)
    assert [(raw.row, key) for raw, _, key in prepared.valid] == [(2, ("S-2",)), (3, ("S-1",))]
    assert evaluator.new_rows(prepared.valid) == [
        ("S-2", "Two", None, None, "2.00"),
        ("S-1", "One", None, None, "1.00"),
    ]


def test_a_chunk_planned_in_the_two_document_form_still_decodes() -> None:
    """Chunk plans stored while the values travelled in the head (before they got a line of
    their own) are applied after an upgrade."""
    from bulkops.engine.pipeline import NoKeys, decode_prepared
    from bulkops.engine.plan import Evaluator
    from bulkops.entities import map_header, spec_for

    spec = spec_for("products")
    header = map_header(spec, HEADER.strip().split(","), OperationType.IMPORT)
    evaluator = Evaluator(spec, OperationType.IMPORT, header, NoKeys())
    evaluator.started_empty = True
    head = [
        7, 500, [2, 3, 4], [2, 3, 5], [],
        [["S-1", "One", None, "cat", "1.00"], ["S-3", "Three", "a\nb", None, "3.00"]],
        [0, 2], [[1, [["price", "abc", "'abc' is not a valid price"]]]], [],
        ["S-1\x1fS-3", "One\x1fThree", "\x1ea\nb", "cat\x1f\x1e", "1.00\x1f3.00"],
    ]
    cells = [["S-1", "One", "", "cat", "1.00"], ["S-2", "Two", "", "", "abc"],
             ["S-3", "Three", "a\nb", "", "3.00"]]
    prepared = decode_prepared(orjson.dumps(head) + b"\n" + orjson.dumps(cells), evaluator)
    assert prepared.deferred is None
    assert [(raw.row, raw.line, key) for raw, _, key in prepared.valid] == [
        (2, 2, ("S-1",)), (4, 5, ("S-3",))
    ]
    assert [v for _, v, _ in prepared.valid][1] == ("S-3", "Three", "a\nb", None, "3.00")
    (failed, _), = prepared.plan.failures
    assert failed.row == 3 and list(prepared.cells_of(failed))[4] == "abc"


def test_a_chunk_planned_with_the_keys_in_the_head_still_decodes() -> None:
    """Chunk plans stored while the keys travelled in the head (three lines, before they got
    a line of their own) are applied after an upgrade, keys and all."""
    from bulkops.engine.pipeline import NoKeys, decode_prepared
    from bulkops.engine.plan import Evaluator
    from bulkops.entities import map_header, spec_for

    spec = spec_for("products")
    header = map_header(spec, HEADER.strip().split(","), OperationType.IMPORT)
    evaluator = Evaluator(spec, OperationType.IMPORT, header, NoKeys())
    head = [
        2, 900, [2, 3, 4], [2, 3, 4], [], None, [0, 2], [[1, [["price", "x", "bad"]]]], [],
        None, [["S-1"], ["S-3"]],
    ]
    values = [["S-1", "One", None, None, "1.00"], ["S-3", "Three", None, None, "3.00"]]
    cells = [["S-1", "One", "", "", "1"], ["S-2", "Two", "", "", "x"],
             ["S-3", "Three", "", "", "3"]]
    body = b"\n".join(orjson.dumps(part) for part in (head, values, cells))
    prepared = decode_prepared(body, evaluator)
    prepared.settle()
    assert [(raw.row, v[1], key) for raw, v, key in prepared.valid] == [
        (2, "One", ("S-1",)), (4, "Three", ("S-3",))
    ]
    (failed, _), = prepared.plan.failures
    assert list(prepared.cells_of(failed)) == ["S-2", "Two", "", "", "x"]


def test_a_decoded_chunk_reads_as_the_records_the_reader_sent() -> None:
    """The writer makes a decoded chunk's records only when it reads them; read, they are
    the records sent (row, line, read error), by index from either end, by slice and in
    order, and a chunk of new rows gives its row numbers without making them."""
    from bulkops.engine.chunk import ChunkPlan, DecodedRecords, Prepared
    from bulkops.engine.pipeline import NoKeys, decode_prepared, encode_prepared
    from bulkops.engine.plan import Evaluator
    from bulkops.entities import map_header, spec_for
    from bulkops.model import RawRecord, RecordError

    spec = spec_for("products")
    header = map_header(spec, HEADER.strip().split(","), OperationType.IMPORT)
    chunk = [RawRecord(5, 6, ["S-5", "Five", "a\nb", "", "5"]),
             RawRecord(6, 8, ["S-6", "Six"], "Row 6 has 2 values, not 5"),
             RawRecord(7, 9, ["S-7", "Seven", "", "", "7"])]
    valid = [(chunk[0], ("S-5", "Five", "a\nb", None, "5.00"), ("S-5",)),
             (chunk[2], ("S-7", "Seven", None, None, "7.00"), ("S-7",))]
    evaluator = Evaluator(spec, OperationType.IMPORT, header, NoKeys())
    evaluator.started_empty = True
    failures = [(chunk[1], [RecordError(6, 8, None, None, "Row 6 has 2 values, not 5")])]
    sent = Prepared(chunk, ChunkPlan(failures=failures), valid, 99, 3)
    sent.built = ["S-5\x1fS-7", "Five\x1fSeven", "a\nb\x1f\x1e", "\x1e\x1f\x1e", "5.00\x1f7.00"]
    received = decode_prepared(encode_prepared(sent), evaluator)
    records = received.chunk
    assert isinstance(records, DecodedRecords)
    expected = [raw._replace(values=()) for raw in chunk]
    assert len(records) == 3
    assert list(records) == expected
    assert [records[i] for i in (0, 1, 2, -1, -2, -3)] == [*expected, *expected[::-1]]
    assert records[1:] == expected[1:] and records[::-1] == expected[::-1]
    with pytest.raises(IndexError):
        records[3]
    with pytest.raises(IndexError):
        records[-4]
    assert list(received.cells_of(records[1])) == ["S-6", "Six"]
    plan = evaluator.new_rows_plan(received)
    assert plan is not None and plan.new_rows is not None
    assert plan.new_rows.rows == [5, 7]
    assert plan.new_rows.keys() == [("S-5",), ("S-7",)]
    assert [(raw, e[0].message) for raw, e in plan.failures] == [
        (expected[1], "Row 6 has 2 values, not 5")
    ]
    # Sent on again (a chunk plan stored for another worker): the same chunk comes back.
    again = decode_prepared(encode_prepared(received), evaluator)
    assert list(again.chunk) == expected
    again.settle()
    assert again.valid == [(expected[0], *valid[0][1:]), (expected[2], *valid[1][1:])]


def test_an_import_into_an_empty_table_keeps_the_values_as_the_reader_encoded_them() -> None:
    """The writer's side of a chunk from the reader process: an import into a table that was
    empty creates every valid record from what the reader built and encoded; anything else
    (a table with rows) decodes the values first. Both plans say the same."""
    from bulkops.engine.chunk import ChunkPlan, Prepared
    from bulkops.engine.pipeline import NoKeys, decode_prepared, encode_prepared
    from bulkops.engine.plan import Evaluator
    from bulkops.entities import map_header, spec_for
    from bulkops.model import RawRecord, RecordError

    spec = spec_for("products")
    header = map_header(spec, HEADER.strip().split(","), OperationType.IMPORT)
    chunk = [RawRecord(2, 2, ["S-2", "Two", "", "cat", "2"]),
             RawRecord(3, 3, ["S-x", "Bad", "", "cat", "abc"]),
             RawRecord(4, 4, ["S-1", "One", "", "", "1.5"])]
    plan = ChunkPlan(failures=[(chunk[1], [RecordError(3, 3, "price", "abc", "bad price")])])
    valid = [(chunk[0], ("S-2", "Two", None, "cat", "2.00"), ("S-2",)),
             (chunk[2], ("S-1", "One", None, None, "1.50"), ("S-1",))]
    sent = Prepared(chunk, plan, valid, 300, 1)
    sent.built = ["S-2\x1fS-1", "Two\x1fOne", "\x1e\x1f\x1e", "cat\x1f\x1e", "2.00\x1f1.50"]
    body = encode_prepared(sent)
    plans = {}
    for empty in (True, False):
        evaluator = Evaluator(spec, OperationType.IMPORT, header, NoKeys())
        evaluator.started_empty = empty
        received = decode_prepared(body, evaluator)
        assert received.valid == [] and received.deferred is not None
        if empty:  # no database query is needed: no transaction
            plans[empty] = evaluator.evaluate(None, received)  # type: ignore[arg-type]
            assert plans[empty].creates == [] and plans[empty].new_rows is not None
            encoded = plans[empty].new_rows.values_json  # type: ignore[union-attr]
            assert orjson.loads(encoded) == [list(v) for _, v, _ in valid]
        else:
            received.settle()
            assert [(raw.row, v, k) for raw, v, k in received.valid] == [
                (raw.row, v, k) for raw, v, k in valid
            ]
            plans[empty] = ChunkPlan(failures=list(received.plan.failures))
            evaluator._plan_import(plans[empty], received.valid, {("S-0",): (1, ())})
            plans[empty].built = received.built
    assert plans[True].counters() == plans[False].counters()
    assert plans[True].counters()["created_records"] == 2
    plans[True].expand()
    assert plans[True].creates == plans[False].creates == [(2, valid[0][1]), (4, valid[1][1])]
    assert plans[True].built == sent.built
