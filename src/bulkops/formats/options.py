"""What the caller may choose when reading CSV, and how encoding and delimiter are settled.

:class:`ReadOptions` (encoding, delimiter) and :class:`ReadLimits` are what callers pass to
:func:`bulkops.formats.reader.open_csv`. The functions here check what was given
(:func:`check_encoding`, :func:`check_delimiter`, raising
:class:`~bulkops.errors.UsageError`), settle what was not (:func:`choose_encoding` from the
byte-order mark, :func:`detect_delimiter` from the header line), and name both the way
messages show them (:func:`encoding_label`, :func:`delimiter_name`).

Choices, so that callers know what to expect:

* **Encodings.** A byte-order mark decides: UTF-8 BOM -> ``"utf-8-sig"``, UTF-16 LE/BE BOM
  -> ``"utf-16"``; a BOM wins over a given encoding. Without a BOM the file is read as the
  given encoding, else as ``"utf-8"``. Windows-1252 is never guessed; it must be given.
* **Undecodable bytes** are kept as escape characters (lone surrogates) while decoding, with
  the error handler :func:`decoding_errors` names, so the reader can report them per record.
* **Delimiter.** Given, or detected on the header line: the most frequent of ``,`` ``;`` tab
  ``|`` outside double quotes; none at all means ``,``. A tie (as many ``,`` as ``;``) is
  not guessed: the reader rejects the file naming both (:func:`tied_delimiters`).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from bulkops.errors import UsageError

__all__ = [
    "ReadLimits",
    "ReadOptions",
    "check_delimiter",
    "check_encoding",
    "choose_encoding",
    "decoding_errors",
    "delimiter_name",
    "detect_delimiter",
    "encoding_label",
    "tied_delimiters",
]


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Upper bounds that protect the service from accidental or hostile files."""

    max_file_bytes: int = 2 * 1024**3
    max_field_bytes: int = 64 * 1024
    """Longest value, counted in characters after decoding (not in encoded bytes)."""
    max_columns: int = 256
    max_rows: int = 10_000_000
    """Most data records (the header and blank records do not count)."""
    max_record_lines: int = 100
    """Most physical lines one record may span (through quoted newlines)."""


@dataclass(frozen=True, slots=True)
class ReadOptions:
    encoding: str | None = None
    """None: UTF-8 (with or without BOM) or UTF-16 with BOM; else a codec name such as
    ``"windows-1252"``, ``"utf-8"`` or ``"latin-1"``. A byte-order mark in the file wins."""
    delimiter: str | None = None
    """None: detect among ``,`` ``;`` tab ``|``; else one of these (``"tab"`` and ``"\\t"``
    are accepted for tab)."""
    sheet: str | None = None
    """For a workbook: the sheet to read (None: the first). Ignored for CSV."""
    decimal_separator: str = "."
    """For a workbook: the decimal separator numbers are written with (``"."`` or ``","``),
    so that a number cell reads as the text a CSV of the same sheet would hold. Validation
    applies the separator to CSV and workbook alike."""


_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t", "TAB": "\t"}
_ESCAPE_ERRORS = "bulkops.formats.escape_bytes"
_ENCODING_LABELS = {
    "utf-8": "UTF-8",
    "utf-16": "UTF-16",
    "utf-16-le": "UTF-16",
    "utf-16-be": "UTF-16",
    "cp1252": "Windows-1252",
    "latin-1": "Latin-1",
    "iso8859-1": "Latin-1",
}


def _escape_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Like ``surrogateescape``, but also for bytes below 0x80 (needed for UTF-16)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), exc.end


codecs.register_error(_ESCAPE_ERRORS, _escape_bytes)


def delimiter_name(delimiter: str) -> str:
    """The delimiter as messages show it: ``tab`` or the character in double quotes."""
    return "tab" if delimiter == "\t" else f'"{delimiter}"'


def detect_delimiter(header_line: str) -> str:
    """The most frequent supported delimiter outside double quotes; ties go to the earlier."""
    outside_quotes = header_line
    if '"' in header_line:
        outside_quotes = "".join(header_line.split('"')[0::2])
    best, best_count = _DELIMITERS[0], outside_quotes.count(_DELIMITERS[0])
    for candidate in _DELIMITERS[1:]:
        count = outside_quotes.count(candidate)
        if count > best_count:
            best, best_count = candidate, count
    return best


def tied_delimiters(header_line: str) -> tuple[str, str, int] | None:
    """The two most frequent delimiters outside double quotes when they are as frequent (and
    present): then the header alone cannot tell which one separates it."""
    outside_quotes = "".join(header_line.split('"')[0::2]) if '"' in header_line else header_line
    counts = sorted(
        ((outside_quotes.count(d), i, d) for i, d in enumerate(_DELIMITERS)),
        key=lambda item: (-item[0], item[1]),
    )
    (top, _, first), (runner_up, _, second) = counts[0], counts[1]
    return (first, second, top) if top > 0 and top == runner_up else None


def check_delimiter(delimiter: str) -> str:
    """The given delimiter, aliases such as ``"tab"`` resolved; UsageError if unsupported."""
    delimiter = _DELIMITER_ALIASES.get(delimiter, delimiter)
    if delimiter not in _DELIMITERS:
        raise UsageError(
            f"Unsupported delimiter {delimiter!r}: use one of , ; | or tab "
            "(or leave it out to detect it from the header)."
        )
    return delimiter


def check_encoding(encoding: str) -> str:
    """The given encoding, normalised; UsageError if Python knows no such codec."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise UsageError(
            f"Unknown encoding {encoding!r}: use for example utf-8, windows-1252 or latin-1."
        ) from None
    return encoding.strip().lower()


def choose_encoding(head: bytes, given: str | None) -> str:
    """The encoding to read with: a byte-order mark in ``head`` wins, then ``given``, UTF-8."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return given if given is not None else "utf-8"


def encoding_label(encoding: str) -> str:
    """The encoding as users know it (``UTF-8``, ``Windows-1252``...), for messages."""
    name = codecs.lookup(encoding).name
    if name.startswith("utf-8"):
        return "UTF-8"
    return _ENCODING_LABELS.get(name, encoding)


def decoding_errors(encoding: str) -> str:
    """The codec error handler that turns undecodable bytes into lone surrogates."""
    # surrogateescape is fastest but cannot escape bytes below 0x80, which UTF-16 needs.
    return "surrogateescape" if encoding_label(encoding) == "UTF-8" else _ESCAPE_ERRORS
