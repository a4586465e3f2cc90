"""Arguments and options that several commands share (same help text everywhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
