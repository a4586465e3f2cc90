"""The messages the CSV reader gives about a file or a record, worded for the user.

Problems of the file as a whole come back as exceptions to raise
(:class:`~bulkops.errors.FileRejected` or :class:`~bulkops.errors.FileTooLarge`, with the
``FileProblem.code`` values listed in :mod:`bulkops.formats.reader`); problems of one record
come back as the text of ``RawRecord.error``. Each message says where (row, line, column),
what is wrong and how to fix the file, so that it can be shown as it is.
"""

from __future__ import annotations

from bulkops.errors import FileProblem, FileRejected, FileTooLarge
from bulkops.formats.encodings import EncodingDiagnosis
from bulkops.formats.options import ReadLimits, delimiter_name

__all__ = [
    "ambiguous_delimiter",
    "broken_record_message",
    "column_name",
    "empty_file",
    "encoding_suggestion",
    "file_too_large",
    "header_unclosed_quote",
    "header_undecodable",
    "no_header",
    "not_utf8",
    "nul_value_message",
    "ragged_message",
    "too_many_columns",
    "too_many_rows",
    "undecodable_value_message",
    "value_too_long_message",
    "where",
]


def _format_size(size_bytes: int) -> str:
    for unit, factor in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size_bytes >= factor:
            return f"{size_bytes / factor:.1f} {unit}"
    return f"{size_bytes} bytes"


def where(row: int, line: int) -> str:
    """``Row 5``, or ``Row 5 (line 7)`` once the physical line differs from the row."""
    return f"Row {row}" if row == line else f"Row {row} (line {line})"


def column_name(header: list[str], index: int) -> str:
    """``column 2 ("name")``, or ``column 9`` past the end of the header."""
    if index < len(header):
        return f'column {index + 1} ("{header[index]}")'
    return f"column {index + 1}"


def encoding_suggestion(label: str) -> str:
    """How to fix bytes that are not valid in the encoding called ``label``."""
    # Worded for every door (a row error has no door of its own): it names the encoding
    # option, not the CLI's --encoding or the API's field.
    if label == "UTF-8":
        return (
            "Save the file as UTF-8 (in Excel: File > Save As > CSV UTF-8), or read it with "
            "the encoding windows-1252 if it was saved by an older Excel."
        )
    if label == "UTF-16":
        return "Save the file as UTF-8 (in Excel: File > Save As > CSV UTF-8)."
    return (
        f"The file is not {label}: read it with the encoding it was saved in, or save it as "
        "UTF-8 (in Excel: File > Save As > CSV UTF-8)."
    )


# -- the file as a whole ----------------------------------------------------------------------


def file_too_large(file_size_bytes: int, max_file_bytes: int) -> FileTooLarge:
    return FileTooLarge(
        FileProblem(
            code="file_too_large",
            message=(
                f"The file is {_format_size(file_size_bytes)}; the limit is "
                f"{_format_size(max_file_bytes)}. Split it into smaller files."
            ),
            suggestion="Split the file into smaller files and upload them one by one.",
        )
    )


def empty_file() -> FileRejected:
    return FileRejected(
        FileProblem(
            code="empty_file",
            message="The file is empty.",
            suggestion="Export the data again with a header row of column names.",
        )
    )


def header_unclosed_quote() -> FileRejected:
    return FileRejected(
        FileProblem(
            code="unclosed_quote",
            message=(
                "The header (line 1) has a quote that is never closed, so the column "
                "names cannot be read."
            ),
            line=1,
            suggestion="Remove the stray double quote from the header line.",
        )
    )


def header_undecodable(label: str, byte: int) -> FileRejected:
    """The header holds ``byte``, which is not valid in the encoding called ``label``."""
    suggestion = encoding_suggestion(label)
    return FileRejected(
        FileProblem(
            code="undecodable",
            message=(
                f"The header (line 1) contains bytes that are not valid "
                f"{label} (byte 0x{byte:02X}). "
                f"{suggestion}"
            ),
            line=1,
            suggestion=suggestion,
        )
    )


def not_utf8(diagnosis: EncodingDiagnosis) -> FileRejected:
    """The start of a file given without an encoding is not UTF-8 (CONTRACT section 3)."""
    return FileRejected(
        FileProblem(
            code="undecodable",
            message=(
                f"The file is not UTF-8; it {diagnosis.summary}. Nothing was read: give "
                f"the encoding it was saved in ({diagnosis.encoding}), or save it as UTF-8 "
                "(in Excel: File > Save As > CSV UTF-8)."
            ),
            line=diagnosis.line,
            suggestion=f"Read it as {diagnosis.encoding}, or save it as CSV UTF-8.",
            hint_field="encoding",
            hint_value=diagnosis.encoding,
        )
    )


def no_header() -> FileRejected:
    return FileRejected(
        FileProblem(
            code="no_header",
            message=(
                "The file has no header: line 1 is empty. The first line must hold "
                "the column names."
            ),
            line=1,
            suggestion="Add a header row with the column names, e.g. sku,name,price.",
        )
    )


def too_many_columns(count: int, max_columns: int, delimiter: str) -> FileRejected:
    return FileRejected(
        FileProblem(
            code="too_many_columns",
            message=(
                f"The header (line 1) has {count} columns; at most {max_columns} "
                f"are allowed. Check the delimiter (read as "
                f"{delimiter_name(delimiter)}) and remove unused columns."
            ),
            line=1,
            suggestion="Remove unused columns or split the file.",
        )
    )


def ambiguous_delimiter(first: str, second: str, count: int) -> FileRejected:
    """The header has as many of two delimiters, so which one separates it is a guess."""
    return FileRejected(
        FileProblem(
            code="ambiguous_delimiter",
            message=(
                f"The header (line 1) has as many {delimiter_name(first)} as "
                f"{delimiter_name(second)} ({count} each), so the delimiter cannot be told "
                "from it."
            ),
            line=1,
            suggestion=f"Give the delimiter: {delimiter_name(first)} or {delimiter_name(second)}.",
            hint_field="delimiter",
        )
    )


def too_many_rows(max_rows: int, row_no: int, line: int) -> FileRejected:
    return FileRejected(
        FileProblem(
            code="too_many_rows",
            message=(
                f"The file has more than {max_rows:,} records (row {row_no}, line {line}, "
                f"is one too many). Split it into files of at most {max_rows:,} records."
            ),
            line=line,
            suggestion=f"Split the file into files of at most {max_rows:,} records.",
        )
    )


# -- one record -------------------------------------------------------------------------------


def undecodable_value_message(at: str, label: str, byte: int, column: str) -> str:
    """``byte`` in ``column`` of the record at ``at`` is not valid in encoding ``label``."""
    return (
        f"{at} contains bytes that are not valid {label} "
        f"(byte 0x{byte:02X} in {column}). "
        f"{encoding_suggestion(label)}"
    )


def nul_value_message(at: str, column: str) -> str:
    return (
        f"{at} contains a NUL character in {column}, which text "
        "cannot hold. Remove it, or export the data again as CSV UTF-8."
    )


def value_too_long_message(
    at: str, column: str, length: int, max_field: int, *, quoted: bool
) -> str:
    """A value over the field-size limit; a quote is suspected only where there is one."""
    fix = (
        "Shorten it, or check that its quotes are closed where the value ends."
        if quoted
        else "Shorten it."
    )
    return (
        f"{at}: the value in {column} is {length:,} characters long; "
        f"the limit is {max_field:,}. {fix}"
    )


def ragged_message(at: str, nfields: int, ncols: int, delimiter: str) -> str:
    """A record of ``nfields`` fields under a header of ``ncols`` columns."""
    shown = delimiter_name(delimiter)
    if nfields < ncols:
        hint = (
            f"Add the missing values (empty ones too) separated by {shown}, so that "
            f"every row has {ncols} fields."
        )
    else:
        hint = (
            f"Enclose values that contain {shown} in double quotes, and remove any "
            f"{shown} at the end of the line."
        )
    return f"{at} has {nfields} fields but the header has {ncols} columns. {hint}"


def broken_record_message(row_no: int, line: int, why: str, limits: ReadLimits) -> str:
    """The error of a record whose quoting broke.

    ``why`` is ``"csv: "`` followed by the ``csv`` module's error, or one of
    ``"too_long"``, ``"end_of_file"`` and ``"swallows_lines"`` for a quote never closed.
    """
    at = f"Row {row_no} (line {line})"
    if why.startswith("csv: ") and "field larger than field limit" not in why:
        return (
            f"{at} could not be read ({why[5:]}). Check the quotes on that line; "
            "reading continued with the next line."
        )
    if why.startswith("csv: "):
        return (
            f"{at} has a value longer than {limits.max_field_bytes:,} characters, "
            "probably because a quote is never closed. Check the quotes on that line; "
            "reading continued with the next line."
        )
    extent = {
        "too_long": f"would run over more than {limits.max_record_lines} lines",
        "end_of_file": "would run to the end of the file",
    }.get(why, "would swallow the lines after it")
    return (
        f"{at} has a quote that is never closed (the quoted value {extent}). "
        "Enclose each whole value in double quotes and write a quote inside a value as "
        'two quotes (""). Reading continued with the next line.'
    )
