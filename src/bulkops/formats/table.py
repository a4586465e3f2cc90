"""One way to open any tabular file the importer accepts.

:func:`open_table` looks at the file's content and returns a :class:`TableFile`: today a
:class:`~bulkops.formats.reader.CsvFile`. Every caller (the engine, the upload preview)
goes through it, so a new format is added here and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

from bulkops.formats.options import ReadLimits, ReadOptions
from bulkops.formats.reader import open_csv
from bulkops.model import RawRecord

__all__ = ["TableFile", "open_table"]


class TableFile(Protocol):
    """An opened file whose header has been read and checked; a context manager."""

    header: list[str]
    file_size_bytes: int

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


def open_table(
    path: str | os.PathLike[str],
    options: ReadOptions | None = None,
    limits: ReadLimits | None = None,
    *,
    unneutralise: bool = True,
) -> TableFile:
    """Open ``path``, check it as a whole and read its header (see :func:`open_csv`)."""
    return open_csv(
        path, options or ReadOptions(), limits or ReadLimits(), unneutralise=unneutralise
    )
