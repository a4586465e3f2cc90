"""Check, then apply (CONTRACT section 7) through the engine, on SQLite and PostgreSQL:
uploads with their preview and suggested mapping, remembered mappings, planned changes,
applying a check. The HTTP routes are in test_check_apply_api.py."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bulkops import engine
from bulkops.engine import Context, create_organization
from bulkops.errors import Conflict, FileRejected, NotFound
from bulkops.model import EntityType, OperationStatus, OperationType
from bulkops.store import utcnow

from ..helpers import queue, run, table, write_csv

PRODUCTS = "sku,name,price\n" + "".join(f"SKU-{i},Product {i},{i}.00\n" for i in range(1, 6))


def _all_changes(ctx: Context, org_id: int, op_id: str, **kw: Any) -> list[dict[str, Any]]:
    """Every planned change, page by page (3 at a time), through the keyset positions."""
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = engine.planned_changes(ctx, org_id, op_id, limit=3, after=after, **kw)
        items += [item for _, item in page]
        if len(page) < 3:
            return items
        after = page[-1][0]


def _check(ctx: Context, org_id: int, path: Path, operation: str = "import", **config: Any) -> Any:
    return run(ctx, org_id, operation, "products", path, validate_only=True, chunk_size=2, **config)


# -- planned changes ------------------------------------------------------------------------------


def test_a_check_of_creates_and_updates_keeps_exactly_the_changed_fields(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    before = table(ctx, org_id, "products")
    edited = (
        "sku,name,price\n"
        "SKU-1,Product 1,1.00\n"  # unchanged
        "SKU-2,Product two,2.00\n"  # name
        "SKU-3,Product 3,3.50\n"  # price
        "SKU-9,New,=1+1\n"  # fails (price)
        "SKU-10,Brand new,10.00\n"  # create
        "SKU-4,Product four,4.40\n"  # name and price
    )
    check = _check(ctx, org_id, write_csv(tmp_path / "b.csv", edited))
    assert check.status is OperationStatus.COMPLETED and check.outcome.value == "checked"
    assert table(ctx, org_id, "products") == before  # a check changes nothing
    changes = _all_changes(ctx, org_id, check.id)
    assert [(c["row"], c["action"], c["key"]) for c in changes] == [
        (3, "update", {"sku": "SKU-2"}),
        (4, "update", {"sku": "SKU-3"}),
        (6, "create", {"sku": "SKU-10"}),
        (7, "update", {"sku": "SKU-4"}),
    ]
    assert changes[0]["changes"] == [
        {"field": "name", "current": "Product 2", "new": "Product two"}
    ]
    assert changes[1]["changes"] == [{"field": "price", "current": "3.00", "new": "3.50"}]
    assert changes[3]["changes"] == [
        {"field": "name", "current": "Product 4", "new": "Product four"},
        {"field": "price", "current": "4.00", "new": "4.40"},
    ]
    assert {c["field"] for c in changes[2]["changes"]} == {"sku", "name", "price"}
    creates = _all_changes(ctx, org_id, check.id, action="create")
    assert [c["row"] for c in creates] == [6]
    assert engine.planned_change_counts(ctx, org_id, check.id) == {
        "create": 1,
        "update": 3,
        "delete": 0,
    }


def test_a_check_of_a_delete_lists_the_rows_it_would_delete(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    check = _check(
        ctx, org_id, write_csv(tmp_path / "d.csv", "sku\nSKU-2\nSKU-404\nSKU-5\n"), "delete"
    )
    changes = _all_changes(ctx, org_id, check.id)
    assert [(c["row"], c["action"], c["key"], c["changes"]) for c in changes] == [
        (2, "delete", {"sku": "SKU-2"}, []),
        (4, "delete", {"sku": "SKU-5"}, []),
    ]
    assert check.failed_records == 1
    assert len(table(ctx, org_id, "products")) == 5


def test_a_real_operation_has_no_planned_changes(ctx: Context, org_id: int, tmp_path: Path) -> None:
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    with pytest.raises(Conflict, match="not a check"):
        engine.planned_changes(ctx, org_id, op.id, limit=10)


# -- apply ----------------------------------------------------------------------------------------


def test_apply_runs_the_checked_file_once(ctx: Context, org_id: int, tmp_path: Path) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    edited = PRODUCTS.replace("Product 2,", "Product two,") + "SKU-7,Seven,7.00\n"
    check = _check(ctx, org_id, write_csv(tmp_path / "b.csv", edited))
    applied = engine.apply_check(ctx, org_id, check.id)
    assert applied.config["checked_by"] == check.id
    assert applied.config["validate_only"] is False
    assert applied.file_sha256 == check.file_sha256 and applied.file_name == "b.csv"
    final = engine.execute(ctx, org_id, applied.id)
    assert (final.created_records, final.updated_records) == (1, 1)
    assert final.results["differs_from_check"] == 0
    assert final.results["checked_by"] == check.id
    assert len(table(ctx, org_id, "products")) == 6
    with pytest.raises(Conflict, match=f"already applied by operation {applied.id}"):
        engine.apply_check(ctx, org_id, check.id)
    assert engine.get_operation(ctx, org_id, check.id).results["applied_by"] == applied.id


def test_apply_counts_the_records_changed_since_the_check(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", PRODUCTS))
    edited = PRODUCTS.replace("Product 2,", "Product two,").replace("Product 3,", "Product 3b,")
    check = _check(ctx, org_id, write_csv(tmp_path / "b.csv", edited))
    assert check.updated_records == 2
    # Meanwhile someone makes row 3's change by hand, and deletes SKU-5.
    run(
        ctx,
        org_id,
        "update",
        "products",
        write_csv(tmp_path / "c.csv", "sku,name\nSKU-2,Product two\n"),
    )
    run(ctx, org_id, "delete", "products", write_csv(tmp_path / "d.csv", "sku\nSKU-5\n"))
    final = engine.execute(ctx, org_id, engine.apply_check(ctx, org_id, check.id).id)
    # SKU-2 is unchanged now (planned: update); SKU-5 is created (planned: unchanged).
    assert final.results["differs_from_check"] == 2
    assert (final.updated_records, final.created_records, final.unchanged_records) == (1, 1, 3)


def test_only_a_completed_check_can_be_applied_and_a_check_cannot_be_rolled_back(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "a.csv", PRODUCTS)
    op = run(ctx, org_id, "import", "products", path)
    with pytest.raises(Conflict, match="not a check"):
        engine.apply_check(ctx, org_id, op.id)
    pending = queue(ctx, org_id, "import", "products", path, validate_only=True)
    with pytest.raises(Conflict, match="only a completed check"):
        engine.apply_check(ctx, org_id, pending)
    check = engine.execute(ctx, org_id, pending)
    with pytest.raises(Conflict, match="changed nothing"):
        engine.queue_rollback(ctx, org_id, check.id, user_id=None, force=False)


# -- uploads --------------------------------------------------------------------------------------


def _upload(
    ctx: Context,
    org_id: int,
    path: Path,
    entity: EntityType = EntityType.PRODUCTS,
    **options: Any,
) -> dict[str, Any]:
    return engine.create_upload(
        ctx,
        org_id,
        source=path,
        entity_type=entity,
        operation_type=OperationType.IMPORT,
        options=options,
        file_name=path.name,
    )


def test_an_upload_previews_a_csv_file(ctx: Context, org_id: int, tmp_path: Path) -> None:
    text = "sku,name,price\n" + "".join(f"S{i},N{i},{i}.00\n" for i in range(30))
    view = _upload(ctx, org_id, write_csv(tmp_path / "p.csv", text))
    assert view["format"] == "csv" and view["sheets"] is None
    assert (view["encoding"], view["delimiter"]) == ("utf-8", ",")
    assert view["header"] == ["sku", "name", "price"]
    preview = view["preview"]
    assert isinstance(preview, list) and len(preview) == 20
    assert preview[0] == {"row": 2, "line": 2, "cells": ["S0", "N0", "0.00"], "error": None}
    assert view["file_size_bytes"] == len(text)
    assert view["missing_required"] == []
    assert engine.get_upload(ctx, org_id, str(view["id"]))["preview"] == preview


def test_an_upload_previews_a_semicolon_file_and_a_preview_rereads_it(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "sku;name;price\nS1;Käse;1,50\n"
    view = _upload(
        ctx, org_id, write_csv(tmp_path / "s.csv", text, "windows-1252"), encoding="windows-1252"
    )
    assert view["delimiter"] == ";" and view["encoding"] == "windows-1252"
    assert view["preview"][0]["cells"] == ["S1", "Käse", "1,50"]
    again = engine.preview_upload(
        ctx, org_id, str(view["id"]), options={"delimiter": ",", "decimal_separator": ","}
    )
    assert again["header"] == ["sku;name;price"]
    assert again["decimal_separator"] == ","
    # The options last given stay with the upload.
    assert engine.get_upload(ctx, org_id, str(view["id"]))["delimiter"] == ","


def test_mapping_suggestions_say_how_they_were_found(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "sku,NAME,Prise,Notes,_row\nS1,N1,1.00,x,2\n"
    view = _upload(ctx, org_id, write_csv(tmp_path / "m.csv", text))
    assert [(m["header"], m["field"], m["how"], m["score"]) for m in view["mapping"]] == [
        ("sku", "sku", "exact", None),
        ("NAME", "name", "case_or_space", None),
        ("Prise", "price", "similar", 0.8),
        ("Notes", None, "none", None),
        ("_row", None, "none", None),
    ]
    assert view["suggested_mapping"] == {"Prise": "price", "Notes": ""}
    assert view["missing_required"] == []
    missing = _upload(ctx, org_id, write_csv(tmp_path / "n.csv", "Artikel,x\nA,1\n"))
    assert missing["missing_required"] == ["sku", "name"]
    given = engine.preview_upload(
        ctx, org_id, str(missing["id"]), options={}, mapping={"Artikel": "sku"}
    )
    assert given["mapping"][0] == {
        "header": "Artikel",
        "field": "sku",
        "how": "given",
        "score": None,
    }
    assert given["missing_required"] == ["name"]


def test_column_names_that_hold_a_field_s_words_suggest_that_field(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "Item SKU,ProductName,Unit price,Category,Notes\nS1,N1,1.00,Tools,x\n"
    view = _upload(ctx, org_id, write_csv(tmp_path / "w.csv", text))
    assert [(m["field"], m["how"], m["score"]) for m in view["mapping"]] == [
        ("sku", "similar", 0.8),
        ("name", "similar", 0.8),
        ("price", "similar", 0.8),
        ("category", "case_or_space", None),
        (None, "none", None),
    ]
    assert view["missing_required"] == []

    # Two names that could both be 'name': the one that can only be name gets it, whatever
    # the order of the columns; words that spell a field together count (E-mail: email).
    text = "Company name,E-mail address,Contact name\nACME,a@example.com,Ann\n"
    customers = _upload(ctx, org_id, write_csv(tmp_path / "c.csv", text), EntityType.CUSTOMERS)
    assert [(m["header"], m["field"]) for m in customers["mapping"]] == [
        ("Company name", "company"),
        ("E-mail address", "email"),
        ("Contact name", "name"),
    ]
    assert customers["mapping"][1]["score"] == 0.87

    # Two names that spell price: the one that ends with it is a price ("Price level" is the
    # tier, which no rule here can tell); a field's own word is no abbreviation of it
    # ("Price" of price_tier), an abbreviation is one ("Min qty").
    text = "Item,Price level,Unit price,Min qty\nA1,gold,2.50,10\n"
    pricing = _upload(ctx, org_id, write_csv(tmp_path / "p.csv", text), EntityType.PRICING)
    assert [(m["header"], m["field"]) for m in pricing["mapping"]] == [
        ("Item", None),
        ("Price level", None),
        ("Unit price", "price"),
        ("Min qty", "min_quantity"),
    ]


def test_a_mapping_is_remembered_for_the_same_header_only(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "Artikel,Bezeichnung,Preis\nA1,Eins,1.00\n"
    mapping = {"Artikel": "sku", "Bezeichnung": "name", "Preis": "price"}
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", text), mapping=mapping)
    saved = engine.list_mappings(ctx, org_id)
    assert [(m["entity_type"], m["header"], m["mapping"]) for m in saved] == [
        ("products", ["Artikel", "Bezeichnung", "Preis"], mapping)
    ]
    # The same header, spelled with other case and spaces: suggested as saved.
    same = _upload(
        ctx, org_id, write_csv(tmp_path / "b.csv", " artikel ,BEZEICHNUNG,Preis\nA2,Zwei,2.00\n")
    )
    assert [(m["field"], m["how"]) for m in same["mapping"]] == [
        ("sku", "saved"),
        ("name", "saved"),
        ("price", "saved"),
    ]
    assert same["saved_mapping_id"] == saved[0]["id"]
    other = _upload(
        ctx,
        org_id,
        write_csv(tmp_path / "c.csv", "Artikel,Bezeichnung,Preis,Kategorie\nA,B,1.00,C\n"),
    )
    assert all(m["how"] != "saved" for m in other["mapping"])
    engine.forget_mapping(ctx, org_id, saved[0]["id"])
    assert engine.list_mappings(ctx, org_id) == []
    with pytest.raises(NotFound):
        engine.forget_mapping(ctx, org_id, saved[0]["id"])


def test_an_operation_from_an_upload_takes_its_file_and_options(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    view = _upload(ctx, org_id, write_csv(tmp_path / "s.csv", "sku;name\nS1;One\n"))
    engine.preview_upload(ctx, org_id, str(view["id"]), options={"delimiter": ";"})
    op = engine.create_operation(
        ctx,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(),
        upload_id=str(view["id"]),
    )
    assert op.file_name == "s.csv" and op.file_sha256 == view["file_sha256"]
    assert op.config["delimiter"] == ";"
    assert engine.execute(ctx, org_id, op.id).created_records == 1
    assert engine.get_upload(ctx, org_id, str(view["id"]))["used_by_operation"] == op.id


def test_a_bad_file_is_refused_as_an_upload_too(ctx: Context, org_id: int, tmp_path: Path) -> None:
    with pytest.raises(FileRejected):
        _upload(ctx, org_id, write_csv(tmp_path / "e.csv", ""))
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"%PDF-1.4\x00\x00")
    with pytest.raises(FileRejected):
        _upload(ctx, org_id, binary)
    assert not list((ctx.settings.data_dir / "files" / str(org_id)).glob("*"))


def test_unused_uploads_expire(ctx: Context, org_id: int, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", PRODUCTS)
    unused = _upload(ctx, org_id, path)
    used = _upload(ctx, org_id, path)
    engine.create_operation(
        ctx,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(),
        upload_id=str(used["id"]),
    )
    assert engine.delete_expired_uploads(ctx) == 0
    later = utcnow() + timedelta(hours=ctx.settings.upload_ttl_hours + 1)
    assert engine.delete_expired_uploads(ctx, now=later) == 1
    with pytest.raises(NotFound):
        engine.get_upload(ctx, org_id, str(unused["id"]))
    assert engine.get_upload(ctx, org_id, str(used["id"]))["used_by_operation"]


def test_another_organization_sees_no_upload_mapping_or_change(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    other = create_organization(ctx.store, "other", "Other")
    mapping = {"Artikel": "sku"}
    text = "Artikel,name\nA1,One\n"
    check = run(
        ctx,
        org_id,
        "import",
        "products",
        write_csv(tmp_path / "a.csv", text),
        mapping=mapping,
        validate_only=True,
    )
    view = _upload(ctx, org_id, write_csv(tmp_path / "b.csv", text))
    with pytest.raises(NotFound):
        engine.get_upload(ctx, other, str(view["id"]))
    with pytest.raises(NotFound):
        engine.preview_upload(ctx, other, str(view["id"]), options={})
    with pytest.raises(NotFound):
        engine.planned_changes(ctx, other, check.id, limit=10)
    with pytest.raises(NotFound):
        engine.apply_check(ctx, other, check.id)
    assert engine.list_mappings(ctx, org_id) and engine.list_mappings(ctx, other) == []
    with pytest.raises(NotFound):
        engine.forget_mapping(ctx, other, engine.list_mappings(ctx, org_id)[0]["id"])
    with pytest.raises(NotFound):
        engine.create_operation(
            ctx,
            other,
            operation_type=OperationType.IMPORT,
            entity_type=EntityType.PRODUCTS,
            config=engine.OperationConfig(),
            upload_id=str(view["id"]),
        )


def test_an_upload_that_is_not_utf8_is_read_as_the_encoding_it_most_likely_is(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "sku;name;price\n" + "".join(f"S{i};Café crème {i};1,50\n" for i in range(30))
    view = _upload(ctx, org_id, write_csv(tmp_path / "w.csv", text, "windows-1252"))
    assert view["encoding"] == "windows-1252" and view["encoding_detected"] is True
    assert "Windows-1252" in view["notes"][0] and "row 2" in view["notes"][0]
    assert view["preview"][0]["cells"] == ["S0", "Café crème 0", "1,50"]
    # The proposal is kept: GET says so again, and an operation made from it reads it so.
    again = engine.get_upload(ctx, org_id, str(view["id"]))
    assert again["encoding"] == "windows-1252" and again["notes"] == view["notes"]
    # Read as UTF-8 on purpose: no note any more; a bad byte is a row error worded for
    # every door (no command-line flag in it).
    utf8 = engine.preview_upload(ctx, org_id, str(view["id"]), options={"encoding": "utf-8"})
    assert utf8["notes"] == [] and utf8["encoding_detected"] is False
    error = utf8["preview"][0]["error"]
    assert "Windows-1252" in error or "windows-1252" in error
    assert "--encoding" not in error


def test_an_operation_from_an_upload_uses_the_mapping_the_review_shows(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "Artikel,Bezeichnung,price\nM-1,Eins,1.00\n"
    view = _upload(ctx, org_id, write_csv(tmp_path / "m.csv", text))
    assert view["missing_required"] == ["sku", "name"]
    given = {"Artikel": "sku", "Bezeichnung": "name"}
    engine.preview_upload(ctx, org_id, str(view["id"]), options={}, mapping=given)
    again = engine.get_upload(ctx, org_id, str(view["id"]))
    assert [m["how"] for m in again["mapping"][:2]] == ["given", "given"]
    assert again["missing_required"] == []
    op = engine.create_operation(
        ctx, org_id, operation_type=OperationType.IMPORT, entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(), upload_id=str(view["id"]),
    )
    assert op.config["mapping"] == given  # no mapping sent: the review's is used
    done = engine.execute(ctx, org_id, op.id)
    assert done.created_records == 1

    # The next upload with that header gets it as its suggestion, and uses it as it is.
    next_file = write_csv(tmp_path / "n.csv", "Artikel,Bezeichnung,price\nM-2,Zwei,2.00\n")
    second = _upload(ctx, org_id, next_file)
    assert [m["how"] for m in second["mapping"][:2]] == ["saved", "saved"]
    op2 = engine.create_operation(
        ctx, org_id, operation_type=OperationType.IMPORT, entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(), upload_id=str(second["id"]),
    )
    assert op2.config["mapping"] == given
