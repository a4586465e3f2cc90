"""XLSX out: one sheet written row by row with XlsxWriter in constant-memory mode.

Every XLSX file bulkops writes (exports, templates, error reports) goes through
:class:`SheetWriter`. What it guarantees, so that callers need not think about it:

* the header row is bold and frozen (it stays in view while scrolling);
* every text value is written as a **text cell** (``write_string``): ``00123`` keeps its
  zeros and ``=1+1`` is shown, never run. The file holds no formula at all, so no ``'``
  prefix is needed (unlike CSV, see :mod:`bulkops.formats.writer`), and reading the file
  back gives the text exactly;
* a column of kind ``"decimal"`` (prices) holds numbers shown with two decimals, a column of
  kind ``"int"`` (quantities) whole numbers; a value that is not a number there (a raw value
  in an error report) stays text;
* rows are flushed as they are written: memory does not grow with the number of rows (notes
  and fills are kept until the file is closed, so an error report's cost grows with its
  failed cells, not with its rows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO, Literal

from bulkops.formats.writer import CellValue

__all__ = ["XLSX_MEDIA_TYPE", "ColumnKind", "SheetWriter"]

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

ColumnKind = Literal["text", "decimal", "int"]

# Excel's own "Bad" cell style: light red fill, dark red text.
_WARNING = {"bg_color": "#FFC7CE", "font_color": "#9C0006"}
_MAX_WIDTH = 60
_EXCEL_MAX_TEXT = 32_767


class SheetWriter:
    """Write one sheet: the header, then rows; a context manager (closing writes the file).

    ``target`` is a path, or a binary stream (the workbook is then built in memory: for
    small files such as templates).
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | BinaryIO,
        header: Sequence[str],
        *,
        kinds: Sequence[ColumnKind] | None = None,
        sheet_name: str = "data",
        widths: Sequence[int] | None = None,
    ) -> None:
        import xlsxwriter  # only a workbook being written waits for it

        in_memory = not isinstance(target, str | os.PathLike)
        self._book = xlsxwriter.Workbook(
            target if in_memory else os.fspath(target),  # type: ignore[arg-type]
            {
                "constant_memory": not in_memory,
                "in_memory": in_memory,
                "strings_to_formulas": False,
                "strings_to_numbers": False,
                "strings_to_urls": False,
            },
        )
        self._sheet = self._book.add_worksheet(sheet_name[:31])
        self._kinds: list[ColumnKind] = list(kinds) if kinds else ["text"] * len(header)
        self._bold = self._book.add_format({"bold": True})
        self._price = self._book.add_format({"num_format": "0.00"})
        self._whole = self._book.add_format({"num_format": "0"})
        self._warning = self._book.add_format(_WARNING)
        self._text = self._book.add_format({"num_format": "@"})
        column_format = {"text": self._text, "decimal": self._price, "int": self._whole}
        for index, name in enumerate(header):
            width = widths[index] if widths else min(max(len(name) + 4, 12), _MAX_WIDTH)
            kind = self._kinds[index] if index < len(self._kinds) else "text"
            # Text columns are formatted as Text, so that what a person types there (00123)
            # stays text in Excel too.
            self._sheet.set_column(index, index, width, column_format[kind])
        self._sheet.freeze_panes(1, 0)
        for index, name in enumerate(header):
            self._sheet.write_string(0, index, name, self._bold)
        self._row = 1

    def write(
        self, values: Sequence[CellValue], *, problems: Mapping[int, str] | None = None
    ) -> None:
        """One data row. ``problems`` (column index -> message) fills those cells in a
        warning colour and gives each a comment holding its message."""
        row = self._row
        kinds = self._kinds
        sheet = self._sheet
        for index, value in enumerate(values):
            warning = problems is not None and index in problems
            kind = kinds[index] if index < len(kinds) else "text"
            self._cell(row, index, value, kind, self._warning if warning else None)
        if problems:
            for index, message in problems.items():
                if index >= len(values):
                    sheet.write_blank(row, index, None, self._warning)
                sheet.write_comment(row, index, message[:_EXCEL_MAX_TEXT], {"x_scale": 3})
        self._row = row + 1

    def note(self, column: int, text: str) -> None:
        """A comment (an Excel note) on the header cell of ``column``."""
        self._sheet.write_comment(0, column, text, {"x_scale": 3, "y_scale": 2})

    def validate(self, column: int, options: dict[str, Any]) -> None:
        """Excel data validation (XlsxWriter's options) on every data cell of ``column``."""
        self._sheet.data_validation(1, column, 1_048_575, column, options)

    def close(self) -> None:
        self._book.close()

    def __enter__(self) -> SheetWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _cell(self, row: int, column: int, value: CellValue, kind: ColumnKind, fmt: Any) -> None:
        sheet = self._sheet
        if value is None or value == "":
            if fmt is not None:
                sheet.write_blank(row, column, None, fmt)
            return
        if kind != "text":
            number = _number(value, kind)
            if number is not None:
                sheet.write_number(
                    row, column, number, fmt or (self._price if kind == "decimal" else self._whole)
                )
                return
        text = value if isinstance(value, str) else _plain(value)
        sheet.write_string(row, column, text[:_EXCEL_MAX_TEXT], fmt)


def _plain(value: CellValue) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _number(value: CellValue, kind: ColumnKind) -> float | int | None:
    """The number a stored price or quantity is (None when it is not one, e.g. raw text)."""
    if isinstance(value, int):
        return value
    try:
        number = Decimal(value) if isinstance(value, str) else value
    except InvalidOperation:
        return None
    if not isinstance(number, Decimal) or not number.is_finite():
        return None
    if kind == "int":
        return int(number) if number == number.to_integral_value() else None
    # A price has at most 12 significant digits: a float holds it exactly enough that the
    # shortest text reading it back is the same price.
    return float(number)
