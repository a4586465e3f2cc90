"""What encoding a text file that is not UTF-8 most likely is, and where it stops being UTF-8.

:func:`diagnose` is the one entry point. The CSV reader calls it on a file given without an
encoding and without a byte-order mark, and rejects the file when it answers (code
``"undecodable"``, before anything changes); the upload preview calls it to propose an
encoding. It reads only the first :data:`~bulkops.formats.sniff.SNIFF_BYTES` of the file.

The guess comes from charset-normalizer. Short Western European text scores the same in
several single-byte code pages (cp1252, cp1250, mac_latin2 …); the tie goes to cp1252, the
code page Excel on Windows writes in Western Europe (and whose letters a French, German or
Spanish file actually holds).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
from dataclasses import dataclass

from charset_normalizer import from_bytes
from charset_normalizer.utils import is_multi_byte_encoding

__all__ = ["EncodingDiagnosis", "diagnose", "encoding_option", "label_of"]

_SAMPLE_BYTES = 64 * 1024
# How much worse (charset-normalizer's "chaos", 0..1) cp1252 may score and still win.
_TIE_MARGIN = 0.05
_LABELS = {
    "utf_8": "UTF-8",
    "utf_16": "UTF-16",
    "latin_1": "Latin-1",
    "mac_roman": "Mac Roman",
    "mac_latin2": "Mac Central European",
    "shift_jis": "Shift JIS",
    "euc_jp": "EUC-JP",
    "gb2312": "GB2312",
    "gb18030": "GB18030",
    "big5": "Big5",
    "euc_kr": "EUC-KR",
    "koi8_r": "KOI8-R",
}


@dataclass(frozen=True, slots=True)
class EncodingDiagnosis:
    """Where a file stops being UTF-8, and the encoding it most likely is.

    ``encoding`` is a name every door accepts as the ``encoding`` option
    (``"windows-1252"``); ``label`` is how people know it (``"Windows-1252"``). ``byte`` is
    the first byte that is not valid UTF-8, ``offset`` its position in the file (0-based),
    ``row`` the spreadsheet row of the record holding it (header = 1) and ``line`` its
    physical line (1-based).
    """

    encoding: str
    label: str
    byte: int
    offset: int
    row: int
    line: int

    @property
    def summary(self) -> str:
        """``looks like Windows-1252: byte 0xE9 at row 3`` (with the line when it differs)."""
        at = f"row {self.row}" if self.row == self.line else f"row {self.row} (line {self.line})"
        return f"looks like {self.label}: byte 0x{self.byte:02X} at {at}"


def label_of(encoding: str) -> str:
    """How people name ``encoding`` (``cp1252`` -> ``Windows-1252``)."""
    name = codecs.lookup(encoding).name.replace("-", "_")
    if name.startswith("cp125"):
        return f"Windows-{name[2:]}"
    if name.startswith("iso8859_"):
        return f"ISO-8859-{name[8:]}"
    if name.startswith("cp"):
        return f"code page {name[2:]}"
    return _LABELS.get(name, name)


def encoding_option(encoding: str) -> str:
    """The name to give as the ``encoding`` option (``cp1252`` -> ``windows-1252``)."""
    name = codecs.lookup(encoding).name.replace("_", "-")
    if name.startswith("cp125"):
        return f"windows-{name[2:]}"
    return name


def diagnose(
    path: str | os.PathLike[str], *, sample_bytes: int = _SAMPLE_BYTES
) -> EncodingDiagnosis | None:
    """Why the start of the file at ``path`` is not UTF-8, or None when it is.

    None also when the file starts with a byte-order mark (UTF-8 or UTF-16: it says its
    encoding itself). Only the first ``sample_bytes`` are read; a multi-byte character cut
    off at the end of the sample does not count as an error.
    """
    with open(path, "rb") as handle:
        sample = handle.read(sample_bytes)
    return diagnose_bytes(sample)


def diagnose_bytes(sample: bytes) -> EncodingDiagnosis | None:
    """:func:`diagnose` on the first bytes of a file."""
    if sample.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(sample, final=False)
    except UnicodeDecodeError as exc:
        offset = exc.start
    else:
        return None
    encoding = _likely_encoding(sample)
    row, line = _position(sample[:offset].decode("utf-8"))
    return EncodingDiagnosis(
        encoding=encoding_option(encoding),
        label=label_of(encoding),
        byte=sample[offset],
        offset=offset,
        row=row,
        line=line,
    )


def _decodes(sample: bytes, encoding: str) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _likely_encoding(sample: bytes) -> str:
    results = from_bytes(sample)
    best = results.best()
    if best is None:
        return "cp1252" if _decodes(sample, "cp1252") else "latin-1"
    if best.encoding == "cp1252" or is_multi_byte_encoding(best.encoding):
        return str(best.encoding)
    if "cp1252" in best.could_be_from_charset:  # the same text either way
        return "cp1252"
    cp1252 = next((m for m in results if m.encoding == "cp1252"), None)
    if cp1252 is not None and cp1252.chaos <= best.chaos + _TIE_MARGIN:
        return "cp1252"
    return str(best.encoding)


def _position(before: str) -> tuple[int, int]:
    """(row, line) of the character right after ``before`` (the valid text before it)."""
    line = 1 + before.count("\n") + before.count("\r") - before.count("\r\n")
    # Rows are records: a quoted line break does not start one. The "x" makes csv count the
    # record the bad byte is in even when it starts right there.
    rows = 0
    try:
        for _ in csv.reader(io.StringIO(before + "x", newline="")):
            rows += 1
    except csv.Error:  # a quote never closed, or a value over csv's limit: count what was read
        rows += 1
    return max(rows, 1), line
