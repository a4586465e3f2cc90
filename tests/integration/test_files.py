"""Files as users make them, end to end through the engine, on SQLite and PostgreSQL.

Each test writes a file, runs an operation on it and checks what a user would see: the rows
in the table, the counters, and the error report (row, line, column, message).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest

from bulkops.engine import Context, export_path, write_error_report
from bulkops.engine.operations import store_file
from bulkops.errors import FileRejected, UnsupportedFile
from tests.helpers import run, table

HEADER = "sku,name,description,category,price\n"


def write(path: Path, content: str | bytes) -> Path:
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def error_report(ctx: Context, org_id: int, op: dict[str, Any]) -> list[dict[str, str]]:
    """The error report as a user downloads it, one dict per failed row."""
    stream = io.StringIO()
    write_error_report(ctx, org_id, op, stream)
    return list(csv.DictReader(io.StringIO(stream.getvalue())))


def products(ctx: Context, org_id: int) -> dict[str, tuple[Any, ...]]:
    """sku -> (name, description, category, price) of every stored product."""
    return {row[1]: row[2:] for row in table(ctx, org_id, "products")}


def rejected(ctx: Context, org_id: int, path: Path, **config: Any) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        run(ctx, org_id, "import", "products", path, **config)
    assert products(ctx, org_id) == {}
    return info.value


# -- whole-file problems: rejected before anything changes ---------------------------------


def test_empty_file_is_rejected(ctx: Context, org_id: int, tmp_path: Path) -> None:
    problem = rejected(ctx, org_id, write(tmp_path / "empty.csv", b"")).problems[0]
    assert problem.code == "empty_file"
    assert "empty" in problem.message


def test_whitespace_only_file_is_rejected(ctx: Context, org_id: int, tmp_path: Path) -> None:
    error = rejected(ctx, org_id, write(tmp_path / "blank.csv", "\n\n  \n"))
    assert error.problems[0].code in {"empty_file", "no_header"}


def test_header_only_file_completes_with_nothing_to_do(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(ctx, org_id, "import", "products", write(tmp_path / "h.csv", HEADER))
    assert op.status == "completed"
    assert (op.total_records, op.processed_records, op.failed_records) == (0, 0, 0)
    assert products(ctx, org_id) == {}


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 200, "ZIP"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"1 0 obj\n" * 20, "PDF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 100, "PNG"),
        (b"sku,name,price\nA-1,\x00\x00\x00,1.00\n" + b"\x00\x01" * 50, ""),
    ],
    ids=["xlsx-renamed", "pdf", "png", "nul-bytes"],
)
def test_binary_file_renamed_csv_is_unsupported(
    ctx: Context, org_id: int, tmp_path: Path, content: bytes, looks_like: str
) -> None:
    path = write(tmp_path / "products.csv", content)
    with pytest.raises(UnsupportedFile) as info:
        run(ctx, org_id, "import", "products", path)
    assert info.value.http_status == 415
    assert info.value.exit_code == 2
    assert looks_like in str(info.value)
    assert "CSV" in str(info.value)
    assert products(ctx, org_id) == {}


class _ReadOnly:
    """A stream with ``read`` alone (no ``readinto``), as some upload wrappers are."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)


@pytest.mark.parametrize("given", ["path", "stream", "read-only stream"])
def test_a_file_of_many_blocks_is_stored_whole_with_its_checksum(
    ctx: Context, org_id: int, tmp_path: Path, given: str
) -> None:
    # Over a megabyte, and not a multiple of any block size: every block and the tail count.
    rows = "".join(f"SKU-{i:06d},Chair {i},,Furniture,{i % 900 + 1}.50\n" for i in range(30_001))
    data = (HEADER + rows).encode()
    path = write(tmp_path / "big.csv", data)
    source = {"path": path, "stream": io.BytesIO(data), "read-only stream": _ReadOnly(data)}
    stored, size, sha256 = store_file(ctx, org_id, source[given])  # type: ignore[arg-type]
    assert stored != path and stored.read_bytes() == data
    assert (size, sha256) == (len(data), hashlib.sha256(data).hexdigest())


def test_duplicate_unknown_and_missing_columns_are_listed_together(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write(tmp_path / "h.csv", "SKU ,name,Name,colour,prce\nA-1,b,c,d,1.00\n")
    problems = rejected(ctx, org_id, path).problems
    by_code: dict[str, list[Any]] = {}
    for problem in problems:
        by_code.setdefault(problem.code, []).append(problem)
    assert [p.column for p in by_code["duplicate_column"]] == ["name"]
    assert "columns 2 and 3" in by_code["duplicate_column"][0].message
    unknown = {p.column: p for p in by_code["unknown_column"]}
    assert set(unknown) == {"colour", "prce"}
    assert unknown["prce"].suggestion == "price"
    assert "Did you mean 'price'?" in unknown["prce"].message
    assert "sku, name, description, category, price" in unknown["colour"].message


def test_missing_required_columns_are_all_named(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write(tmp_path / "h.csv", "description,category\nx,y\n")
    message = str(rejected(ctx, org_id, path))
    assert "sku" in message and "name" in message


def test_unknown_column_can_be_mapped_or_ignored(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write(tmp_path / "m.csv", "Article,Title,colour\nM-1,Mapped,red\n")
    op = run(ctx, org_id, "import", "products", path,
             mapping={"Article": "sku", "title": "name", "colour": ""})
    assert (op.created_records, op.failed_records) == (1, 0)
    assert products(ctx, org_id) == {"M-1": ("Mapped", None, None, None)}


# -- encodings ---------------------------------------------------------------------------------


def test_utf8_with_bom(ctx: Context, org_id: int, tmp_path: Path) -> None:
    content = codecs.BOM_UTF8 + (HEADER + "B-1,Café Crème,,Küche,1.00\n").encode("utf-8")
    op = run(ctx, org_id, "import", "products", write(tmp_path / "bom.csv", content))
    assert (op.created_records, op.failed_records) == (1, 0)
    assert products(ctx, org_id) == {"B-1": ("Café Crème", None, "Küche", "1.00")}


def test_utf16_le_with_bom_and_crlf(ctx: Context, org_id: int, tmp_path: Path) -> None:
    text = (HEADER + "U-1,Ünïcode €,\"Zwei\nZeilen\",x,2.00\nU-2,日本語,,x,3.00\n")
    content = codecs.BOM_UTF16_LE + text.replace("\n", "\r\n").encode("utf-16-le")
    op = run(ctx, org_id, "import", "products", write(tmp_path / "u16.csv", content))
    assert (op.created_records, op.failed_records) == (2, 0)
    stored = products(ctx, org_id)
    assert stored["U-1"][0] == "Ünïcode €"
    assert stored["U-1"][1] == "Zwei\r\nZeilen"  # stored exactly as given
    assert stored["U-2"][0] == "日本語"


def test_windows_1252_when_the_encoding_is_given(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    content = (HEADER + "W-1,Crème brûlée – 5 €,,x,3.00\n").encode("windows-1252")
    path = write(tmp_path / "excel.csv", content)
    op = run(ctx, org_id, "import", "products", path, encoding="windows-1252")
    assert (op.created_records, op.failed_records) == (1, 0)
    assert products(ctx, org_id)["W-1"][0] == "Crème brûlée – 5 €"


# A Windows-1252 file without the encoding: tests/integration/test_encodings.py


# -- delimiters and quoting ------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_other_delimiters_are_detected(
    ctx: Context, org_id: int, tmp_path: Path, delimiter: str
) -> None:
    text = HEADER.replace(",", delimiter) + delimiter.join(
        ["S-1", "Semi", "a, b", "x", "4.50"]) + "\n"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "s.csv", text))
    assert (op.created_records, op.failed_records) == (1, 0)
    assert products(ctx, org_id) == {"S-1": ("Semi", "a, b", "x", "4.50")}


def test_given_delimiter_wins(ctx: Context, org_id: int, tmp_path: Path) -> None:
    # the header alone would look comma-delimited
    text = "sku;name,with comma\nG-1;Given\n"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "g.csv", text), delimiter=";",
             mapping={"name,with comma": "name"})
    assert (op.created_records, op.failed_records) == (1, 0)
    assert products(ctx, org_id)["G-1"][0] == "Given"


def test_quoted_newlines_give_row_and_line_numbers(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        HEADER
        + 'Q-1,"multi\nline\nname","with ""quotes"", and commas",x,1.00\n'
        + "Q-2,Bad,,x,abc\n"
        + 'Q-3,"two\r\nlines",,x,1.00\r\n'
        + "Q-4,,,x,1.00\n"
    )
    op = run(ctx, org_id, "import", "products", write(tmp_path / "q.csv", text))
    assert (op.created_records, op.failed_records) == (2, 2)
    stored = products(ctx, org_id)
    assert stored["Q-1"][:2] == ("multi\nline\nname", 'with "quotes", and commas')
    errors = error_report(ctx, org_id, op)
    assert [(e["_row"], e["_line"], e["sku"]) for e in errors] == [
        ("3", "5", "Q-2"),
        ("5", "8", "Q-4"),
    ]
    assert errors[0]["_errors"].startswith("price:") and "abc" in errors[0]["_errors"]
    assert errors[1]["_errors"].startswith("name:") and "required" in errors[1]["_errors"]


def test_blank_lines_are_skipped_but_keep_row_numbers(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = HEADER + "K-1,One,,x,1.00\n\n,,,,\nK-4,,,x,1.00\n"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "b.csv", text))
    assert (op.created_records, op.failed_records) == (1, 1)
    [error] = error_report(ctx, org_id, op)
    assert (error["_row"], error["_line"]) == ("5", "5")


def test_ragged_rows_are_row_errors_and_the_rest_is_imported(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        HEADER
        + "R-1,Short,x\n"
        + "R-2,Long,,x,1.00,extra\n"
        + "R-3,Trailing comma,,x,1.00,\n"
        + "R-4,Fine,,x,1.00\n"
    )
    op = run(ctx, org_id, "import", "products", write(tmp_path / "r.csv", text))
    assert (op.total_records, op.created_records, op.failed_records) == (4, 1, 3)
    assert set(products(ctx, org_id)) == {"R-4"}
    errors = error_report(ctx, org_id, op)
    assert [(e["_row"], e["_line"]) for e in errors] == [("2", "2"), ("3", "3"), ("4", "4")]
    assert "3 fields" in errors[0]["_errors"] and "5 columns" in errors[0]["_errors"]
    assert "6 fields" in errors[1]["_errors"]
    assert errors[0]["sku"] == "R-1" and errors[0]["name"] == "Short"


def test_unclosed_quote_in_the_middle_does_not_swallow_the_rest(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        HEADER
        + "V-1,Before,,x,1.00\n"
        + 'V-2,"Broken,,x,1.00\n'
        + "V-3,After,,x,1.00\n"
        + 'V-4,"Fine ""quoted""",,x,2.00\n'
        + "V-5,Bad,,x,-1\n"
    )
    op = run(ctx, org_id, "import", "products", write(tmp_path / "u.csv", text))
    assert (op.total_records, op.created_records, op.failed_records) == (5, 3, 2)
    stored = products(ctx, org_id)
    assert set(stored) == {"V-1", "V-3", "V-4"}
    assert stored["V-4"][0] == 'Fine "quoted"'
    errors = error_report(ctx, org_id, op)
    assert [(e["_row"], e["_line"]) for e in errors] == [("3", "3"), ("6", "6")]
    assert "quote" in errors[0]["_errors"] and "never closed" in errors[0]["_errors"]
    assert errors[0]["sku"] == "V-2"


def test_crlf_and_a_missing_final_newline(ctx: Context, org_id: int, tmp_path: Path) -> None:
    text = HEADER.replace("\n", "\r\n") + "C-1,One,,x,1.00\r\nC-2,Two,,x,2.00"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "c.csv", text))
    assert (op.created_records, op.failed_records) == (2, 0)
    assert products(ctx, org_id)["C-2"] == ("Two", None, "x", "2.00")


# -- values -------------------------------------------------------------------------------------


def test_duplicate_key_is_an_error_on_the_later_row_naming_the_earlier(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = HEADER + "D-1,First,,x,1.00\nD-2,Other,,x,1.00\nD-1,Second,,x,2.00\n"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "d.csv", text))
    assert (op.created_records, op.failed_records) == (2, 1)
    assert products(ctx, org_id)["D-1"][0] == "First"
    [error] = error_report(ctx, org_id, op)
    assert (error["_row"], error["_line"], error["name"]) == ("4", "4", "Second")
    assert "D-1" in error["_errors"] and "row 2" in error["_errors"]


def test_customer_emails_are_duplicates_regardless_of_case(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = "email,name\nAnn@Example.com,Ann\nann@example.COM,Ann again\n"
    op = run(ctx, org_id, "import", "customers", write(tmp_path / "c.csv", text))
    assert (op.created_records, op.failed_records) == (1, 1)
    assert [row[1] for row in table(ctx, org_id, "customers")] == ["ann@example.com"]
    [error] = error_report(ctx, org_id, op)
    assert error["_row"] == "3" and "row 2" in error["_errors"]


def test_decimal_comma_is_a_row_error(ctx: Context, org_id: int, tmp_path: Path) -> None:
    text = HEADER + 'E-1,Comma,,x,"12,50"\nE-2,Point,,x,12.5\n'
    op = run(ctx, org_id, "import", "products", write(tmp_path / "e.csv", text))
    assert (op.created_records, op.failed_records) == (1, 1)
    assert products(ctx, org_id) == {"E-2": ("Point", None, "x", "12.50")}
    [error] = error_report(ctx, org_id, op)
    assert (error["_row"], error["price"]) == ("2", "12,50")
    assert error["_errors"].startswith("price:")
    assert "12,50" in error["_errors"] and "point" in error["_errors"]


@pytest.mark.parametrize(
    ("entity", "header", "make_row", "limit", "column"),
    [
        ("products", HEADER, lambda v: f"L-1,{v},,x,1.00", 255, "name"),
        ("products", HEADER, lambda v: f"{v},Name,,x,1.00", 64, "sku"),
        ("products", HEADER, lambda v: f"L-1,Name,,{v},1.00", 100, "category"),
        ("warehouses", "code,name\n", lambda v: f"{v},Main", 32, "code"),
        ("customers", "email,name,company,price_tier\n", lambda v: f"a@b.com,A,,{v}", 50,
         "price_tier"),
    ],
)
def test_value_over_its_length_limit_is_a_row_error(
    ctx: Context, org_id: int, tmp_path: Path, entity: str, header: str, make_row: Any,
    limit: int, column: str,
) -> None:
    at_limit = write(tmp_path / "ok.csv", header + make_row("a" * limit) + "\n")
    op = run(ctx, org_id, "import", entity, at_limit)
    assert (op.created_records, op.failed_records) == (1, 0)

    over = write(tmp_path / "long.csv", header + make_row("b" * (limit + 1)) + "\n")
    op = run(ctx, org_id, "import", entity, over)
    assert (op.processed_records, op.failed_records) == (1, 1)
    [error] = error_report(ctx, org_id, op)
    assert error["_row"] == "2"
    assert error["_errors"].startswith(f"{column}:")
    assert f"{limit + 1} characters" in error["_errors"] and str(limit) in error["_errors"]
    assert len(table(ctx, org_id, entity)) == 1


def test_values_are_trimmed_and_control_characters_refused(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = HEADER + "  T-1  ,  Spaced  ,,x, 1.00 \nT-2,Bell\x07,,x,1.00\n"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "t.csv", text))
    assert (op.created_records, op.failed_records) == (1, 1)
    assert products(ctx, org_id) == {"T-1": ("Spaced", None, "x", "1.00")}
    [error] = error_report(ctx, org_id, op)
    assert error["_row"] == "3" and error["_errors"].startswith("name:")


# -- formula neutralisation -----------------------------------------------------------------------


def test_formula_like_cells_are_neutralised_on_export_and_round_trip(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        HEADER
        + 'F-1,=SUM(A1:A9),"=HYPERLINK(""http://evil"")",@cmd,1.00\n'
        + "F-2,+plus,-minus,  =spaced,2.00\n"
        + "F-3,-5.00,+3,-1e5,3.00\n"
        + "F-4,'=was quoted,＝fullwidth,'plain,4.00\n"
    )
    op = run(ctx, org_id, "import", "products", write(tmp_path / "f.csv", text))
    assert (op.created_records, op.failed_records) == (4, 0)
    stored = products(ctx, org_id)
    # stored exactly as given (after trimming), minus one neutralising quote
    assert stored["F-1"][:3] == ("=SUM(A1:A9)", '=HYPERLINK("http://evil")', "@cmd")
    assert stored["F-2"][:3] == ("+plus", "-minus", "=spaced")
    assert stored["F-3"][:3] == ("-5.00", "+3", "-1e5")
    assert stored["F-4"][:3] == ("=was quoted", "＝fullwidth", "'plain")

    exported = run(ctx, org_id, "export", "products")
    content = export_path(ctx, org_id, exported.id).read_bytes().decode("utf-8")
    rows = {row[0]: row[1:] for row in csv.reader(io.StringIO(content, newline=""))}
    assert rows["F-1"][:3] == ["'=SUM(A1:A9)", "'=HYPERLINK(\"http://evil\")", "'@cmd"]
    assert rows["F-2"][:3] == ["'+plus", "'-minus", "'=spaced"]
    assert rows["F-3"][:3] == ["-5.00", "+3", "-1e5"]  # numeric literals are left alone
    assert rows["F-4"][:2] == ["'=was quoted", "'＝fullwidth"]
    assert content.startswith("sku,name,description,category,price\r\n")

    again = run(ctx, org_id, "import", "products", write(tmp_path / "export.csv", content))
    assert (again.total_records, again.unchanged_records) == (4, 4)
    assert (again.created_records, again.updated_records, again.failed_records) == (
        0, 0, 0)
    assert products(ctx, org_id) == stored


def test_error_report_neutralises_formulas_and_imports_again(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = HEADER + "N-1,=1+1,,x,abc\n"
    op = run(ctx, org_id, "import", "products", write(tmp_path / "n.csv", text))
    stream = io.StringIO()
    write_error_report(ctx, org_id, op, stream)
    report = stream.getvalue()
    assert "'=1+1" in report
    fixed = report.replace(",abc", ",1.00")
    again = run(ctx, org_id, "import", "products", write(tmp_path / "fixed.csv", fixed))
    assert (again.created_records, again.failed_records) == (1, 0)
    assert products(ctx, org_id)["N-1"][0] == "=1+1"
