"""Workbooks end to end on SQLite and PostgreSQL: import, export round trip, template and
error report as XLSX, through the engine and the API."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook

from bulkops.engine import (
    Context,
    export_path,
    write_error_report_xlsx,
    write_template_xlsx,
)
from bulkops.entities import spec_for
from bulkops.formats.workbook import XLSX_MEDIA_TYPE
from tests.helpers import run, table, write_csv
from tests.integration.test_api import Api, api, wait_for

__all__ = ["api"]  # the fixture, shared with test_api

AWKWARD = [
    "00123",
    '=HYPERLINK("http://evil.example","click")',
    "＝1+1",
    'say "hi", then leave',
    "two\nlines",
    "cr\r\nlf",
    "Crème brûlée à l'ancienne",
    "emoji 😀",
    "@risk",
    "-minus",
    "'=quoted",
]

CSV_FILES = {
    "warehouses": "code,name\n"
    + "".join(f'W-{i},"{v.replace(chr(34), chr(34) * 2)}"\n' for i, v in enumerate(AWKWARD)),
    "products": "sku,name,description,category,price\n"
    + "".join(
        f'{"0" + str(i) if i % 2 else "P-" + str(i)},"{v.replace(chr(34), chr(34) * 2)}",'
        f'"{v.replace(chr(34), chr(34) * 2)}",cat,{i + 1}.{i % 10}0\n'
        for i, v in enumerate(AWKWARD)
    ),
    "inventory": "sku,warehouse_code,quantity,reason,notes\n"
    + "".join(
        f'P-0,W-{i},{i * 7},"{v.replace(chr(34), chr(34) * 2)}",\n'
        for i, v in enumerate(AWKWARD)
    ),
    "pricing": "sku,price_tier,price,min_quantity\n"
    + "".join(f"P-0,tier-{i},{i + 0.5:.2f},{i + 1}\n" for i in range(len(AWKWARD))),
    "customers": "email,name,company,price_tier\n"
    + "".join(
        f'c{i}@example.com,"{v.replace(chr(34), chr(34) * 2)}",Acme,gold\n'
        for i, v in enumerate(AWKWARD)
    ),
}


def workbook(path: Path, rows: list[list[Any]], title: str = "Sheet") -> Path:
    book = Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    # openpyxl takes a string starting with "=" for a formula; text cells are text here.
    for row in sheet.iter_rows():
        for cell in row:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"
    book.save(path)
    return path


def test_xlsx_round_trip_changes_nothing_for_every_entity(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    for entity, text in CSV_FILES.items():
        op = run(ctx, org_id, "import", entity, write_csv(tmp_path / f"{entity}.csv", text))
        assert op.failed_records == 0, (entity, op.results)
    for entity in CSV_FILES:
        before = table(ctx, org_id, entity)
        exported = run(ctx, org_id, "export", entity, format="xlsx")
        path = Path(exported.file_path)
        assert path.suffix == ".xlsx"
        assert path == export_path(ctx, org_id, exported.id, "xlsx")
        book = load_workbook(path)
        sheet = book.active
        assert sheet.freeze_panes == "A2"
        assert all(cell.font.b for cell in sheet[1])
        for row in sheet.iter_rows(min_row=2):
            for cell in row:
                assert cell.data_type != "f"  # no formula anywhere
        kinds = {f.name: f.kind for f in spec_for(entity).fields}
        header = [c.value for c in sheet[1]]
        for row in sheet.iter_rows(min_row=2, values_only=True):
            for name, value in zip(header, row, strict=True):
                if kinds[name] in ("decimal", "int") and value is not None:
                    assert isinstance(value, int | float), (entity, name, value)
        again = run(ctx, org_id, "import", entity, path)
        assert (again.unchanged_records, again.failed_records, again.updated_records) == (
            len(AWKWARD),
            0,
            0,
        ), (entity, again.results)
        assert table(ctx, org_id, entity) == before
    texts = {row[2] for row in table(ctx, org_id, "warehouses")}
    # The CSV import removed the one ' the CSV writer adds; the workbook kept the rest as is.
    assert texts == {"=quoted" if v == "'=quoted" else v for v in AWKWARD}


def test_xlsx_import_errors_name_their_cell(ctx: Context, org_id: int, tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "p.xlsx",
        [
            ["sku", "name", "description", "category", "price"],
            ["00123", "Zeros", None, None, 149],
            ["A-2", "Bad price", None, None, "abc"],
            ["A-3", "Fine", None, None, 12.5],
        ],
    )
    op = run(ctx, org_id, "import", "products", path)
    assert (op.created_records, op.failed_records) == (2, 1)
    stored = {row[1]: row[5] for row in table(ctx, org_id, "products")}
    assert stored["00123"] == "149.00" and stored["A-3"] == "12.50"
    report = tmp_path / "errors.xlsx"
    write_error_report_xlsx(ctx, org_id, op, report)
    sheet = load_workbook(report).active
    assert [c.value for c in sheet[1]] == [
        "_row", "_line", "_errors", "sku", "name", "description", "category", "price",
    ]
    row = [c.value for c in sheet[2]]
    assert row[:2] == ["3", "3"]
    assert "Row 3, cell E3" in row[2]
    price = sheet["H2"]
    assert price.value == "abc"
    assert price.fill.fgColor.rgb.endswith("FFC7CE")
    assert price.comment is not None and "not a valid price" in price.comment.text
    assert sheet["D2"].comment is None


def test_the_fixed_xlsx_error_report_imports_as_it_is(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = workbook(
        tmp_path / "p.xlsx",
        [["sku", "name", "price"], ["A-1", "One", "1,50"], ["A-2", "Two", "2.00"]],
    )
    op = run(ctx, org_id, "import", "products", path)
    assert op.failed_records == 1
    report = tmp_path / "errors.xlsx"
    write_error_report_xlsx(ctx, org_id, op, report)
    book = load_workbook(report)
    book.active["F2"].value = "1.50"  # fixed in Excel
    book.save(report)
    fixed = run(ctx, org_id, "import", "products", report)
    assert (fixed.created_records, fixed.failed_records) == (1, 0)


def test_template_has_notes_validation_and_an_example(tmp_path: Path) -> None:
    for entity in CSV_FILES:
        path = tmp_path / f"{entity}.xlsx"
        write_template_xlsx(entity, path)
        sheet = load_workbook(path).active
        spec = spec_for(entity)
        assert [c.value for c in sheet[1]] == list(spec.field_names)
        for cell, field in zip(sheet[1], spec.fields, strict=True):
            assert cell.comment is not None
            assert ("Required." if field.required else "Optional.") in cell.comment.text
        assert sheet.max_row == 2  # one example row
        rules = {str(v.sqref).split(":")[0][0]: v for v in sheet.data_validations.dataValidation}
        for index, field in enumerate(spec.fields):
            letter = chr(ord("A") + index)
            if field.kind == "decimal":
                assert rules[letter].type == "custom"
                assert "ROUND" in rules[letter].formula1 and ">0" in rules[letter].formula1
            elif field.kind == "int":
                assert rules[letter].type == "whole"
                assert rules[letter].formula1 == str(field.min_value or 0)
            else:
                assert letter not in rules
    products = load_workbook(tmp_path / "products.xlsx").active
    assert "greater than 0" in products["E1"].comment.text
    assert isinstance(products["E2"].value, int | float)
    inventory = load_workbook(tmp_path / "inventory.xlsx").active
    assert "whole number" in inventory["C1"].comment.text.lower()


def test_a_sheet_can_be_chosen_and_a_missing_one_is_refused(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    book = Workbook()
    book.active.title = "Readme"
    book.active.append(["read me"])
    data = book.create_sheet("Stock")
    data.append(["code", "name"])
    data.append(["W-1", "Main"])
    book.save(tmp_path / "w.xlsx")
    op = run(ctx, org_id, "import", "warehouses", tmp_path / "w.xlsx", sheet="Stock")
    assert op.created_records == 1
    from bulkops.errors import FileRejected

    with pytest.raises(FileRejected, match='"Readme", "Stock"'):
        run(ctx, org_id, "import", "warehouses", tmp_path / "w.xlsx", sheet="Nope")


# -- through the API -------------------------------------------------------------------------


def test_api_takes_a_workbook_and_gives_xlsx_files(api: Api, tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "products.xlsx",
        [["sku", "name", "price"], ["00123", "Zeros", 149], ["B", "Bad", "x"]],
        title="Data",
    )
    with api.client() as client:
        answer = client.post(
            "/api/v1/operations",
            data={"operation_type": "import", "entity_type": "products", "sheet": "Data"},
            files={"file": ("upload.csv", path.read_bytes(), "application/octet-stream")},
        )
        assert answer.status_code == 202, answer.text
        op = wait_for(client, answer.json()["id"], "completed", "failed")
        assert (op["created_records"], op["failed_records"]) == (1, 1)
        errors = client.get(f"/api/v1/operations/{op['id']}/errors", params={"format": "xlsx"})
        assert errors.status_code == 200
        assert errors.headers["content-type"] == XLSX_MEDIA_TYPE
        assert ".xlsx" in errors.headers["content-disposition"]
        by_accept = client.get(
            f"/api/v1/operations/{op['id']}/errors", headers={"Accept": XLSX_MEDIA_TYPE}
        )
        assert by_accept.headers["content-type"] == XLSX_MEDIA_TYPE
        sheet = load_workbook(io.BytesIO(errors.content)).active
        assert sheet["F2"].comment is not None

        missing = client.post(
            "/api/v1/operations",
            data={"operation_type": "import", "entity_type": "products", "sheet": "Nope"},
            files={"file": ("p.xlsx", path.read_bytes(), "application/octet-stream")},
        )
        assert missing.status_code == 422
        assert '"Data"' in missing.json()["detail"] and "`sheet`" in missing.json()["detail"]

        export = client.post(
            "/api/v1/operations",
            data={"operation_type": "export", "entity_type": "products", "format": "xlsx"},
        )
        assert export.status_code == 202, export.text
        done = wait_for(client, export.json()["id"], "completed", "failed")
        download = client.get(f"/api/v1/operations/{done['id']}/download")
        assert download.status_code == 200
        assert download.headers["content-type"] == XLSX_MEDIA_TYPE
        assert download.headers["content-disposition"].endswith('.xlsx"')
        rows = list(load_workbook(io.BytesIO(download.content)).active.values)
        assert rows[1][0] == "00123" and rows[1][4] == 149

        template = client.get("/api/v1/templates/products", params={"format": "xlsx"})
        assert template.status_code == 200
        assert template.headers["content-type"] == XLSX_MEDIA_TYPE
        assert load_workbook(io.BytesIO(template.content)).active["A1"].comment is not None
