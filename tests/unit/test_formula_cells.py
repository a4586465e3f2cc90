"""One rule for formula-like cells: the CSV writer neutralises exactly what the dashboard tags."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from bulkops.formats import CsvWriter, is_formula_like, neutralise
from bulkops.web.pages import build_templates

# (value, is it formula-like). A numeric literal is what a spreadsheet parses as a number, not
# what Python's float() accepts: "-inf" is the formula =-inf to a spreadsheet.
CASES = [
    ("-inf", True),
    ("-nan", True),
    ("+inf", True),
    ("-Infinity", True),
    ("-1_000", True),
    ("-٣", True),
    ("-0x10", True),
    ("+1,5", False),  # one decimal comma: files imported with decimal_separator="," echo these
    ("-5,00", False),
    ("-1,234,567", True),
    ("-5.00", False),
    ("+3", False),
    ("-1e5", False),
    (" -5 ", False),
    ("\t5", True),  # a leading tab can smuggle a cell past filters, number or not
    ("=1+1", True),
    ("  =x", True),
    ("\u3000=x", True),
    ("＋1", True),
    ("@cmd", True),
    ("'plain", False),
    ("plain", False),
    ("", False),
]


@pytest.mark.parametrize(("value", "formula"), CASES)
def test_formula_rule(value: str, formula: bool) -> None:
    assert is_formula_like(value) is formula


@pytest.mark.parametrize(("value", "formula"), CASES)
def test_writer_and_dashboard_agree(value: str, formula: bool) -> None:
    stream = io.StringIO(newline="")
    CsvWriter(stream).writerow([value, "end"])
    written = next(csv.reader(io.StringIO(stream.getvalue(), newline="")))[0]
    assert (written == "'" + value) is formula
    assert written == neutralise(value)

    environment = build_templates().env
    assert environment.globals["formula_like"] is is_formula_like
    html = environment.get_template("_value.html").render(value=value)
    assert ('class="tag"' in html) is formula


def test_a_quoted_formula_is_text_but_gets_one_more_quote_for_the_round_trip() -> None:
    # A spreadsheet shows "'=x" as text, so the dashboard does not tag it; the writer still
    # adds a quote so that an import can tell its own quote from the user's.
    assert not is_formula_like("'=x")
    assert neutralise("'=x") == "''=x"


@pytest.mark.parametrize("value", [None, 5, Decimal("-5.00"), -3])
def test_non_text_values_are_never_formulas(value: object) -> None:
    assert not is_formula_like(value)
