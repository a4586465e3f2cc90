"""Workbooks and European CSV files from the command line: --sheet, --decimal-separator and
--format xlsx (export, template, error report), through the real commands."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook, load_workbook

from tests.e2e.test_cli import Cli


def _workbook(path: Path) -> Path:
    book = Workbook()
    first = book.active
    first.title = "Notes"
    first.append(["nothing to import here"])
    prices = book.create_sheet("Prices")
    prices.append(["sku", "name", "price"])
    prices.append(["00123", "Hammer", 12.5])
    prices.append(["B-2", "Saw", "abc"])
    book.save(path)
    return path


def test_a_sheet_is_chosen_by_name_and_an_unknown_one_lists_them(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli("init").exit_code == 0
    book = _workbook(tmp_path / "catalogue.xlsx")

    wrong = cli("import", "products", str(book), "--sheet", "Pricing")
    assert wrong.exit_code == 2
    assert 'Its sheets: "Notes", "Prices". Give it with --sheet.' in wrong.output

    done = cli.json("import", "products", str(book), "--sheet", "prices")
    assert (done["created_records"], done["failed_records"]) == (1, 1)
    assert done["outcome"] == "completed_with_errors"
    report = tmp_path / "errors.xlsx"
    assert cli("errors", done["id"][:8], "-o", str(report)).exit_code == 0
    sheet = load_workbook(report).active
    assert [c.value for c in sheet[1]][:4] == ["_row", "_line", "_errors", "sku"]
    assert sheet["F2"].value == "abc" and sheet["F2"].comment is not None  # the failing cell

    exported = tmp_path / "products.xlsx"
    assert cli("export", "products", "-o", str(exported)).exit_code == 0
    rows = list(load_workbook(exported).active.values)
    assert rows[1][0] == "00123"  # a text cell: the leading zeros stay
    template = tmp_path / "t.xlsx"
    assert cli("template", "pricing", "--format", "xlsx", "-o", str(template)).exit_code == 0
    assert load_workbook(template).active["A1"].comment is not None


def test_decimal_commas_from_the_command_line(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    assert cli("init").exit_code == 0
    path = cli.file("eu.csv", "sku;name;price\nE-1;Un;149,00\nE-2;Deux;1.234,00\n")
    done = cli.json("import", "products", str(path), "--decimal-separator", ",")
    assert (done["created_records"], done["failed_records"]) == (1, 1)
    rows = cli.export_rows("products")
    assert rows[1][0] == "E-1" and rows[1][-1] == "149.00"
