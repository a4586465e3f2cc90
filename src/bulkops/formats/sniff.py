"""Recognise files that are not CSV text at all, from their first bytes.

Users rename workbooks, PDFs and screenshots to ``.csv`` more often than one would think; the
CSV parser would then produce thousands of meaningless row errors. :func:`sniff_content`
rejects such files up front with a message that says what the file looks like and how to
export a real CSV file instead. Uploads call it on the first bytes they receive, and
:func:`bulkops.formats.reader.open_csv` calls it on the first :data:`SNIFF_BYTES` of a file.
"""

from __future__ import annotations

import codecs

from bulkops.errors import FileProblem, UnsupportedFile

__all__ = ["SNIFF_BYTES", "sniff_content"]

SNIFF_BYTES = 64 * 1024
"""How many leading bytes of a file are inspected for binary content."""

_SAVE_AS_CSV = "In Excel use File > Save As > CSV UTF-8 (Comma delimited), then upload that file."
_SAVE_AS_XLSX = (
    "In Excel use File > Save As > Excel Workbook (.xlsx) or CSV UTF-8 (Comma delimited), "
    "then upload that file."
)

# (magic prefix, what the file looks like, how to fix it), checked in order.
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)", _SAVE_AS_XLSX),
    (b"%PDF-", "a PDF document", "Export the data from its source application as CSV."),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", "Upload the CSV export of the data, not a picture."),
    (b"\xff\xd8\xff", "a JPEG image", "Upload the CSV export of the data, not a picture."),
    (b"GIF87a", "a GIF image", "Upload the CSV export of the data, not a picture."),
    (b"GIF89a", "a GIF image", "Upload the CSV export of the data, not a picture."),
    (b"\x1f\x8b", "a gzip-compressed file", "Decompress it and upload the CSV file inside."),
    (b"BZh", "a bzip2-compressed file", "Decompress it and upload the CSV file inside."),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", "Extract it and upload the CSV file inside."),
    (b"Rar!\x1a\x07", "a RAR archive", "Extract it and upload the CSV file inside."),
)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")


def _reject(looks_like: str, suggestion: str) -> UnsupportedFile:
    return UnsupportedFile(
        FileProblem(
            code="unsupported_file",
            message=f"This looks like {looks_like}, not a CSV file or an Excel workbook "
            f"(.xlsx). {suggestion}",
            suggestion=suggestion,
        )
    )


def sniff_content(head: bytes, *, allow_workbook: bool = True) -> None:
    """Raise :class:`UnsupportedFile` when ``head`` (the first bytes of a file) is neither text
    nor, with ``allow_workbook``, what looks like an XLSX workbook.

    A ZIP archive that names Excel parts passes with ``allow_workbook`` (the first bytes cannot
    prove it is one: :func:`bulkops.formats.table.open_table` checks for ``xl/workbook.xml``
    and hands anything else to the CSV reader, which calls this with ``allow_workbook=False``).
    Rejects other ZIP archives (.ods, .docx …), old .xls workbooks,
    PDF, PNG, JPEG and GIF files, gzip/bzip2/7-Zip/RAR archives, and anything containing a NUL
    character. UTF-16 text with a byte-order mark is accepted (its NULs are part of the
    encoding); the NUL check is then made on the decoded characters.
    """
    if head.startswith(_ZIP_MAGIC):
        if b"xl/" in head or b"[Content_Types].xml" in head:
            if allow_workbook:
                return
            raise _reject(
                "a damaged Excel workbook (it has no xl/workbook.xml)",
                "Open it in Excel and save it again as an Excel Workbook (.xlsx).",
            )
        if b"opendocument.spreadsheet" in head:
            raise _reject(
                "an OpenDocument spreadsheet (.ods)",
                "In LibreOffice use File > Save As > Text CSV (UTF-8), then upload that file.",
            )
        raise _reject(
            "a ZIP archive",
            "Extract the CSV file or Excel workbook from the archive and upload that.",
        )
    for magic, looks_like, suggestion in _MAGIC:
        if head.startswith(magic):
            raise _reject(looks_like, suggestion)

    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        even = head[: len(head) - len(head) % 2]
        if "\x00" not in even.decode("utf-16", errors="replace"):
            return
        raise _reject(
            "a binary file (it contains NUL characters)",
            "Upload a CSV file saved as text (CSV UTF-8).",
        )
    if b"\x00" in head:
        if _looks_like_utf16_without_bom(head):
            raise _reject(
                "UTF-16 text without a byte-order mark",
                "Save the file as CSV UTF-8 (in Excel: File > Save As > CSV UTF-8).",
            )
        raise _reject(
            "a binary file (it contains NUL bytes)",
            "Upload a CSV file saved as text (CSV UTF-8), not a workbook or program file.",
        )


def _looks_like_utf16_without_bom(head: bytes) -> bool:
    """True when every other byte is NUL, as in ASCII text encoded as UTF-16 without a BOM."""
    sample = head[:1024]
    if len(sample) < 4:
        return False
    even_nuls = sample[0::2].count(0)
    odd_nuls = sample[1::2].count(0)
    half = len(sample) // 2
    return max(even_nuls, odd_nuls) >= 0.9 * half and min(even_nuls, odd_nuls) <= 0.1 * half
