"""The ``bulkops`` command line (Typer + Rich)."""

from bulkops.cli.app import app, main

__all__ = ["app", "main"]
