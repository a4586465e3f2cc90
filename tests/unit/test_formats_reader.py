"""The CSV reader, tested on real files the way users produce them."""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.errors import FileRejected, FileTooLarge, UnsupportedFile, UsageError
from bulkops.formats import ReadLimits, ReadOptions, open_csv, sniff_content
from bulkops.model import RawRecord


def write(tmp_path: Path, content: str | bytes, name: str = "upload.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def read_all(
    path: Path,
    options: ReadOptions = ReadOptions(),  # noqa: B008
    limits: ReadLimits = ReadLimits(),  # noqa: B008
) -> tuple[list[str], list[RawRecord]]:
    with open_csv(path, options, limits) as csv_file:
        return csv_file.header, list(csv_file.records())


def rejected(path: Path, **kwargs: object) -> FileRejected:
    with pytest.raises(FileRejected) as info:
        read_all(path, **kwargs)  # type: ignore[arg-type]
    return info.value


# -- happy paths ------------------------------------------------------------------------


def test_reads_header_and_records_with_row_and_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "sku,name,price\nA-1,Chair,10.00\nA-2,Table,99.50\n")
    with open_csv(path) as csv_file:
        assert csv_file.header == ["sku", "name", "price"]
        assert csv_file.delimiter == ","
        assert csv_file.encoding == "utf-8"
        assert csv_file.file_size_bytes == path.stat().st_size
        records = list(csv_file.records())
        assert csv_file.bytes_consumed == path.stat().st_size
    assert records == [
        RawRecord(row=2, line=2, values=["A-1", "Chair", "10.00"]),
        RawRecord(row=3, line=3, values=["A-2", "Table", "99.50"]),
    ]


def test_header_cells_are_trimmed_but_values_are_kept_as_given(tmp_path: Path) -> None:
    header, records = read_all(write(tmp_path, " sku , name \n A , b \n"))
    assert header == ["sku", "name"]
    assert records[0].values == [" A ", " b "]
    assert records[0].error is None


def test_header_only_file_has_no_records(tmp_path: Path) -> None:
    header, records = read_all(write(tmp_path, "sku,name\r\n"))
    assert header == ["sku", "name"]
    assert records == []


def test_last_line_without_newline_is_read(tmp_path: Path) -> None:
    _, records = read_all(write(tmp_path, "sku,name\nA,b"))
    assert records == [RawRecord(row=2, line=2, values=["A", "b"])]


def test_crlf_line_ends(tmp_path: Path) -> None:
    _, records = read_all(write(tmp_path, 'sku,name\r\nA,"two\r\nlines"\r\nB,c\r\n'))
    assert records == [
        RawRecord(row=2, line=2, values=["A", "two\r\nlines"]),
        RawRecord(row=3, line=4, values=["B", "c"]),
    ]


def test_quoted_newlines_make_line_differ_from_row(tmp_path: Path) -> None:
    content = 'sku,description\nA,"first\nsecond\nthird"\nB,"say ""hi"", ok"\nC,plain\n'
    _, records = read_all(write(tmp_path, content))
    assert [(r.row, r.line) for r in records] == [(2, 2), (3, 5), (4, 6)]
    assert records[0].values == ["A", "first\nsecond\nthird"]
    assert records[1].values == ["B", 'say "hi", ok']


def test_blank_lines_are_skipped_but_keep_spreadsheet_row_numbers(tmp_path: Path) -> None:
    content = "sku,name\nA,a\n\n   \n,\nB,b\n"
    _, records = read_all(write(tmp_path, content))
    assert [(r.row, r.line, r.values) for r in records] == [
        (2, 2, ["A", "a"]),
        (6, 6, ["B", "b"]),
    ]


def test_empty_first_value_is_not_a_blank_record(tmp_path: Path) -> None:
    _, records = read_all(write(tmp_path, "sku,name\n,b\n"))
    assert records == [RawRecord(row=2, line=2, values=["", "b"])]


# -- encodings --------------------------------------------------------------------------


def test_utf8_bom_is_removed(tmp_path: Path) -> None:
    path = write(tmp_path, codecs.BOM_UTF8 + "sku,name\nA,Café\n".encode())
    with open_csv(path) as csv_file:
        assert csv_file.header == ["sku", "name"]
        assert csv_file.encoding == "utf-8-sig"
        assert [r.values for r in csv_file.records()] == [["A", "Café"]]


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path: Path, codec: str) -> None:
    bom = codecs.BOM_UTF16_LE if codec == "utf-16-le" else codecs.BOM_UTF16_BE
    path = write(tmp_path, bom + "sku\tname\r\nA\tCafé 😀\r\n".encode(codec))
    with open_csv(path) as csv_file:
        assert csv_file.header == ["sku", "name"]
        assert csv_file.delimiter == "\t"
        assert csv_file.encoding == "utf-16"
        records = list(csv_file.records())
    assert records == [RawRecord(row=2, line=2, values=["A", "Café 😀"])]


def test_windows_1252_when_encoding_is_given(tmp_path: Path) -> None:
    path = write(tmp_path, b"sku;name;price\nA;Caf\xe9;\x805\n")
    with open_csv(path, ReadOptions(encoding="windows-1252")) as csv_file:
        assert csv_file.encoding == "windows-1252"
        records = list(csv_file.records())
    assert records == [RawRecord(row=2, line=2, values=["A", "Café", "€5"])]


# The first 64 KiB are checked as a whole (a file that is not UTF-8 there is rejected); an
# undecodable byte further on costs its own record only.
_VALID_START = b"".join(b"A%05d,ok\n" % i for i in range(8000))


def test_invalid_utf8_in_a_record_is_a_row_error_and_later_rows_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, b"sku,name\n" + _VALID_START + b"B,Caf\xe9\nC,fine\n")
    _, records = read_all(path)
    records = records[-2:]
    bad = records[0]
    assert bad.values == ["B", "Caf\ufffd"]
    assert bad.error is not None
    assert bad.error.startswith("Row 8002 contains bytes that are not valid UTF-8")
    assert "0xE9" in bad.error
    assert 'column 2 ("name")' in bad.error
    assert "the encoding windows-1252" in bad.error and "--encoding" not in bad.error
    assert records[1] == RawRecord(row=8003, line=8003, values=["C", "fine"])


def test_invalid_utf8_in_the_header_rejects_the_file(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, b"sku,d\xe9signation\nA,b\n"))
    problem = error.problems[0]
    assert problem.code == "undecodable"
    assert problem.line == 1
    assert "not UTF-8" in problem.message
    assert "byte 0xE9 at row 1" in problem.message
    assert (problem.hint_field, problem.hint_value) == ("encoding", "windows-1252")


def test_unknown_encoding_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Unknown encoding"):
        open_csv(write(tmp_path, "a\n"), ReadOptions(encoding="klingon"))


# -- delimiters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "delimiter"),
    [
        ("sku;name;price\nA;b,c;1\n", ";"),
        ("sku\tname\tprice\nA\tb;c\t1\n", "\t"),
        ("sku|name|price\nA|b|1\n", "|"),
        ('"a;b",c,d\nA,b,1\n', ","),
        ("sku\nA\n", ","),
    ],
)
def test_delimiter_is_detected_from_the_header(
    tmp_path: Path, content: str, delimiter: str
) -> None:
    with open_csv(write(tmp_path, content)) as csv_file:
        assert csv_file.delimiter == delimiter
        records = list(csv_file.records())
    assert all(r.error is None for r in records)


def test_given_delimiter_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "a;b,c\n1;2,3\n")
    header, records = read_all(path, options=ReadOptions(delimiter=";"))
    assert header == ["a", "b,c"]
    assert records[0].values == ["1", "2,3"]
    header, _ = read_all(write(tmp_path, "a\tb\n", "t.tsv"), options=ReadOptions(delimiter="tab"))
    assert header == ["a", "b"]


def test_unsupported_delimiter_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="Unsupported delimiter"):
        open_csv(write(tmp_path, "a\n"), ReadOptions(delimiter="#"))


# -- broken records ---------------------------------------------------------------------


def test_ragged_rows_are_row_errors_with_their_values(tmp_path: Path) -> None:
    content = "a,b,c,d,e\n1,2,3,4,5\n1,2,3\n1,2,3,4,5,\n1,2,3,4,5\n"
    _, records = read_all(write(tmp_path, content))
    assert [r.error is None for r in records] == [True, False, False, True]
    assert records[1].values == ["1", "2", "3"]
    assert records[1].error is not None
    assert records[1].error.startswith("Row 3 has 3 fields but the header has 5 columns.")
    assert records[2].values == ["1", "2", "3", "4", "5", ""]
    assert records[2].error is not None
    assert "Row 4 has 6 fields but the header has 5 columns." in records[2].error


def test_unclosed_quote_in_the_middle_does_not_swallow_the_rest(tmp_path: Path) -> None:
    lines = ["sku,name,qty"] + [f"S{i},name {i},{i}" for i in range(1, 11)]
    lines[3] = 'S3,"name 3,3'  # record 3: the quote is never closed
    _, records = read_all(write(tmp_path, "\n".join(lines) + "\n"))
    assert len(records) == 10
    broken = records[2]
    assert (broken.row, broken.line) == (4, 4)
    assert broken.values == ["S3", "name 3,3"]
    assert broken.error is not None
    assert broken.error.startswith("Row 4 (line 4) has a quote that is never closed")
    assert [(r.row, r.line, r.values, r.error) for r in records[3:]] == [
        (i + 1, i + 1, [f"S{i}", f"name {i}", str(i)], None) for i in range(4, 11)
    ]


def test_unclosed_quote_closed_by_a_later_quote_is_still_caught(tmp_path: Path) -> None:
    content = 'sku,name\nA,"open\nB,b\nC,"quoted"\nD,d\n'
    _, records = read_all(write(tmp_path, content))
    assert [(r.row, r.line, r.values) for r in records] == [
        (2, 2, ["A", "open"]),
        (3, 3, ["B", "b"]),
        (4, 4, ["C", "quoted"]),
        (5, 5, ["D", "d"]),
    ]
    assert records[0].error is not None
    assert "quote that is never closed" in records[0].error
    assert [r.error for r in records[1:]] == [None, None, None]


def test_unclosed_quote_over_the_line_limit(tmp_path: Path) -> None:
    content = 'sku,name\nA,"open\n' + "".join(f"x{i}\n" for i in range(10)) + 'B,"b"\n'
    limits = ReadLimits(max_record_lines=3)
    _, records = read_all(write(tmp_path, content), limits=limits)
    assert records[0].error is not None
    assert "more than 3 lines" in records[0].error
    assert records[-1] == RawRecord(row=13, line=13, values=["B", "b"])
    assert [r.row for r in records] == list(range(2, 14))


def test_unclosed_quote_at_the_end_of_the_file(tmp_path: Path) -> None:
    _, records = read_all(write(tmp_path, 'sku,name\nA,a\nB,"never closed\nC,c\n'))
    assert records[1].error is not None
    assert "to the end of the file" in records[1].error
    assert records[1].values == ["B", "never closed"]
    assert records[2] == RawRecord(row=4, line=4, values=["C", "c"], error=None)


def test_field_too_long_names_the_column(tmp_path: Path) -> None:
    content = f"sku,name\nA,{'x' * 50}\nB,b\n"
    _, records = read_all(write(tmp_path, content), limits=ReadLimits(max_field_bytes=20))
    assert records[0].error is not None
    assert 'column 2 ("name") is 50 characters long; the limit is 20' in records[0].error
    assert records[1].error is None


def test_undecodable_and_ragged_are_reported_together(tmp_path: Path) -> None:
    _, records = read_all(write(tmp_path, b"a,b,c\n" + _VALID_START + b"\xff,2\n"))
    records = records[-1:]
    assert records[0].error is not None
    assert "not valid UTF-8" in records[0].error
    assert "has 2 fields but the header has 3 columns" in records[0].error


# -- rejected files ---------------------------------------------------------------------


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    assert rejected(write(tmp_path, b"")).problems[0].code == "empty_file"
    assert rejected(write(tmp_path, codecs.BOM_UTF8)).problems[0].code == "empty_file"


@pytest.mark.parametrize("content", ["\n", "   \r\nA,b\n", ",,\n"])
def test_blank_header_is_rejected(tmp_path: Path, content: str) -> None:
    error = rejected(write(tmp_path, content))
    assert error.problems[0].code == "no_header"
    assert "no header" in str(error)


def test_too_many_columns_is_rejected(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, "a,b,c,d\n"), limits=ReadLimits(max_columns=3))
    assert error.problems[0].code == "too_many_columns"
    assert "4 columns; at most 3" in error.problems[0].message


def test_file_too_large_is_rejected_before_reading(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(FileTooLarge) as info:
        open_csv(path, limits=ReadLimits(max_file_bytes=4))
    assert info.value.problems[0].code == "file_too_large"
    assert "Split it" in str(info.value)


def test_too_many_rows_is_raised_while_iterating(tmp_path: Path) -> None:
    path = write(tmp_path, "a\n1\n\n2\n3\n")
    with open_csv(path, limits=ReadLimits(max_rows=2)) as csv_file:
        records = csv_file.records()
        assert next(records).row == 2
        assert next(records).row == 4  # the blank row 3 does not count
        with pytest.raises(FileRejected) as info:
            next(records)
    assert info.value.problems[0].code == "too_many_rows"
    assert "row 5" in str(info.value)


def test_header_with_unclosed_quote_is_rejected(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, 'sku,"name\nA,b\n'))
    assert error.problems[0].code == "unclosed_quote"


def test_records_can_be_iterated_once(tmp_path: Path) -> None:
    with open_csv(write(tmp_path, "a\n1\n")) as csv_file:
        list(csv_file.records())
        with pytest.raises(RuntimeError):
            csv_file.records()


# -- binary content ---------------------------------------------------------------------


def test_nul_bytes_renamed_to_csv_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFile) as info:
        open_csv(write(tmp_path, b"sku,name\nA,\x00\x01\x02\n", "data.csv"))
    assert "binary file" in str(info.value)


def test_a_damaged_workbook_is_rejected_with_a_fix(tmp_path: Path) -> None:
    # Real workbooks are read (tests/unit/test_xlsx.py); one without its workbook part is not.
    xlsx = b"PK\x03\x04\x14\x00\x06\x00" + b"[Content_Types].xml" + b"\x00" * 20
    with pytest.raises(UnsupportedFile) as info:
        open_csv(write(tmp_path, xlsx, "products.csv"))
    message = str(info.value)
    assert message.startswith("This looks like a damaged Excel workbook")
    assert "save it again as an Excel Workbook (.xlsx)" in message
    assert info.value.http_status == 415


@pytest.mark.parametrize(
    ("head", "looks_like"),
    [
        (b"%PDF-1.7\n%\xe2\xe3", "a PDF document"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "a JPEG image"),
        (b"GIF89a\x01\x00", "a GIF image"),
        (b"\x1f\x8b\x08\x00", "a gzip-compressed file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)"),
        (b"PK\x03\x04rest", "a ZIP archive"),
        ("sku,name\n".encode("utf-16-le"), "UTF-16 text without a byte-order mark"),
    ],
)
def test_sniff_content_names_what_the_file_looks_like(head: bytes, looks_like: str) -> None:
    with pytest.raises(UnsupportedFile, match=re.escape(f"This looks like {looks_like}")):
        sniff_content(head)


def test_sniff_content_accepts_text_and_utf16_with_bom() -> None:
    sniff_content(b"sku,name\nA,b\n")
    sniff_content("sku,Café\n".encode())
    sniff_content(codecs.BOM_UTF16_LE + "sku,name\n".encode("utf-16-le"))
    sniff_content(b"")


# -- formula neutralisation -------------------------------------------------------------


def test_neutralised_values_are_restored(tmp_path: Path) -> None:
    content = "sku,formula,note\nA,'=SUM(A1),'-5.00\nB,''=x,'plain\n"
    _, records = read_all(write(tmp_path, content))
    assert records[0].values == ["A", "=SUM(A1)", "'-5.00"]
    assert records[1].values == ["B", "'=x", "'plain"]


def test_unneutralise_can_be_switched_off(tmp_path: Path) -> None:
    path = write(tmp_path, "sku,formula\nA,'=1\n")
    with open_csv(path, unneutralise=False) as csv_file:
        assert [r.values for r in csv_file.records()] == [["A", "'=1"]]


def test_nul_character_after_the_sniffed_head_is_a_row_error(tmp_path: Path) -> None:
    content = b"sku,name\n" + b"A,a\n" * 20_000 + b"B,b\x00c\nC,c\n"
    _, records = read_all(write(tmp_path, content))
    bad = records[-2]
    assert (bad.row, bad.values) == (20_002, ["B", "bc"])
    assert bad.error is not None
    assert 'NUL character in column 2 ("name")' in bad.error
    assert records[-1] == RawRecord(row=20_003, line=20_003, values=["C", "c"])


# -- values over the field-size limit and ambiguous delimiters --------------------------------


def test_value_over_the_csv_limit_names_column_limit_and_size_without_a_quote(
    tmp_path: Path,
) -> None:
    content = f"sku,name,price\nA,{'x' * 500},1\nB,b,2\n"
    _, records = read_all(write(tmp_path, content), limits=ReadLimits(max_field_bytes=100))
    error = records[0].error
    assert error is not None
    assert 'the value in column 2 ("name") is 500 characters long; the limit is 100' in error
    assert "quote" not in error
    assert records[1].values == ["B", "b", "2"] and records[1].error is None


def test_quoted_value_over_the_csv_limit_says_it_is_quoted(tmp_path: Path) -> None:
    content = f'sku,name,price\nA,"{"x" * 500}",1\n'
    _, records = read_all(write(tmp_path, content), limits=ReadLimits(max_field_bytes=100))
    error = records[0].error
    assert error is not None
    assert 'column 2 ("name") is 500 characters long; the limit is 100' in error
    assert "quotes are closed" in error


def test_value_just_over_the_limit_without_a_quote_suspects_no_quote(tmp_path: Path) -> None:
    content = f"sku,name\nA,{'x' * 21}\n"
    _, records = read_all(write(tmp_path, content), limits=ReadLimits(max_field_bytes=20))
    error = records[0].error
    assert error is not None
    assert 'column 2 ("name") is 21 characters long; the limit is 20. Shorten it.' in error
    assert "quote" not in error


def test_a_line_without_a_line_break_over_the_limit(tmp_path: Path) -> None:
    content = "sku,name\nA," + "y" * 5000
    _, records = read_all(write(tmp_path, content), limits=ReadLimits(max_field_bytes=1000))
    error = records[0].error
    assert error is not None
    assert 'column 2 ("name") is 5,000 characters long; the limit is 1,000' in error
    assert "quote" not in error


def test_a_tie_between_delimiters_names_both(tmp_path: Path) -> None:
    error = rejected(write(tmp_path, "sku,name;price\nA,b;1\n"))
    problem = error.problems[0]
    assert problem.code == "ambiguous_delimiter"
    assert '"," as ";" (1 each)' in problem.message
    assert problem.hint_field == "delimiter"
    _, records = read_all(
        write(tmp_path, "sku,name;price\nA,b;1\n"), options=ReadOptions(delimiter=";")
    )
    assert records[0].values == ["A,b", "1"]


def test_a_clear_majority_is_no_tie(tmp_path: Path) -> None:
    header, _ = read_all(write(tmp_path, "sku;name;price,x\nA;b;1,2\n"))
    assert header == ["sku", "name", "price,x"]


# -- the count of a large file, in two halves at once -------------------------------------


def _counted(path: Path, limits: ReadLimits = ReadLimits()) -> int:  # noqa: B008
    with open_csv(path, limits=limits) as csv_file:
        return csv_file.count_records()


def _records_read(path: Path) -> int:
    return sum(1 for _ in read_all(path)[1])


@pytest.fixture
def halves(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Every file counts in two halves; what each two-half count gave (None: whole read)."""
    from bulkops.formats import halves as module

    given: list[int | None] = []
    at_once = module.count_at_once

    def spied(first: Callable[[], int | None], second: Callable[[], int | None]) -> int | None:
        given.append(at_once(first, second))
        return given[-1]

    monkeypatch.setattr(module, "SPLIT_COUNT_BYTES", 64)
    monkeypatch.setattr(module, "count_at_once", spied)
    return given


def _awkward(records: int, *, broken_at: int | None = None, newline: str = "\n") -> str:
    lines = ["sku,name,description"]
    for i in range(records):
        if i == broken_at:
            lines.append(f'B-{i},"never closed,x')
        elif i % 5 == 0:
            lines.append(f'Q-{i},Quoted {i},"line one{newline}line two, with a comma"')
        elif i % 9 == 0:
            lines.append(f"P-{i},Plain {i},{newline},,")
        else:
            lines.append(f"P-{i},Plain {i},")
    return newline.join(lines) + newline


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_large_file_counted_in_two_halves_gives_the_records_a_read_gives(
    tmp_path: Path, halves: list[int | None], newline: str
) -> None:
    for records in range(40, 60):  # the middle falls on every kind of line in turn
        path = write(tmp_path, _awkward(records, newline=newline))
        assert _counted(path) == _records_read(path) == records
    assert any(given is not None for given in halves)  # the halves did count


def test_a_middle_inside_a_quoted_line_break_is_counted_by_a_whole_read(
    tmp_path: Path, halves: list[int | None]
) -> None:
    head = "sku,name,description\n"
    opened = 'Q-1,Quoted,"' + "x" * 200 + "\n" + "y" * 200 + '"\n'
    path = write(tmp_path, head + "P-0,Plain,\n" + opened + "P-2,Plain,\n")
    # The cut lands on the line break inside the quotes: the first half ends inside them.
    assert _counted(path) == _records_read(path) == 3
    assert halves == [None]


def test_a_broken_quote_in_either_half_gives_the_count_of_a_whole_read(
    tmp_path: Path, halves: list[int | None]
) -> None:
    for broken_at in (3, 45):
        path = write(tmp_path, _awkward(50, broken_at=broken_at))
        assert _counted(path) == _records_read(path)
    assert halves == [None, None]


def test_the_row_limit_of_a_file_counted_in_halves_names_the_row_as_a_whole_read(
    tmp_path: Path, halves: list[int | None]
) -> None:
    path = write(tmp_path, _awkward(50))
    with pytest.raises(FileRejected) as split:
        _counted(path, ReadLimits(max_rows=40))
    with pytest.raises(FileRejected) as whole, open_csv(path, limits=ReadLimits(max_rows=40)) as f:
        list(f.records())
    assert str(split.value) == str(whole.value)
    assert _counted(path, ReadLimits(max_rows=50)) == 50


# -- blank records, and a count that agrees with the read -------------------------------------


def test_records_of_only_blank_values_quoted_or_not_are_skipped(tmp_path: Path) -> None:
    blank = ['""', '" ",""', '"\t"', "\xa0", "\u3000,\t", ",", '"",,""', " , "]
    kept = ['"A",x', '" A",x', "\xc4,x", '"\xa0b",']
    content = "sku,name\n" + "\n".join([*blank, *kept]) + "\n"
    path = write(tmp_path, content)
    _, records = read_all(path)
    # Every record still has its spreadsheet row: the blank ones before were skipped.
    assert [(r.row, r.values) for r in records] == [
        (10, ["A", "x"]), (11, [" A", "x"]), (12, ["\xc4", "x"]), (13, ["\xa0b", ""])
    ]
    assert _counted(path) == 4


_PIECES = ["a", "b", " ", "\xa0", "\u3000", "\t", '"', '""', ",", "\n", "\r\n", "\r", "'"]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.sampled_from(["sku\n", "sku,name\n", "sku,name,description\n"]),
    pieces=st.lists(st.sampled_from(_PIECES), max_size=30),
)
def test_the_count_is_the_number_of_records_read_whatever_the_file(
    tmp_path: Path, halves: list[int | None], header: str, pieces: list[str]
) -> None:
    # Short records spread over lines, quotes left open, blank values, stray characters;
    # a file of 64 bytes or more is counted in two halves.
    path = write(tmp_path, header + "".join(pieces))
    limits = ReadLimits(max_record_lines=3)
    with open_csv(path, limits=limits) as csv_file:
        counted = csv_file.count_records()
    assert counted == sum(1 for _ in read_all(path, limits=limits)[1])
