"""Keys people can trust: one Unicode form, no invisible characters, no case twins.

Every test runs on SQLite and on PostgreSQL (the ``ctx`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bulkops.cli import app
from bulkops.engine import Context
from bulkops.engine.doctor import find_key_twins
from bulkops.entities import spec_for
from bulkops.model import EntityType
from tests.helpers import run, table, write_csv

PRODUCTS = "sku,name\n"


def messages(ctx: Context, org_id: int, op_id: str) -> dict[int, list[str]]:
    """The error messages of an operation, by row."""
    with ctx.store.transaction(org_id) as tx:
        errors = tx.audit.iter_errors(op_id)
    return {e["row"]: [item["message"] for item in e["errors"]] for e in errors}


def insert_behind_the_engines_back(
    ctx: Context, org_id: int, entity: str, fields: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> list[int]:
    with ctx.store.transaction(org_id, write=True) as tx:
        return tx.rows.insert(entity, fields, rows)


def test_both_spellings_of_an_accented_key_are_one_product(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    composed, decomposed = "CAF\u00c9-1", "CAFE\u0301-1"
    first = run(ctx, org_id, "import", "products",
                write_csv(tmp_path / "a.csv", f"{PRODUCTS}{decomposed},Coffee\n"))
    assert first.created_records == 1
    second = run(ctx, org_id, "import", "products",
                 write_csv(tmp_path / "b.csv", f"{PRODUCTS}{composed},Coffee beans\n"))
    assert (second.created_records, second.updated_records) == (0, 1)
    assert [row[1:3] for row in table(ctx, org_id, "products")] == [(composed, "Coffee beans")]


def test_a_format_character_in_a_key_is_a_row_error(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "p.csv", f"{PRODUCTS}AB\u200bC,Hidden\nOK-1,Fine\n")
    final = run(ctx, org_id, "import", "products", path)
    assert (final.created_records, final.failed_records) == (1, 1)
    assert messages(ctx, org_id, final.id) == {
        2: ["contains U+200B ZERO WIDTH SPACE at position 3; a key cannot hold invisible or "
            "format characters"]
    }


def test_a_byte_order_mark_inside_a_warehouse_code_is_a_row_error(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "w.csv", "code,name\nWH\ufeff1,Berlin\n")
    final = run(ctx, org_id, "import", "warehouses", path)
    assert final.failed_records == 1
    [message] = messages(ctx, org_id, final.id)[2]
    assert "U+FEFF ZERO WIDTH NO-BREAK SPACE at position 3" in message


def test_a_bidirectional_override_in_a_name_is_a_row_error(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "p.csv", f"{PRODUCTS}P-1,Invoice\u202etxt.exe\n")
    final = run(ctx, org_id, "import", "products", path)
    assert final.failed_records == 1
    assert messages(ctx, org_id, final.id) == {
        2: ["contains U+202E RIGHT-TO-LEFT OVERRIDE at position 8; bidirectional overrides "
            "are not allowed in text"]
    }


def test_a_case_twin_of_an_existing_key_is_a_row_error(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", f"{PRODUCTS}abc,Lower\n"))
    path = write_csv(tmp_path / "b.csv", f"{PRODUCTS}ABC,Upper\nabc,Lower again\nNEW,New\n")
    final = run(ctx, org_id, "import", "products", path)
    assert (final.created_records, final.updated_records, final.failed_records) == (1, 1, 1)
    assert messages(ctx, org_id, final.id) == {
        2: ["sku 'ABC' differs only by letter case from the existing sku 'abc'"]
    }


def test_a_case_twin_with_accents_and_a_composite_key(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products",
        write_csv(tmp_path / "p.csv", f"{PRODUCTS}\u00e9p\u00e9e,Sword\n"))
    run(ctx, org_id, "import", "pricing", write_csv(
        tmp_path / "a.csv", "sku,price_tier,price\n\u00e9p\u00e9e,Gro\u00df,10.00\n"
    ))
    path = write_csv(
        tmp_path / "b.csv",
        "sku,price_tier,price,min_quantity\n"
        "\u00e9p\u00e9e,GROSS,9.00,1\n"  # ß folds to ss: a twin of Groß
        "\u00e9p\u00e9e,GROSS,8.00,5\n"  # another min_quantity: another key
        "\u00e9p\u00e9e,gro\u00df,7.00,1\n",  # its own row within the file, a twin of Groß too
    )
    final = run(ctx, org_id, "import", "pricing", path)
    assert (final.created_records, final.failed_records) == (1, 2)
    found = messages(ctx, org_id, final.id)
    assert found[2] == [
        "sku '\u00e9p\u00e9e', price_tier 'GROSS', min_quantity '1' differs only by letter "
        "case from the existing sku '\u00e9p\u00e9e', price_tier 'Gro\u00df', min_quantity '1'"
    ]
    assert found[4] == [
        "sku '\u00e9p\u00e9e', price_tier 'gro\u00df', min_quantity '1' differs only by letter "
        "case from sku '\u00e9p\u00e9e', price_tier 'GROSS', min_quantity '1' in row 2"
    ]


def test_non_ascii_twins_are_found_in_the_database(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    # SQLite's lower() leaves É as it is: the look-up must still find the twin.
    run(ctx, org_id, "import", "products",
        write_csv(tmp_path / "a.csv", f"{PRODUCTS}\u00c9T\u00c9,Summer\n"))
    final = run(ctx, org_id, "import", "products",
                write_csv(tmp_path / "b.csv", f"{PRODUCTS}\u00e9t\u00e9,summer\n"))
    assert messages(ctx, org_id, final.id) == {
        2: ["sku '\u00e9t\u00e9' differs only by letter case from the existing sku '\u00c9T\u00c9'"]
    }


@pytest.mark.parametrize(
    ("entity", "header"), [("products", PRODUCTS), ("warehouses", "code,name\n")]
)
def test_twins_of_keys_in_every_letter_case_are_found_in_the_database(
    ctx: Context, org_id: int, tmp_path: Path, entity: str, header: str
) -> None:
    # Stored keys all lower-case, all upper-case, mixed, with letters outside ASCII, with ß,
    # decomposed (written outside bulkops), and without letters: each has a twin in the file.
    stored = ["abc-1", "ABC-2", "Abc-3", "\u00c9COLE-4", "stra\u00dfe-5", "Gr\u00fc\u00dfe-6",
              "Cafe\u0301-7", "123-8"]
    twins = ["ABC-1", "abc-2", "aBC-3", "\u00e9cole-4", "STRASSE-5", "GR\u00dcSSE-6",
             "CAF\u00c9-7"]
    fields = ("sku", "name") if entity == "products" else ("code", "name")
    insert_behind_the_engines_back(ctx, org_id, entity, fields, [(k, "Stored") for k in stored])
    lines = "".join(f"{twin},Twin\n" for twin in twins) + "123-8,Same key\nNEW-9,New\n"
    final = run(ctx, org_id, "import", entity, write_csv(tmp_path / "t.csv", header + lines))
    assert (final.failed_records, final.updated_records, final.created_records) == (7, 1, 1)
    key = fields[0]
    assert messages(ctx, org_id, final.id) == {
        row: [f"{key} '{twin}' differs only by letter case from the existing {key} '{other}'"]
        for row, twin, other in zip(range(2, 9), twins, stored, strict=False)
    }


def test_a_case_twin_of_an_earlier_row_is_a_row_error(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "p.csv", f"{PRODUCTS}abc,One\nX-1,Other\nABC,Two\nabc,Three\nX-2,Other\n"
    )
    final = run(ctx, org_id, "import", "products", path)
    assert (final.created_records, final.failed_records) == (3, 2)
    assert messages(ctx, org_id, final.id) == {
        4: ["sku 'ABC' differs only by letter case from sku 'abc' in row 2"],
        5: ["Duplicate key: sku 'abc' already appears in row 2. Keep one of the two rows."],
    }


def test_a_case_twin_in_an_earlier_chunk_names_its_row(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "p.csv", f"{PRODUCTS}abc,One\nX-1,Other\nABC,Two\n")
    final = run(ctx, org_id, "import", "products", path, chunk_size=2)
    assert messages(ctx, org_id, final.id) == {
        4: ["sku 'ABC' differs only by letter case from the sku in row 2"]
    }


def test_existing_twins_keep_working_and_doctor_lists_them(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    fields = ("sku", "name", "description", "category", "price")
    ids = insert_behind_the_engines_back(
        ctx, org_id, "products", fields,
        [("abc", "Lower", None, None, None), ("ABC", "Upper", None, None, None),
         ("CAFE\u0301", "Decomposed", None, None, None),
         ("CAF\u00c9", "Composed", None, None, None),
         ("solo", "Alone", None, None, None)],
    )
    path = write_csv(tmp_path / "u.csv", f"{PRODUCTS}ABC,Upper renamed\nabc,Lower renamed\n")
    imported = run(ctx, org_id, "import", "products", path)
    assert (imported.updated_records, imported.failed_records) == (2, 0)
    updated = run(ctx, org_id, "update", "products",
                  write_csv(tmp_path / "v.csv", f"{PRODUCTS}ABC,Upper again\n"))
    assert (updated.updated_records, updated.failed_records) == (1, 0)
    names = [row[2] for row in table(ctx, org_id, "products")]
    assert names[:2] == ["Lower renamed", "Upper again"]

    groups = find_key_twins(ctx)
    assert [(g.organization, g.entity, g.rows) for g in groups] == [
        ("acme", EntityType.PRODUCTS, ((ids[0], ("abc",)), (ids[1], ("ABC",)))),
        ("acme", EntityType.PRODUCTS, ((ids[2], ("CAFE\u0301",)), (ids[3], ("CAF\u00c9",)))),
    ]

    runner = CliRunner()
    url = ctx.settings.database_url
    result = runner.invoke(app, ["--database-url", url, "doctor", "--json"])
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)[0] == {
        "organization": "acme",
        "entity": "products",
        "rows": [{"id": ids[0], "sku": "abc"}, {"id": ids[1], "sku": "ABC"}],
    }
    result = runner.invoke(app, ["--database-url", url, "doctor"])
    assert result.exit_code == 1
    assert f"acme products: 'abc' (id {ids[0]}), 'ABC' (id {ids[1]})" in result.stdout


def test_doctor_exits_0_without_twins(ctx: Context, org_id: int, tmp_path: Path) -> None:
    run(ctx, org_id, "import", "products",
        write_csv(tmp_path / "a.csv", f"{PRODUCTS}abc,A\nabd,B\n"))
    assert find_key_twins(ctx) == []
    result = CliRunner().invoke(app, ["--database-url", ctx.settings.database_url, "doctor"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("entity", "key", "index"),
    [
        ("products", ("ABC",), "ix_products_folded_key"),
        ("warehouses", ("WH-1",), "ix_warehouses_folded_key"),
        ("inventory", ("ABC", "WH-1"), "ix_inventory_folded_key"),
        ("pricing", ("ABC", "Gro\u00df", 5), "ix_pricing_folded_key"),
    ],
)
def test_the_case_twin_look_up_uses_its_index(
    ctx: Context, org_id: int, entity: str, key: tuple[Any, ...], index: str
) -> None:
    names = spec_for(entity).key
    with ctx.store.transaction(org_id) as tx:
        sql, params = tx.rows.case_twin_query(entity, names, [key])
        if ctx.store.dialect.name == "sqlite":
            plan = tx.conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            assert any(index in str(step) for step in plan), plan
        else:
            # An empty table is read faster without an index: forbid that shortcut.
            tx.conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = tx.conn.exec_driver_sql(f"EXPLAIN {sql}", params).all()
            assert any(index in str(step) for step in plan), plan
