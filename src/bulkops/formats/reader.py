"""Streaming CSV reader: decoding, dialect, limits, and row and line numbers users can find.

``open_csv`` checks the file as a whole (size, binary content, encoding, header) and raises
:class:`~bulkops.errors.FileRejected` (or a subclass) before anything is processed;
``CsvFile.records()`` then streams :class:`~bulkops.model.RawRecord` values with memory that
does not grow with the file. Problems of a single record are values (``RawRecord.error``),
never exceptions, and never swallow the records after it.

Choices, so that callers know what to expect:

* **Encoding and delimiter** are given in :class:`ReadOptions` or settled from the file as
  :mod:`bulkops.formats.options` describes (a byte-order mark wins; a tie between two
  delimiters in the header is rejected, code ``"ambiguous_delimiter"``).
* **Undecodable bytes** are kept as escape characters while reading, so one bad byte costs
  one record: the record gets an error naming the byte and the column, its values carry
  U+FFFD in place of the bad bytes, and reading continues. In the header they reject the file
  (code ``"undecodable"``).
* **Row numbers** are what a spreadsheet shows: the header is row 1, each record after it
  the next row. ``RawRecord.line`` is the physical line (1-based) where the record starts;
  it is larger than the row once a record above spans several lines (quoted newlines).
  CR, LF and CRLF each end a physical line.
* **Blank records are skipped but consume a row number**, so numbers still match the
  spreadsheet: an empty line, a line of only whitespace, or a line of only delimiters and
  empty or white-space values, quoted or not (``,,,`` or ``"","",""``), which is what
  spreadsheets export for empty rows. ``count_records`` counts by the same rule.
* **Values are returned exactly as read**: not trimmed (trimming belongs to validation), with
  the one ``'`` prefix of formula neutralisation removed when ``unneutralise=True`` (see
  :mod:`bulkops.formats.writer`). Header cells are trimmed and lose a stray BOM.
* **Ragged records** (field count different from the header's, including one extra empty
  field from a trailing delimiter) get an error; their values are still returned.
* **Unclosed quotes.** A record whose quoted field spans more than
  ``ReadLimits.max_record_lines`` lines, reaches the end of the file inside quotes, or spans
  several lines and then has the wrong field count or a stray character after a closing
  quote, is reported as an unclosed quote at its row. Its values are those of its first
  line, and reading resumes at the line right after that first line, so the records after it
  keep their own row and line numbers.
* **Limits** (:class:`ReadLimits`): ``max_file_bytes`` is checked on the file size before
  reading (:class:`~bulkops.errors.FileTooLarge`); ``max_columns`` on the header
  (``FileRejected``, code ``"too_many_columns"``); ``max_field_bytes`` is counted in
  **characters** after decoding, per value (a record error naming the column);
  ``max_rows`` counts records, blank ones excepted, and is checked lazily: iterating
  ``records()`` raises ``FileRejected`` (code ``"too_many_rows"``) when record
  ``max_rows + 1`` is reached, so callers that need all-or-nothing should validate first.

``FileProblem.code`` values raised here: ``"file_too_large"``, ``"unsupported_file"``
(see :mod:`bulkops.formats.sniff`), ``"empty_file"``, ``"no_header"``, ``"undecodable"``,
``"unclosed_quote"``, ``"too_many_columns"``, ``"too_many_rows"``; their messages are
worded in :mod:`bulkops.formats.problems`.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Iterator
from itertools import chain
from types import TracebackType
from typing import Any

from bulkops.errors import FileRejected
from bulkops.formats import halves, problems
from bulkops.formats.encodings import diagnose_bytes
from bulkops.formats.options import (
    ReadLimits,
    ReadOptions,
    check_delimiter,
    check_encoding,
    choose_encoding,
    decoding_errors,
    detect_delimiter,
    encoding_label,
    tied_delimiters,
)
from bulkops.formats.sniff import SNIFF_BYTES, sniff_content
from bulkops.formats.writer import unneutralise as _unneutralise_value
from bulkops.model import RawRecord

__all__ = ["CsvFile", "ReadLimits", "ReadOptions", "open_csv", "sniff_content"]


_SURROGATES = re.compile("[\ud800-\udfff]")
_DEFAULT_OPTIONS = ReadOptions()
_DEFAULT_LIMITS = ReadLimits()


_END_OF_INPUT = ""


class _RecordTooLong(Exception):
    """A record has run over ``max_record_lines`` physical lines."""


def _feed(lines: Iterable[str], pending: list[str], max_lines: int) -> Iterator[str]:
    """Hand lines to ``csv.reader`` while remembering those of the record being read.

    ``pending`` holds the physical lines of the current record, so that after a broken record
    the lines after its first one can be parsed again. An empty string (which no line read
    from a file can be) is appended at the end of the input: a record returned while it is
    present was cut off by the end of the file inside quotes (``csv.reader`` never reads
    ahead past a complete record).
    """
    for line in lines:
        pending.append(line)
        if len(pending) > max_lines:
            raise _RecordTooLong
        yield line
    pending.append(_END_OF_INPUT)


class CsvFile:
    """An opened CSV file whose header has been read and checked; a context manager.

    Created by :func:`open_csv`. ``records()`` streams the data records once.
    """

    format = "csv"
    header: list[str]
    delimiter: str
    encoding: str
    file_size_bytes: int

    def __init__(
        self,
        *,
        binary: io.BufferedReader,
        text: io.TextIOWrapper,
        encoding: str,
        file_size_bytes: int,
        limits: ReadLimits,
        unneutralise: bool,
        delimiter: str | None,
    ) -> None:
        self._binary = binary
        self._text = text
        self.encoding = encoding
        self.file_size_bytes = file_size_bytes
        self._limits = limits
        self._unneutralise = unneutralise
        self._encoding_label = encoding_label(encoding)
        self._records_started = False
        self._lines: Iterator[str] = iter(text)
        self._pending: list[str] = []
        self._next_line = 1
        self._recounted = False  # count_records() had to read the file in full
        self._may_split = True  # count_records() may count halves at once (not a half itself)
        first_line = next(self._lines, None)
        if first_line is None:
            raise problems.empty_file()
        self._first_line = first_line
        if delimiter is None and (tie := tied_delimiters(first_line)) is not None:
            raise problems.ambiguous_delimiter(*tie)
        self.delimiter = delimiter if delimiter is not None else detect_delimiter(first_line)
        self._dialect: dict[str, Any] = {
            "delimiter": self.delimiter,
            "quotechar": '"',
            "doublequote": True,
            "skipinitialspace": False,
            "strict": False,
        }
        self._reader = self._new_reader([first_line])
        self.header = self._read_header()

    # -- public -------------------------------------------------------------------------

    @property
    def bytes_consumed(self) -> int:
        """Approximate number of bytes of the file read so far (for progress)."""
        if self._binary.closed:
            return self.file_size_bytes
        return min(self._binary.tell(), self.file_size_bytes)

    def records(self) -> Iterator[RawRecord]:
        """Stream the data records (header excluded); can be called once."""
        if self._records_started:
            raise RuntimeError("CsvFile.records() can be iterated only once")
        self._records_started = True
        return self._iter_records()

    def count_records(self) -> int:
        """The number of records :meth:`records` would stream (blank ones not counted),
        without building them; in place of ``records()``, which cannot be called after it.

        It splits the file as ``records()`` does but skips the per-record work, so it costs
        a fraction of a full read. A file with a broken record (an unclosed quote, a record
        over ``max_record_lines`` lines) is read again in full, since ``records()`` resumes
        after such a record in its own way; the count stays exact either way. Raises
        ``FileRejected`` (code ``"too_many_rows"``) like ``records()`` when there are more
        than ``max_rows``.
        """
        if self._records_started:
            raise RuntimeError("CsvFile.count_records() needs a file not yet read")
        self._records_started = True
        if (split := self._halves()) is not None:
            first, second = split
            try:
                counted = halves.count_at_once(first._part_count, second._part_count)
            finally:
                first.close()
                second.close()
            if counted is not None and counted <= self._limits.max_rows:
                return counted
        max_rows = self._limits.max_rows
        ncols = len(self.header)
        pending = self._pending
        count = 0
        row_no = 1
        try:
            for row in self._reader:
                row_no += 1
                if len(pending) == 1:
                    pending.clear()
                    if (row and " " < row[0][:1] < "\x80") or "".join(row).strip():
                        count += 1
                    else:
                        continue
                elif pending[-1] == _END_OF_INPUT or len(row) != ncols or not self._strict_ok():
                    raise _RecordTooLong  # broken: count the way records() reads it
                else:
                    pending.clear()
                    if not "".join(row).strip():
                        continue
                    count += 1
                if count > max_rows:
                    raise problems.too_many_rows(max_rows, row_no, -1)
        except (_RecordTooLong, csv.Error):
            return self._count_again()
        except FileRejected:
            return self._count_again()  # the same refusal, with its line number
        return count

    def _halves(self) -> tuple[CsvFile, CsvFile] | None:
        """The file as two files to count at once (:mod:`bulkops.formats.halves`): up to a
        line break near its middle, and the header's line followed by the rest; None where
        it cannot be cut safely or is a half already."""
        if not self._may_split or self._next_line != 2:
            return None
        fd = self._binary.fileno()
        found = halves.cut(fd, self.file_size_bytes, self.encoding, self._first_line)
        if found is None:
            return None
        header, at = found
        return self._part(fd, 0, at, b""), self._part(fd, at, self.file_size_bytes, header)

    def _part(self, fd: int, start: int, end: int, prefix: bytes) -> CsvFile:
        binary = io.BufferedReader(halves.FileRange(fd, start, end, prefix))
        part = CsvFile(
            binary=binary,  # type: ignore[arg-type]  # any raw stream will do
            text=io.TextIOWrapper(
                binary, encoding=self.encoding, errors=decoding_errors(self.encoding), newline=""
            ),
            encoding=self.encoding,
            file_size_bytes=len(prefix) + end - start,
            limits=self._limits,
            unneutralise=self._unneutralise,
            delimiter=self.delimiter,
        )
        part._may_split = False
        return part

    def _part_count(self) -> int | None:
        """A half's count, or None when only a whole read can count it."""
        counted = self.count_records()
        return None if self._recounted else counted

    def _count_again(self) -> int:
        """A full read from the start, for a file :meth:`count_records` cannot split alone."""
        self._recounted = True
        if not self._may_split:
            return -1  # a half: the whole file is counted instead (see _part_count)
        self._text.detach()  # else it closes the file when it is collected
        self._binary.seek(0)
        self._text = io.TextIOWrapper(
            self._binary, encoding=self.encoding, errors=decoding_errors(self.encoding),
            newline="",
        )
        self._lines = iter(self._text)
        self._pending.clear()
        self._reader = self._new_reader([])
        self._read_header()
        self._records_started = False
        return sum(1 for _ in self.records())

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> CsvFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- header ---------------------------------------------------------------------------

    def _new_reader(self, pushback: list[str]) -> Iterator[list[str]]:
        lines: Iterable[str] = chain(pushback, self._lines) if pushback else self._lines
        feed = _feed(lines, self._pending, self._limits.max_record_lines)
        return csv.reader(feed, **self._dialect)

    def _read_header(self) -> list[str]:
        pending = self._pending
        try:
            cells = next(self._reader, None)
        except (_RecordTooLong, csv.Error):
            cells = None
        if (
            cells is None
            or _END_OF_INPUT in pending
            or (len(pending) > 1 and not self._strict_ok())
        ):
            raise problems.header_unclosed_quote()
        self._next_line = 1 + len(pending)
        pending.clear()
        joined = "".join(cells)
        if not joined.isascii() and (bad := _SURROGATES.search(joined)) is not None:
            raise problems.header_undecodable(self._encoding_label, ord(bad.group()) & 0xFF)
        header = [cell.strip().lstrip("\ufeff").strip() for cell in cells]
        if self._unneutralise and "'" in joined:
            header = [_unneutralise_value(cell) for cell in header]
        if not any(header):
            raise problems.no_header()
        max_columns = self._limits.max_columns
        if len(header) > max_columns:
            raise problems.too_many_columns(len(header), max_columns, self.delimiter)
        return header

    def _strict_ok(self) -> bool:
        """Whether the pending lines of a multi-line record parse under strict RFC 4180 rules.

        A quote left open earlier in the file swallows the following lines until some later
        quote "closes" it; that later quote is then normally followed by an ordinary
        character, which strict mode rejects.
        """
        lines = [line for line in self._pending if line]
        try:
            for _ in csv.reader(lines, **{**self._dialect, "strict": True}):
                pass
        except csv.Error:
            return False
        return True

    # -- records --------------------------------------------------------------------------

    def _iter_records(self) -> Iterator[RawRecord]:
        ncols = len(self.header)
        max_field = self._limits.max_field_bytes
        max_rows = self._limits.max_rows
        row_ceiling = max_rows + 1  # raised by one per skipped blank record
        pending = self._pending
        line_no = self._next_line
        row_no = 1
        reader = self._reader
        unneutralise = self._unneutralise
        # RawRecord(row, line, values) without the named tuple's Python-level __new__ (a
        # fifth of the reader's time per record) or any other Python call.
        new, record_type = tuple.__new__, RawRecord
        find_surrogate = _SURROGATES.search  # undecodable bytes were escaped as surrogates
        while True:
            broken: str | None = None  # why the record at line_no could not be split
            try:
                for row in reader:
                    row_no += 1
                    if len(pending) == 1:
                        # The common case: one physical line, one record. The checks run on
                        # the line, which is cheaper than on the values. A first value that
                        # begins with a printable ASCII character makes the record not blank;
                        # any other record may be blank (an empty or white-space value first,
                        # quoted or not), and is looked at below.
                        text = pending[0]
                        pending.clear()
                        line = line_no
                        line_no += 1
                        if (
                            len(row) == ncols
                            and row_no <= row_ceiling
                            and " " < row[0][:1] < "\x80"
                            and len(text) <= max_field
                            and (text.isascii() or find_surrogate(text) is None)
                            and "'" not in text
                            and "\x00" not in text
                        ):
                            yield new(record_type, (row_no, line, row, None))
                            continue
                        joined = "".join(row)
                        quoted = '"' in text
                    elif pending[-1] == _END_OF_INPUT:
                        broken = "end_of_file"
                        break
                    elif len(row) != ncols or not self._strict_ok():
                        broken = "swallows_lines"
                        break
                    else:
                        line = line_no
                        line_no += len(pending)
                        pending.clear()
                        joined = "".join(row)
                        quoted = True  # a record over several lines has a quoted value
                    if not joined or joined.isspace():
                        row_ceiling += 1
                        continue
                    if row_no > row_ceiling:
                        raise problems.too_many_rows(max_rows, row_no, line)
                    yield self._checked(row, row_no, line, joined, unneutralise, quoted)
                else:
                    return
            except _RecordTooLong:
                row_no += 1
                broken = "too_long"
            except csv.Error as exc:
                row_no += 1
                broken = f"csv: {exc}"
            if row_no > row_ceiling:
                raise problems.too_many_rows(max_rows, row_no, line_no)
            yield self._broken_record(row_no, line_no, pending[0], broken)
            pushback = [rest for rest in pending[1:] if rest]
            pending.clear()
            line_no += 1
            reader = self._new_reader(pushback)

    def _checked(
        self,
        row: list[str],
        row_no: int,
        line: int,
        joined: str,
        unneutralise: bool,
        quoted: bool,
    ) -> RawRecord:
        """Build the record for a row that failed the fast path's checks."""
        found: list[str] = []
        values = row
        at = problems.where(row_no, line)
        if not joined.isascii() and _SURROGATES.search(joined) is not None:
            for index, value in enumerate(values):
                bad = _SURROGATES.search(value)
                if bad is not None:
                    found.append(
                        problems.undecodable_value_message(
                            at,
                            self._encoding_label,
                            ord(bad.group()) & 0xFF,
                            problems.column_name(self.header, index),
                        )
                    )
                    break
            values = [_SURROGATES.sub("\ufffd", value) for value in values]
        if "\x00" in joined:
            index = next(i for i, value in enumerate(values) if "\x00" in value)
            found.append(problems.nul_value_message(at, problems.column_name(self.header, index)))
            values = [value.replace("\x00", "") for value in values]
        ncols = len(self.header)
        if len(values) != ncols:
            found.append(problems.ragged_message(at, len(values), ncols, self.delimiter))
        max_field = self._limits.max_field_bytes
        if len(joined) > max_field:
            for index, value in enumerate(values):
                if len(value) > max_field:
                    found.append(
                        problems.value_too_long_message(
                            at,
                            problems.column_name(self.header, index),
                            len(value),
                            max_field,
                            quoted=quoted,
                        )
                    )
        if unneutralise and "'" in joined:
            values = [_unneutralise_value(value) for value in values]
        return RawRecord(row_no, line, values, " ".join(found) or None)

    def _broken_record(self, row_no: int, line: int, first_line: str, why: str) -> RawRecord:
        """The record for a row whose quoting broke; values are those of its first line."""
        message = problems.broken_record_message(row_no, line, why, self._limits)
        if why.startswith("csv: field larger than field limit"):
            # Over the csv module's limit: say which value, if it is on the first line.
            overlong = _overlong_value(first_line, self.delimiter, self._limits.max_field_bytes)
            if overlong is not None:
                index, length, quoted = overlong
                message = (
                    problems.value_too_long_message(
                        problems.where(row_no, line),
                        problems.column_name(self.header, index),
                        length,
                        self._limits.max_field_bytes,
                        quoted=quoted,
                    )
                    + " Reading continued with the next line."
                )
        try:
            values = next(csv.reader([first_line.rstrip("\r\n")], **self._dialect), [])
        except csv.Error:
            values = []
        values = [_SURROGATES.sub("\ufffd", value) for value in values]
        if self._unneutralise:
            values = [_unneutralise_value(value) for value in values]
        return RawRecord(row_no, line, values, message)


def _overlong_value(line: str, delimiter: str, limit: int) -> tuple[int, int, bool] | None:
    """The first value of ``line`` longer than ``limit``: its index, length and whether it is
    quoted (a quote never closed runs to the end of the line)."""
    index = start = 0
    in_quotes = quoted = False
    text = line.rstrip("\r\n")
    for position, char in enumerate(text):
        if char == '"':
            in_quotes = not in_quotes
            quoted = True
        elif char == delimiter and not in_quotes:
            length = position - start - (2 if quoted else 0)
            if length > limit:
                return index, length, quoted
            index, start, quoted = index + 1, position + 1, False
    length = len(text) - start - (2 if quoted and not in_quotes else 1 if quoted else 0)
    return (index, length, quoted) if length > limit else None


def open_csv(
    path: str | os.PathLike[str],
    options: ReadOptions = _DEFAULT_OPTIONS,
    limits: ReadLimits = _DEFAULT_LIMITS,
    *,
    unneutralise: bool = True,
) -> CsvFile:
    """Open ``path``, check it as a whole and read its header.

    Raises :class:`~bulkops.errors.FileTooLarge`, :class:`~bulkops.errors.UnsupportedFile` or
    :class:`~bulkops.errors.FileRejected` for files that cannot be used, and
    :class:`~bulkops.errors.UsageError` for an unknown encoding or delimiter in ``options``.
    """
    delimiter = check_delimiter(options.delimiter) if options.delimiter is not None else None
    given_encoding = check_encoding(options.encoding) if options.encoding is not None else None
    if limits.max_field_bytes >= csv.field_size_limit():
        # Our own check reports long values; the csv module's lower default must not fire first.
        csv.field_size_limit(limits.max_field_bytes + 1)
    binary = open(path, "rb")  # noqa: SIM115 - closed by CsvFile.close() or below
    try:
        file_size_bytes = os.fstat(binary.fileno()).st_size
        if file_size_bytes > limits.max_file_bytes:
            raise problems.file_too_large(file_size_bytes, limits.max_file_bytes)
        head = binary.read(SNIFF_BYTES)
        sniff_content(head, allow_workbook=False)
        if given_encoding is None and (diagnosis := diagnose_bytes(head)) is not None:
            raise problems.not_utf8(diagnosis)
        encoding = choose_encoding(head, given_encoding)
        binary.seek(0)
        errors = decoding_errors(encoding)
        text = io.TextIOWrapper(binary, encoding=encoding, errors=errors, newline="")
        return CsvFile(
            binary=binary,
            text=text,
            encoding=encoding,
            file_size_bytes=file_size_bytes,
            limits=limits,
            unneutralise=unneutralise,
            delimiter=delimiter,
        )
    except BaseException:
        binary.close()
        raise
