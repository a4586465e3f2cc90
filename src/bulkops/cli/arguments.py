"""Arguments and options that several commands share (same help text everywhere)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bulkops.errors import UsageError
from bulkops.model import EntityType

__all__ = ["Entity", "FileArg", "JsonOpt", "OpId"]

Entity = Annotated[
    EntityType,
    typer.Argument(
        help="warehouses, products, inventory, pricing or customers.", case_sensitive=False
    ),
]
FileArg = Annotated[Path, typer.Argument(help="CSV or TSV file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the operation as JSON only.")]
OpId = Annotated[
    str, typer.Argument(help="Operation id, or a unique prefix of it (6+ characters).")
]


class FileFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


FormatOpt = Annotated[
    FileFormat | None,
    typer.Option(
        "--format",
        help="csv or xlsx (an Excel workbook); default: from -o FILE's extension, else csv.",
        case_sensitive=False,
    ),
]


def dash_is_stdout(value: Path | None) -> Path | None:
    """``-o -`` is standard output, as in most command-line tools (not a file named ``-``)."""
    return None if value is not None and str(value) == "-" else value


def chosen_format(given: FileFormat | None, output: Path | None) -> FileFormat:
    """The format asked for, else the one ``-o FILE``'s extension names, else CSV."""
    if given is not None:
        return given
    if output is not None and output.suffix.lower() == ".xlsx":
        return FileFormat.XLSX
    return FileFormat.CSV


def binary_stdout_allowed(file_format: FileFormat) -> None:
    """A workbook is not text: refuse to print one on a terminal."""
    if file_format is FileFormat.XLSX and sys.stdout.isatty():
        raise UsageError("An XLSX workbook is not text: write it to a file with -o FILE.xlsx.")
