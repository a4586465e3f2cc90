"""XLSX workbooks in: a sheet read row by row as the text a person sees in Excel.

:func:`open_xlsx` opens the workbook with openpyxl in read-only mode (it streams the sheet's
XML; measured in ``bench/xlsx_libs.py`` and docs/DESIGN.md), picks the sheet, reads row 1
as the header and returns an :class:`XlsxFile`, whose ``records()`` stream
:class:`~bulkops.model.RawRecord` values like the CSV reader's.

Cell values (CONTRACT section 6):

* text as it is (leading zeros and all; no ``'`` prefix is removed: a text cell cannot run);
* a whole number without ``.0`` (``100``), any other number in the shortest form that reads
  back the same (``12.5``, ``0.00001``), with the decimal separator asked for (``12,5``
  when the operation's ``decimal_separator`` is ``,``);
* dates ``2024-03-01``, date-times ``2024-03-01T14:30:00``, times ``14:30:00``;
* booleans ``TRUE`` / ``FALSE``; a formula by the value Excel cached when it saved the file
  (a formula never calculated, as some programs write them, reads as empty);
* an error cell (``#N/A``, ``#REF!`` …) is a row error naming the cell (``row 7, cell
  E7``); its text is kept as the value, for the error report.

Row numbers are the sheet's; ``line`` equals the row. Empty rows are skipped but keep their
number. Cells right of the header are ignored when empty and a row error when not.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, BinaryIO, cast

from openpyxl import load_workbook
from openpyxl.utils import column_index_from_string, coordinate_to_tuple, get_column_letter
from openpyxl.worksheet._reader import DATA_TAG, ROW_TAG, WorkSheetParser
from openpyxl.xml.constants import SHEET_MAIN_NS

# openpyxl's own choice of parser (defusedxml when installed; else the standard library's
# expat, which limits entity expansion since expat 2.4.1).
from openpyxl.xml.functions import iterparse

from bulkops.errors import FileProblem, FileRejected
from bulkops.formats import problems
from bulkops.formats.options import ReadLimits, ReadOptions
from bulkops.formats.sheet_scan import RowLook, rows_with_values, shown_text
from bulkops.model import RawRecord

__all__ = [
    "XlsxFile",
    "cell_name",
    "cell_text",
    "column_index_from_string",
    "open_xlsx",
    "sheet_names",
]


def cell_name(column_index: int, row: int) -> str:
    """``E7`` for the fifth column (index 4) of row 7."""
    return f"{get_column_letter(column_index + 1)}{row}"


def _number_text(value: float | int | Decimal, decimal_separator: str) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = repr(value) if isinstance(value, float) else str(value)
    if "e" in text or "E" in text:
        text = format(Decimal(text), "f")
    return text.replace(".", decimal_separator) if decimal_separator != "." else text


def cell_text(value: Any, decimal_separator: str = ".") -> str:
    """The text of a cell value as openpyxl gives it (error cells excepted)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float | Decimal):
        return _number_text(value, decimal_separator)
    if isinstance(value, datetime):
        if value.time() == time(0):
            return value.date().isoformat()
        return value.isoformat(timespec="seconds" if not value.microsecond else "milliseconds")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        sign = "-" if seconds < 0 else ""
        hours, rest = divmod(abs(seconds), 3600)
        return f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return str(value)


def _unreadable(reason: str) -> FileRejected:
    return FileRejected(
        FileProblem(
            code="unreadable_workbook",
            message=f"The workbook cannot be read ({reason}). Open it in Excel, save it again "
            "as an Excel Workbook (.xlsx), and upload that file.",
            suggestion="Save it again from Excel as an Excel Workbook (.xlsx).",
        )
    )


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def unknown_sheet(name: str, names: list[str]) -> FileRejected:
    return FileRejected(
        FileProblem(
            code="unknown_sheet",
            message=f'The workbook has no sheet named "{name}". Its sheets: {_quoted(names)}.',
            suggestion=f"Choose one of {_quoted(names)}.",
            hint_field="sheet",
        )
    )


def _empty_sheet(name: str, names: list[str]) -> FileRejected:
    others = [n for n in names if n != name]
    rest = f" Its other sheets: {_quoted(others)}; choose the one to read." if others else ""
    return FileRejected(
        FileProblem(
            code="empty_sheet",
            message=f'The sheet "{name}" is empty: row 1 must hold the column names.{rest}',
            line=1,
            suggestion="Put the column names in row 1, or choose the sheet that holds the data.",
            hint_field="sheet" if others else None,
        )
    )


def sheet_names(path: str | os.PathLike[str]) -> list[str]:
    """The names of the workbook's worksheets, in order."""
    book, handle = _load(path)
    try:
        return [sheet.title for sheet in book.worksheets]
    finally:
        _close(book, handle)


def _load(path: str | os.PathLike[str]) -> tuple[Any, BinaryIO]:
    # A file object, not the path: openpyxl refuses a name that does not end in .xlsx, and
    # the content decides here (uploads are stored under a name of their own).
    handle = open(path, "rb")  # noqa: SIM115 - the archive keeps it; closed with the book
    try:
        book = load_workbook(handle, read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl raises what the zip and XML layers raise
        handle.close()
        raise _unreadable(str(exc)[:200] or type(exc).__name__) from exc
    return book, handle


def _close(book: Any, handle: BinaryIO) -> None:
    try:
        book.close()
    finally:
        handle.close()


_INLINE_STRING = f"{{{SHEET_MAIN_NS}}}is"
_TEXT = f"{{{SHEET_MAIN_NS}}}t"
_RUN = f"{{{SHEET_MAIN_NS}}}r"


def _parse_row(parser: Any, row: Any) -> tuple[int, list[dict[str, Any]]]:
    """openpyxl's ``parse_row``, but an inline-string cell (what XlsxWriter's constant-memory
    mode writes, bulkops' own exports among them) is read here: openpyxl builds a rich-text
    object for each, which costs more than the rest of the row."""
    number = row.get("r")
    if number is not None and not number.isdigit():
        return cast(tuple[int, list[dict[str, Any]]], parser.parse_row(row))
    parser.row_counter = int(number) if number is not None else parser.row_counter + 1
    parser.col_counter = 0
    cells = []
    for cell in row:
        if cell.get("t") == "inlineStr":
            cells.append(_inline_string_cell(parser, cell))
        else:
            cells.append(parser.parse_cell(cell))
    return parser.row_counter, cells


def _inline_string_cell(parser: Any, cell: Any) -> dict[str, Any]:
    """The cell as ``parse_cell`` makes it: its text is the plain text and the runs' text
    (phonetic guides left out), as openpyxl's ``Text.content`` has it."""
    coordinate = cell.get("r")
    if coordinate:
        row, column = coordinate_to_tuple(coordinate)
        parser.col_counter = column
    else:
        parser.col_counter += 1
        row, column = parser.row_counter, parser.col_counter
    style = cell.get("s")
    value: str | None = None
    data_type = "inlineStr"
    text = cell.find(_INLINE_STRING)
    if text is not None:
        data_type = "s"
        parts = []
        for node in text:
            if node.tag == _TEXT:
                parts.append(node.text or "")
            elif node.tag == _RUN:
                run = node.find(_TEXT)
                if run is not None:
                    parts.append(run.text or "")
        value = "".join(parts)
    return {
        "row": row,
        "column": column,
        "value": value,
        "data_type": data_type,
        "style_id": int(style) if style else 0,
    }


def _sheet_rows(book: Any, worksheet: Any) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(row number, cells) of every row the sheet's XML holds, in order; cells are
    openpyxl's (``column`` 1-based, ``value``, ``data_type``), empty rows left out.

    openpyxl parses each row (shared strings, dates, error cells, cached formula values);
    the loop is ours because openpyxl's read-only iteration keeps every parsed (cleared)
    row element attached to the sheet's tree: 75 MB more per million rows. Here each row
    is dropped from the tree once read, so memory stays flat however long the sheet.
    """
    parser = WorkSheetParser(
        None,
        worksheet._shared_strings,
        data_only=True,
        epoch=book.epoch,
        date_formats=book._date_formats,
        timedelta_formats=book._timedelta_formats,
    )
    with worksheet._get_source() as source:
        sheet_data = None
        for event, element in iterparse(source, events=("start", "end")):
            if event == "start":
                if element.tag == DATA_TAG:
                    sheet_data = element
                continue
            if element.tag == ROW_TAG:
                row_no, cells = _parse_row(parser, element)
                parser.row_dimensions.clear()  # heights of rows: not needed, not kept
                if sheet_data is not None:
                    sheet_data.clear()
                else:
                    element.clear()
                yield row_no, cells


class XlsxFile:
    """An opened sheet whose header has been read and checked; a context manager."""

    format = "xlsx"
    _pushed_back: tuple[int, list[dict[str, Any]]] | None = None
    header: list[str]
    file_size_bytes: int
    sheet: str
    sheets: list[str]

    def __init__(
        self, path: str | os.PathLike[str], options: ReadOptions, limits: ReadLimits,
        decimal_separator: str = ".",
    ) -> None:
        self.file_size_bytes = os.path.getsize(path)
        if self.file_size_bytes > limits.max_file_bytes:
            raise problems.file_too_large(self.file_size_bytes, limits.max_file_bytes)
        self._limits = limits
        self._decimal_separator = decimal_separator
        self._book, self._handle = _load(path)
        try:
            self.sheets = [sheet.title for sheet in self._book.worksheets]
            if not self.sheets:
                raise _unreadable("it has no worksheet")
            name = options.sheet if options.sheet is not None else self.sheets[0]
            if name not in self.sheets:
                # Excel's sheet names are case-insensitive; so is the choice.
                found = [s for s in self.sheets if s.casefold() == name.casefold()]
                if not found:
                    raise unknown_sheet(name, self.sheets)
                name = found[0]
            self.sheet = name
            worksheet = self._book[name]
            self._worksheet = worksheet
            self._total_rows = worksheet.max_row if isinstance(worksheet.max_row, int) else 0
            self._rows = _sheet_rows(self._book, worksheet)
            self._rows_read = 0
            self._records_started = False
            first = next(self._rows, None)
            header: list[str] = []
            if first is not None and first[0] == 1:
                for cell in first[1]:
                    index = cell["column"] - 1
                    header.extend([""] * (index + 1 - len(header)))
                    header[index] = cell_text(cell["value"]).strip()
            else:
                self._pushed_back = first
            while header and not header[-1]:
                header.pop()
            if not header:
                raise _empty_sheet(name, self.sheets)
            if len(header) > limits.max_columns:
                raise problems.too_many_columns(len(header), limits.max_columns, ",")
            self.header = [cell.lstrip("\ufeff") for cell in header]
        except BaseException:
            _close(self._book, self._handle)
            raise

    @property
    def bytes_consumed(self) -> int:
        """The share of the file read so far, estimated from the rows (for progress)."""
        if not self._total_rows:
            return 0
        return min(self.file_size_bytes, self.file_size_bytes * self._rows_read // self._total_rows)

    def records(self) -> Iterator[RawRecord]:
        """Stream the data rows (row 1 excluded); can be called once."""
        if self._records_started:
            raise RuntimeError("XlsxFile.records() can be iterated only once")
        self._records_started = True
        return self._iter_records()

    def count_records(self) -> int:
        """How many records :meth:`records` would stream, in place of reading them.

        The sheet's XML is scanned for rows holding a value without building its elements
        (:mod:`bulkops.formats.sheet_scan`), so it costs a fraction of a read; the few rows
        that may hold only blank text have their cells read, and a row ``records()`` skips
        is not counted. Raises ``FileRejected`` (code ``"too_many_rows"``) like ``records()``.
        """
        count = 0
        look = RowLook(
            self._worksheet._shared_strings, len(self.header), self._limits.max_field_bytes
        )
        for row_no in rows_with_values(self._worksheet, look):
            if row_no == 1:
                continue  # the header
            count += 1
            if count > self._limits.max_rows:
                raise problems.too_many_rows(self._limits.max_rows, row_no, row_no)
        return count

    def close(self) -> None:
        _close(self._book, self._handle)

    def __enter__(self) -> XlsxFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _iter_records(self) -> Iterator[RawRecord]:
        ncols = len(self.header)
        max_field = self._limits.max_field_bytes
        max_rows = self._limits.max_rows
        separator = self._decimal_separator
        count = 0
        rows = self._rows
        if self._pushed_back is not None:
            rows = itertools.chain([self._pushed_back], rows)
        for row_no, cells in rows:
            self._rows_read = row_no
            values = [""] * ncols
            found: list[str] = []
            for cell in cells:
                value = cell["value"]
                if value is None:
                    continue
                index = cell["column"] - 1
                if cell["data_type"] == "e":
                    text = str(value)
                    found.append(
                        f"Row {row_no}, cell {cell_name(index, row_no)}: the cell holds the "
                        f"error {text} (a formula that failed). Fix the formula or type "
                        "the value."
                    )
                elif type(value) is str:
                    # Characters XML cannot hold (CR, control characters) are written
                    # _x000D_ and so on (OOXML); openpyxl leaves them so.
                    text = shown_text(value)
                else:
                    text = cell_text(value, separator)
                if index >= ncols:
                    if text.strip():
                        found.append(
                            f"Row {row_no}, cell {cell_name(index, row_no)} holds a value, "
                            f"but column {get_column_letter(index + 1)} has no name in "
                            "row 1. Add the column's name, or clear the cell."
                        )
                    continue
                if len(text) > max_field:
                    found.append(
                        f"Row {row_no}, cell {cell_name(index, row_no)}: the value is "
                        f"{len(text):,} characters long; the limit is {max_field:,}. "
                        "Shorten it."
                    )
                    text = text[:max_field]
                values[index] = text
            if not found and not any(v.strip() for v in values):
                continue  # an empty row keeps its number
            count += 1
            if count > max_rows:
                raise problems.too_many_rows(max_rows, row_no, row_no)
            yield RawRecord(row_no, row_no, values, " ".join(found) or None)
        self._rows_read = self._total_rows


def open_xlsx(
    path: str | os.PathLike[str],
    options: ReadOptions,
    limits: ReadLimits,
    *,
    decimal_separator: str = ".",
) -> XlsxFile:
    """Open the workbook at ``path`` and read the header of its sheet (see the module)."""
    return XlsxFile(path, options, limits, decimal_separator)
