"""The CSV writer: formula neutralisation, RFC 4180 output, and round trips with the reader."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulkops.formats import CsvWriter, error_report_header, neutralise, open_csv, unneutralise


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=SUM(A1)", "'=SUM(A1)"),
        ("+1", "+1"),
        ("+3", "+3"),
        ("-5.00", "-5.00"),
        ("-1e5", "-1e5"),
        ("-5,00", "-5,00"),
        ("-2+3", "'-2+3"),
        ("-", "'-"),
        ("+A1", "'+A1"),
        ("@x", "'@x"),
        (" =x", "' =x"),
        ("\t=x", "'\t=x"),
        ("\tplain", "'\tplain"),
        ("\r\n", "'\r\n"),
        ("＝1", "'＝1"),
        ("＋1", "'＋1"),
        ("－1", "'－1"),
        ("＠x", "'＠x"),
        ("\u3000=x", "'\u3000=x"),
        ("'=x", "''=x"),
        ("'plain", "'plain"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        ("", ""),
        ("   ", "   "),
    ],
)
def test_neutralise_table(value: str, written: str) -> None:
    assert neutralise(value) == written
    assert unneutralise(written) == value


@given(st.text())
def test_unneutralise_reverses_neutralise(value: str) -> None:
    assert unneutralise(neutralise(value)) == value


def test_writer_output_is_rfc4180_with_crlf() -> None:
    stream = io.StringIO(newline="")
    writer = CsvWriter(stream)
    writer.writerow(["sku", "name", "price", "qty", "note"])
    writer.writerows(
        [
            ["A", 'say "hi", ok', Decimal("5.00"), 3, None],
            ["B", "two\nlines", Decimal("1E+2"), -4, "=cmd()"],
        ]
    )
    assert stream.getvalue() == (
        "sku,name,price,qty,note\r\n"
        'A,"say ""hi"", ok",5.00,3,\r\n'
        'B,"two\nlines",100,-4,\'=cmd()\r\n'
    )


def test_error_report_header() -> None:
    assert error_report_header(["sku", "name"]) == ["_row", "_line", "_errors", "sku", "name"]


def _row_is_not_blank(row: list[str]) -> bool:
    # The reader skips records made only of blanks, as spreadsheets export empty rows so.
    return any(value.strip() for value in row)


_cell = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"))


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.lists(st.text(alphabet="abcxyz_", min_size=1, max_size=8), min_size=1, max_size=5),
    data=st.data(),
)
def test_round_trip_through_writer_and_reader(
    tmp_path: Path, header: list[str], data: st.DataObject
) -> None:
    rows = data.draw(
        st.lists(
            st.lists(_cell, min_size=len(header), max_size=len(header)).filter(_row_is_not_blank),
            max_size=8,
        )
    )
    path = tmp_path / "export.csv"
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = CsvWriter(stream)
        writer.writerow(header)
        writer.writerows(rows)
    with open_csv(path) as csv_file:
        assert csv_file.header == header
        records = list(csv_file.records())
    assert [r.values for r in records] == rows
    assert [r.error for r in records] == [None] * len(rows)
    assert [r.row for r in records] == list(range(2, len(rows) + 2))
