"""One way to open any tabular file the importer accepts.

:func:`open_table` looks at the file's content, not its name, and returns a
:class:`TableFile`: an :class:`~bulkops.formats.xlsx.XlsxFile` for an XLSX workbook (a ZIP
archive holding ``xl/workbook.xml``), else a :class:`~bulkops.formats.reader.CsvFile`
(which rejects other binary files, an ``.xls`` workbook among them, with advice). Every
caller (the engine, the upload preview) goes through it, so a new format is added here and
nowhere else.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from types import TracebackType
from typing import Literal, Protocol

from bulkops.formats.options import ReadLimits, ReadOptions
from bulkops.formats.reader import open_csv
from bulkops.model import RawRecord

__all__ = ["TableFile", "is_xlsx", "open_table", "table_format"]

_ZIP_MAGIC = b"PK\x03\x04"


class TableFile(Protocol):
    """An opened file whose header has been read and checked; a context manager."""

    header: list[str]
    file_size_bytes: int

    @property
    def format(self) -> str:
        """``"csv"`` or ``"xlsx"``."""
        ...

    @property
    def bytes_consumed(self) -> int: ...

    def records(self) -> Iterator[RawRecord]: ...

    def count_records(self) -> int:
        """How many records ``records()`` would stream, in place of reading them."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> TableFile: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...


def is_xlsx(path: str | os.PathLike[str]) -> bool:
    """Whether the file is an XLSX workbook: a ZIP archive holding ``xl/workbook.xml``."""
    with open(path, "rb") as handle:
        if handle.read(4) != _ZIP_MAGIC:
            return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "xl/workbook.xml" in names


def table_format(path: str | os.PathLike[str]) -> Literal["csv", "xlsx"]:
    """``"xlsx"`` for an XLSX workbook (by its content), else ``"csv"``."""
    return "xlsx" if is_xlsx(path) else "csv"


def open_table(
    path: str | os.PathLike[str],
    options: ReadOptions | None = None,
    limits: ReadLimits | None = None,
    *,
    unneutralise: bool = True,
) -> TableFile:
    """Open ``path``, check it as a whole and read its header.

    A workbook's text cells are taken as they are (``unneutralise`` applies to CSV: a text
    cell cannot run, so XLSX files bulkops writes carry no ``'`` prefix to remove).
    """
    options = options or ReadOptions()
    limits = limits or ReadLimits()
    if is_xlsx(path):
        # openpyxl is loaded when a workbook comes: it cost every command 85 ms of start-up.
        from bulkops.formats.xlsx import open_xlsx

        return open_xlsx(path, options, limits, decimal_separator=options.decimal_separator)
    return open_csv(path, options, limits, unneutralise=unneutralise)
