"""CSV output: RFC 4180 with formula neutralisation, and the error-report header.

Everything bulkops writes as CSV (exports, error reports, templates) goes through
:class:`CsvWriter`. Its dialect is fixed: comma delimiter, double-quote quoting only where
needed (a value containing ``,``, ``"``, CR or LF), quotes doubled, and **CRLF** line ends as
RFC 4180 prescribes (Excel and every CSV reader accept them). Open the target stream with
``newline=""`` so that Python does not translate the line ends again.

Formula neutralisation (CSV/formula injection): a spreadsheet evaluates a cell whose text
starts with ``=``, ``+``, ``-`` or ``@`` (also after leading spaces, and in the full-width
forms ``＝＋－＠``), and tab, CR or LF at the start can smuggle such a cell past filters. Such
values are written with a ``'`` prefix, which spreadsheets display as plain text. Numeric
literals such as ``-5.00``, ``+3`` or ``-1e5`` are left alone. To keep the transformation
reversible, a value that already starts with ``'`` followed by a formula-like text gets one
more ``'`` (``'=x`` is written as ``''=x``); :func:`unneutralise` removes exactly one ``'``
again, so ``unneutralise(neutralise(v)) == v`` for every string ``v``.

:func:`is_formula_like` is the one rule for "would a spreadsheet run this cell": the writer
and the dashboard (which tags such values) both use it. A numeric literal is what a
spreadsheet parses as a number, not what Python's ``float`` accepts: ``-inf``, ``-nan``,
``-1_000`` or ``-٣`` are formulas to a spreadsheet (``=-inf`` is a reference to a name), so
they are neutralised. One decimal comma is accepted (``-5,00``): the contract imports files
with ``decimal_separator=","`` and error reports echo their values, and a sign followed by
digits and one separator names no function or reference, so it cannot run anything.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import TextIO

__all__ = [
    "CellValue",
    "CsvWriter",
    "error_report_header",
    "is_formula_like",
    "neutralise",
    "unneutralise",
]

CellValue = str | int | Decimal | None
"""What :meth:`CsvWriter.writerow` accepts per cell."""

_FORMULA_START = frozenset("=@＝＠＋－")
_SIGN = frozenset("+-")
_CONTROL_START = frozenset("\t\r\n")
# First characters that may need a closer look; anything else is never neutralised.
_MAYBE_RISKY = frozenset("=+-@＝＋－＠\t\r\n'")
# Plain decimal numbers in ASCII digits, optionally signed, with "." or "," as decimal mark
# and an optional exponent: spreadsheets read these as numbers, not formulas.
_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?\s*")


def is_formula_like(value: object) -> bool:
    """Whether a spreadsheet would run ``value`` as a formula (only strings can be)."""
    if not isinstance(value, str) or not value:
        return False
    if value[0] in _CONTROL_START:
        return True
    text = value.lstrip()
    if not text:
        return False
    first = text[0]
    if first in _FORMULA_START:
        return True
    if first in _SIGN:
        return _NUMBER.fullmatch(text) is None
    return False


def _needs_prefix(value: str) -> bool:
    # A value of quotes followed by a formula needs a prefix too, so that unneutralise can
    # tell the writer's quote from the user's own (see the module docstring).
    return is_formula_like(value.lstrip("'"))


def neutralise(value: str) -> str:
    """Return ``value`` with a ``'`` prefix when a spreadsheet could run it as a formula."""
    if value and (value[0] in _MAYBE_RISKY or value[0].isspace()) and _needs_prefix(value):
        return "'" + value
    return value


def unneutralise(value: str) -> str:
    """Remove the one ``'`` prefix that :func:`neutralise` adds; other values are unchanged."""
    if value[:1] == "'" and _needs_prefix(value[1:]):
        return value[1:]
    return value


def _cell(value: CellValue) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return neutralise(value)
    if isinstance(value, Decimal):
        # "f" keeps trailing zeros ("5.00") and never switches to exponent notation ("1E+2").
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    return neutralise(str(value))


class CsvWriter:
    """Write rows of cells as RFC 4180 CSV (comma, CRLF) to a text stream.

    ``None`` becomes an empty cell, ints and Decimals are written as plain numbers, and every
    string is passed through :func:`neutralise`.
    """

    __slots__ = ("_writer",)

    def __init__(self, stream: TextIO) -> None:
        self._writer = csv.writer(
            stream,
            delimiter=",",
            quotechar='"',
            doublequote=True,
            lineterminator="\r\n",
            quoting=csv.QUOTE_MINIMAL,
        )

    def writerow(self, values: Sequence[CellValue]) -> None:
        self._writer.writerow([_cell(value) for value in values])

    def writerows(self, rows: Iterable[Sequence[CellValue]]) -> None:
        for row in rows:
            self._writer.writerow([_cell(value) for value in row])


def error_report_header(original_header: Sequence[str]) -> list[str]:
    """Header of an error report: where and why, then the record's original columns.

    The importer ignores columns whose name starts with ``_``, so a fixed error report can be
    uploaded as it is.
    """
    return ["_row", "_line", "_errors", *original_header]
