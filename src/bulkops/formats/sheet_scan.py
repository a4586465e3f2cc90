"""Counting a sheet's records from its XML, without building its elements.

:meth:`~bulkops.formats.xlsx.XlsxFile.count_records` needs the exact number of records
before anything is read: openpyxl's parse of every cell would cost as much as the read
itself. :func:`rows_with_values` finds the rows in the sheet's XML with plain pattern
matching, a block at a time, and :class:`RowLook` tells which of them ``records()`` would
skip (a row of only blank text), by the same rule, reading the cells of the few rows a
glance cannot decide.
"""

from __future__ import annotations

import html
import itertools
import operator
import re
from collections.abc import Iterator
from typing import Any

from openpyxl.utils import column_index_from_string
from openpyxl.utils.escape import unescape

__all__ = ["RowLook", "rows_with_values", "shown_text"]

_ROW = re.compile(rb"<(?:\w+:)?row\b([^>]*?)(/>|>)")
_ROW_END = re.compile(rb"</(?:\w+:)?row>")
_ROW_NUMBER = re.compile(rb"""\sr=["'](\d+)["']""")
_VALUE = re.compile(rb"<(?:\w+:)?(?:v|is)\b")


# Cells whose text a row's quick look cannot tell blank or not: inline strings, formula
# strings (``t="str"``), empty values, and cells written with a namespace prefix.
_TEXT_MARKS = (b"inlineStr", b'"str"', b"'str'", b"<v/>", b"<v />", b"<v></", b":c ")
_CELL = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_CELL_TYPE = re.compile(rb"""\st=["'](\w+)["']""")
_CELL_REF = re.compile(rb"""\sr=["']([A-Z]+)""")
_CELL_VALUE = re.compile(rb"<(?:\w+:)?v>(.*?)</(?:\w+:)?v>", re.S)
# An inline string's text with a printable ASCII character: not blank, whatever else.
_VISIBLE_INLINE = re.compile(rb"<(?:\w+:)?t(?:\s[^>]*)?>[^<]*?[!-;=-~]")
_INLINE_TEXT = re.compile(rb"<(?:\w+:)?t\b[^>]*>(.*?)</(?:\w+:)?t>", re.S)


def shown_text(raw: str) -> str:
    """A string cell's text as ``records()`` reads it (OOXML's ``_x000D_`` escapes undone)."""
    return unescape(raw) if "_x" in raw else raw


def _blank_strings(shared: Any) -> set[int]:
    """The indices of the shared strings that read as blank text (in C for a table of
    plain strings: the table holds every distinct text of the sheet)."""
    try:
        blank = set(
            itertools.compress(itertools.count(), map(operator.not_, map(str.strip, shared)))
        )
        escaped = list(
            itertools.compress(
                itertools.count(), map(operator.contains, shared, itertools.repeat("_x"))
            )
        )
    except TypeError:  # not all plain strings
        return {i for i, text in enumerate(shared) if not shown_text(str(text)).strip()}
    return blank | {i for i in escaped if not shown_text(shared[i]).strip()}


class RowLook:
    """Whether a row of the sheet's XML is a record, by the rule ``records()`` follows:
    a row whose every value is blank text (in a named column, no longer than the limit) is
    skipped; a number, date, boolean, error or non-blank text anywhere makes it a record.

    Most rows are told apart at a glance: with no blank shared string in the workbook and
    none of :data:`_TEXT_MARKS` in the row, a row holding a value is a record. The others
    have their cells read here (still without building elements).
    """

    def __init__(self, shared: Any, columns: int, max_field: int) -> None:
        self._shared = shared
        self._columns = columns
        self._max_field = max_field
        #: Shared strings that read as blank: a cell holding one needs a look at its row.
        self.blank_shared = _blank_strings(shared)
        self._marked = self._plain = True

    def settle(self, xml: bytes) -> None:
        """Look at a block of the sheet's XML once before its rows (:meth:`is_record`)."""
        self._marked = bool(self.blank_shared) or any(mark in xml for mark in _TEXT_MARKS)
        self._plain = b"_x" not in xml and b"&#" not in xml  # no escaped character

    def is_record(self, xml: bytes, start: int, end: int) -> bool:
        """Whether the row ``xml[start:end]`` of the block settled last, which holds a
        value, is a record."""
        if not self._marked:
            return True
        if self._plain and _VISIBLE_INLINE.search(xml, start, end) is not None:
            return True  # an inline string with a printable character (as exports write)
        if not self.blank_shared and all(xml.find(mark, start, end) == -1 for mark in _TEXT_MARKS):
            return True
        return self._cells_hold_a_record(xml[start:end])

    def _cells_hold_a_record(self, row: bytes) -> bool:
        for cell in _CELL.finditer(row):
            attributes, body = cell.group(1), cell.group(2) or b""
            kind_found = _CELL_TYPE.search(attributes)
            kind = kind_found.group(1) if kind_found else b"n"
            value = _CELL_VALUE.search(body)
            if kind == b"inlineStr":
                text = "".join(
                    html.unescape(t.decode("utf-8")) for t in _INLINE_TEXT.findall(body)
                )
            elif value is None or not value.group(1):
                continue  # no value (a formula never calculated)
            elif kind == b"s":
                index = int(value.group(1))
                if not 0 <= index < len(self._shared):
                    return True  # for the read to report
                text = str(self._shared[index])
            elif kind == b"str":
                text = html.unescape(value.group(1).decode("utf-8"))
            else:
                return True  # a number, date, boolean or error
            text = shown_text(text)
            if text.strip():
                return True  # text (right of the header too: a row error)
            ref = _CELL_REF.search(attributes)
            column = column_index_from_string(ref.group(1).decode()) if ref else 0
            if len(text) > self._max_field and column <= self._columns:
                return True  # blank but over the limit: a row error
        return False


def rows_with_values(worksheet: Any, look: RowLook) -> Iterator[int]:
    """The numbers of the sheet's rows that are records (a row 1 among them if it holds a
    value), read from its XML in blocks with plain pattern matching: a row holding a value
    (a ``<v>`` or an inline string) that ``look`` finds is a record."""
    with worksheet._get_source() as source:
        buffer = b""
        last = 0
        while True:
            block = source.read(1 << 20)
            buffer += block
            position = 0
            look.settle(buffer)
            while (start := _ROW.search(buffer, position)) is not None:
                if start.group(2) == b"/>":  # an empty row element
                    position = start.end()
                    last += 1
                    continue
                end = _ROW_END.search(buffer, start.end())
                if end is None:
                    break  # the rest of this row is in the next block
                number = _ROW_NUMBER.search(start.group(1))
                last = int(number.group(1)) if number else last + 1
                if _VALUE.search(buffer, start.end(), end.start()) is not None and (
                    look.is_record(buffer, start.end(), end.start())
                ):
                    yield last
                position = end.end()
            # Keep what may hold the start of a row not read yet (never a row already read).
            keep = position if start is not None else max(position, len(buffer) - 1024)
            buffer = buffer[keep:]
            if not block:
                return
