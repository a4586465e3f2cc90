"""Reading workbooks: cell values as Excel shows them, sheets, errors naming their cell."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import xlsxwriter
from openpyxl import Workbook

from bulkops.entities import spec_for
from bulkops.errors import FileRejected, UnsupportedFile
from bulkops.formats import diagnose, open_table, table_format
from bulkops.formats.options import ReadOptions
from bulkops.model import OperationType
from tests.helpers import validate_records

Row = tuple[int, int, list[str], str | None]


def records(path: Path, **options: str) -> tuple[list[str], list[Row]]:
    with open_table(path, ReadOptions(**options)) as table:
        assert table.format == "xlsx"
        return table.header, [(r.row, r.line, list(r.values), r.error) for r in table.records()]


def every_cell_type(path: Path) -> Path:
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("Data")
    date = book.add_format({"num_format": "yyyy-mm-dd"})
    stamp = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    sheet.write_row(0, 0, ["text", "number", "other", "flag", "formula"])
    sheet.write_string(1, 0, "00123")
    sheet.write_number(1, 1, 100)
    sheet.write_number(1, 2, 12.5)
    sheet.write_boolean(1, 3, True)
    sheet.write_formula(1, 4, "=B2*2", None, 200)
    sheet.write_string(2, 0, "=1+1")
    sheet.write_number(2, 1, 0.1 + 0.2)
    sheet.write_datetime(2, 2, dt.datetime(2024, 3, 1), date)
    sheet.write_boolean(2, 3, False)
    sheet.write_formula(2, 4, '=CONCATENATE("a","b")', None, "ab")
    sheet.write_string(3, 0, "Crème 😀 a\r\nb")
    sheet.write_number(3, 1, 1e-05)
    sheet.write_datetime(3, 2, dt.datetime(2024, 3, 1, 14, 30), stamp)
    sheet.write_formula(3, 4, "=1/0", None, "#DIV/0!")
    # row 5 left empty: skipped, its number kept
    sheet.write_string(5, 0, "last")
    sheet.write_formula(5, 4, "=NA()", None, "#N/A")
    book.close()
    return path


def test_cell_values_are_the_text_excel_shows(tmp_path: Path) -> None:
    header, rows = records(every_cell_type(tmp_path / "cells.xlsx"))
    assert header == ["text", "number", "other", "flag", "formula"]
    assert rows[0] == (2, 2, ["00123", "100", "12.5", "TRUE", "200"], None)
    assert rows[1] == (3, 3, ["=1+1", "0.3", "2024-03-01", "FALSE", "ab"], None)
    row, line, values, error = rows[2]
    assert (row, line) == (4, 4)
    assert values[:4] == ["Crème 😀 a\r\nb", "0.00001", "2024-03-01T14:30:00", ""]
    assert error is not None and "Row 4, cell E4" in error and "#DIV/0!" in error
    row, _, values, error = rows[3]
    assert row == 6  # the empty row 5 is skipped but keeps its number
    assert error is not None and "cell E6" in error and "#N/A" in error


def test_decimal_comma_applies_to_number_cells(tmp_path: Path) -> None:
    _, rows = records(every_cell_type(tmp_path / "cells.xlsx"), decimal_separator=",")
    assert rows[0][2][:3] == ["00123", "100", "12,5"]


def test_a_sheet_is_chosen_by_name_and_a_missing_one_lists_the_sheets(tmp_path: Path) -> None:
    book = Workbook()
    book.active.title = "Notes"
    book.active.append(["just notes"])
    data = book.create_sheet("Products")
    data.append(["sku", "name"])
    data.append(["A-1", "One"])
    book.save(tmp_path / "two.xlsx")
    header, rows = records(tmp_path / "two.xlsx", sheet="products")
    assert header == ["sku", "name"] and rows == [(2, 2, ["A-1", "One"], None)]
    with pytest.raises(FileRejected) as info:
        open_table(tmp_path / "two.xlsx", ReadOptions(sheet="Prices"))
    problem = info.value.problems[0]
    assert problem.code == "unknown_sheet" and problem.hint_field == "sheet"
    assert '"Prices"' in problem.message and '"Notes", "Products"' in problem.message


def test_an_empty_first_sheet_is_rejected_naming_the_others(tmp_path: Path) -> None:
    book = Workbook()
    book.active.title = "Cover"
    book.create_sheet("Data").append(["sku", "name"])
    book.save(tmp_path / "empty-first.xlsx")
    with pytest.raises(FileRejected) as info:
        open_table(tmp_path / "empty-first.xlsx")
    problem = info.value.problems[0]
    assert problem.code == "empty_sheet"
    assert '"Cover" is empty' in problem.message and '"Data"' in problem.message


def test_leading_zeros_in_text_cells_survive(tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append(["sku", "name"])
    sheet.append(["000123", "zeros"])
    book.save(tmp_path / "zeros.xlsx")
    assert records(tmp_path / "zeros.xlsx")[1][0][2] == ["000123", "zeros"]


def test_an_xlsx_renamed_csv_is_read_by_its_content(tmp_path: Path) -> None:
    book = Workbook()
    book.active.append(["sku", "name"])
    book.active.append(["A", "B"])
    book.save(tmp_path / "products.xlsx")
    renamed = tmp_path / "products.csv"
    (tmp_path / "products.xlsx").rename(renamed)
    assert table_format(renamed) == "xlsx"
    assert records(renamed)[1] == [(2, 2, ["A", "B"], None)]


def test_an_xls_workbook_is_still_refused_with_advice(tmp_path: Path) -> None:
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    with pytest.raises(UnsupportedFile) as info:
        open_table(old)
    assert "Excel 97-2003 workbook (.xls)" in str(info.value)
    assert "Excel Workbook (.xlsx)" in str(info.value)


def test_a_value_right_of_the_header_is_a_row_error(tmp_path: Path) -> None:
    book = Workbook()
    book.active.append(["sku", "name"])
    book.active.append(["A", "B", None, "stray"])
    book.save(tmp_path / "wide.xlsx")
    [(_, _, values, error)] = records(tmp_path / "wide.xlsx")[1]
    assert values == ["A", "B"]
    assert error is not None and "cell D2" in error


def test_diagnose_names_the_encoding_the_byte_and_its_row(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(
        "sku,name\nA-1,Plain\nA-2,Crème brûlée à la française\n".encode("windows-1252")
    )
    found = diagnose(path)
    assert found is not None
    assert (found.encoding, found.label, found.byte, found.row, found.line) == (
        "windows-1252",
        "Windows-1252",
        0xE8,
        3,
        3,
    )
    assert found.summary == "looks like Windows-1252: byte 0xE8 at row 3"
    path.write_bytes("sku,name\nA-1,Crème\n".encode())
    assert diagnose(path) is None


@pytest.mark.parametrize(
    ("value", "stored", "why"),
    [
        ("149,00", "149.00", None),
        ("0,5", "0.50", None),
        ("12", "12.00", None),
        ("1.234,00", None, "thousands separator"),
        ("1,234.00", None, "thousands separator"),
        ("149.00", None, "decimal separator is a comma"),
        ("1,2,3", None, "more than one comma"),
        ("1,234", None, "more than 2 decimals"),
    ],
)
def test_decimal_comma_prices(value: str, stored: str | None, why: str | None) -> None:
    validator = spec_for("products").validator(
        OperationType.IMPORT, frozenset({"sku", "name", "price"}), ","
    )
    [result] = validate_records(validator, [{"sku": "A", "name": "B", "price": value}])
    if stored is not None:
        assert isinstance(result, dict) and result["price"] == stored
    else:
        assert isinstance(result, list)
        assert why is not None and why in result[0].message


def test_inline_strings_plain_and_rich_read_as_their_text(tmp_path: Path) -> None:
    """The cells XlsxWriter's constant-memory mode writes (bulkops' exports) and rich text:
    the text Excel shows, runs joined, the line break and spaces kept."""
    from openpyxl.cell.rich_text import CellRichText, TextBlock
    from openpyxl.cell.text import InlineFont

    path = tmp_path / "inline.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["sku", "name", "description"])
    sheet.write_row(1, 0, ["00123", "  Café  ", "two\nlines"])
    book.close()
    _, rows = records(path)
    assert rows[0][2] == ["00123", "  Café  ", "two\nlines"]

    rich = tmp_path / "rich.xlsx"
    workbook = Workbook()
    ws = workbook.active
    ws.append(["sku", "name"])
    ws["A2"] = "R-1"
    ws["B2"] = CellRichText("Bold ", TextBlock(InlineFont(b=True), "part"), " and plain")
    workbook.save(rich)
    _, rows = records(rich)
    assert rows[0][2] == ["R-1", "Bold part and plain"]


@pytest.mark.parametrize("inline", [False, True], ids=["shared strings", "inline strings"])
def test_the_count_of_a_sheet_is_the_number_of_records_read(
    tmp_path: Path, inline: bool
) -> None:
    """Rows of only blank text (a space, a non-breaking space, a formula giving "") are
    skipped by the read and not counted; a value anywhere else is a record."""
    path = tmp_path / "blanks.xlsx"
    book = xlsxwriter.Workbook(str(path), {"constant_memory": inline})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["sku", "name"])
    sheet.write_row(1, 0, ["A-1", "Chair"])
    sheet.write_string(2, 0, " ")  # blank
    sheet.write_row(3, 0, ["\u00a0", "\u3000 "])  # blank
    sheet.write_formula(4, 1, '=""', None, "")  # blank: the formula's cached text
    sheet.write_formula(5, 1, '="x"', None, "x")
    sheet.write_string(6, 3, "   ")  # blank, right of the header: ignored
    sheet.write_number(7, 3, 5)  # a value right of the header: a row error
    sheet.write_row(8, 0, [" ", "B-2"])
    sheet.write_boolean(9, 0, False)
    sheet.write_row(10, 0, ["A-3", "Table"])
    book.close()
    with open_table(path, ReadOptions()) as table:
        counted = table.count_records()
    _, rows = records(path)
    assert [row for row, *_ in rows] == [2, 6, 8, 9, 10, 11]
    assert counted == len(rows)


def test_the_count_agrees_with_the_read_over_random_sheets(tmp_path: Path) -> None:
    """Sheets of rows drawn at random from every kind of cell, blank or not, in both ways
    of storing text; the first, third... sheets without any blank text at all."""
    import random

    draw = random.Random(17)
    blanks = [" ", "\u00a0", "\t", "\u3000", "_x0020_", " \n "]
    texts = ["A", "café", "_x0041_", "&", "<b>", " x ", "1 "]
    for n in range(24):
        path = tmp_path / f"random{n}.xlsx"
        book = xlsxwriter.Workbook(str(path), {"constant_memory": n % 4 >= 2})
        sheet = book.add_worksheet()
        sheet.write_row(0, 0, ["sku", "name", "price"])
        for row in range(1, 16):
            for column in range(draw.choice([1, 2, 3, 5])):
                kind = draw.choice(["blank", "text", "number", "formula", "none", "bool"])
                if (n % 2 == 0 and kind == "blank") or kind == "none":
                    continue
                if kind == "blank":
                    sheet.write_string(row, column, draw.choice(blanks))
                elif kind == "text":
                    sheet.write_string(row, column, draw.choice(texts))
                elif kind == "number":
                    sheet.write_number(row, column, draw.choice([0, 1.5, -3]))
                elif kind == "bool":
                    sheet.write_boolean(row, column, draw.choice([True, False]))
                else:
                    shown = draw.choice(["", " ", "x"])
                    sheet.write_formula(row, column, f'="{shown}"', None, shown)
        book.close()
        with open_table(path, ReadOptions()) as table:
            counted = table.count_records()
        assert counted == len(records(path)[1]), path.name


def test_the_count_reads_inline_text_written_without_its_space_attribute(tmp_path: Path) -> None:
    """Some programs write an inline string's spaces without ``xml:space="preserve"``: a
    cell of spaces is still blank text."""
    import zipfile

    made = tmp_path / "made.xlsx"
    book = xlsxwriter.Workbook(str(made), {"constant_memory": True})
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["sku", "name"])
    sheet.write_row(1, 0, ["  ", " "])
    sheet.write_row(2, 0, ["A-1", " Chair"])
    book.close()
    path = tmp_path / "bare.xlsx"
    with zipfile.ZipFile(made) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/"):
                assert b'xml:space="preserve"' in data
                data = data.replace(b' xml:space="preserve"', b"")
            target.writestr(item, data)
    with open_table(path, ReadOptions()) as table:
        counted = table.count_records()
    _, rows = records(path)
    assert [(row, values) for row, _, values, _ in rows] == [(3, ["A-1", " Chair"])]
    assert counted == 1
