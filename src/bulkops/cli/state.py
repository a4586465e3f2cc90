"""What every command shares: the root options' state, and how errors reach the user."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

from bulkops import engine
from bulkops.cli.output import err, print_item
from bulkops.config import Settings
from bulkops.errors import BulkopsError, FileProblem, FileRejected, UsageError

__all__ = ["State", "fail", "reported_errors", "state_of"]


@dataclass
class State:
    """The root options; the database is opened on first use (``--help`` never opens it)."""

    settings: Settings
    org_slug: str | None
    #: False for ``init``, which creates the database; every other command needs it to exist.
    needs_database: bool = True
    #: ``--as EMAIL``: operations are recorded as started by this user.
    as_email: str | None = None
    _ctx: engine.Context | None = None

    @property
    def ctx(self) -> engine.Context:
        if self._ctx is None:
            missing = engine.missing_database(self.settings) if self.needs_database else None
            if missing is not None:
                raise UsageError(
                    f"There is no bulkops database at {missing}. Create one with "
                    "`bulkops init`, or point to yours with --database-url or "
                    "BULKOPS_DATABASE_URL."
                )
            self._ctx = engine.open_context(self.settings)
        return self._ctx

    def org(self) -> dict[str, Any]:
        return engine.resolve_organization(self.ctx.store, self.org_slug)

    def starter(self, org_id: int) -> engine.Starter:
        """Who starts an operation from this command: the ``--as`` user, else
        ``cli:<os-user>@<host>`` with no user id."""
        return engine.cli_starter(self.ctx.store, org_id, self.as_email)

    def operation_id(self, org_id: int, text: str) -> str:
        """The whole id of the operation ``text`` names (an id, or a unique prefix of it)."""
        return engine.operation_id_from_prefix(self.ctx, org_id, text)


def state_of(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


def fail(exc: BulkopsError) -> NoReturn:
    """Print the error (every problem of a rejected file) and exit with its exit code."""
    if isinstance(exc, FileRejected):
        why = "" if exc.title == FileRejected.title else f" ({exc.title.lower()})"
        err.print(f"[bold red]The file was rejected[/]{why}; nothing was changed:", markup=True)
        for problem in exc.problems:
            where = f" (line {problem.line})" if problem.line else ""
            print_item(f"{problem.message}{_remedy(problem)}{where}")
    else:
        err.print(f"Error: {exc}", markup=False)
    raise typer.Exit(exc.exit_code)


def _remedy(problem: FileProblem) -> str:
    """How to settle a file problem from the command line: by the flag that does it."""
    if problem.hint_field is None or problem.hint_field == "entity_type":
        return ""  # the entity is the command's argument, which the message names
    if problem.hint_field == "mapping":
        column = problem.column or "NAME"
        if problem.code == "duplicate_column":
            return f" Or ignore one with --map '{column}='."
        if problem.suggestion:
            return f" Rename it, or map it with --map '{column}={problem.suggestion}'."
        return (
            f" Rename it, map it with --map '{column}=FIELD', or ignore it with "
            f"--map '{column}='."
        )
    flag = "--" + problem.hint_field.replace("_", "-")
    if problem.hint_value is not None:
        return f" Give it with {flag} {problem.hint_value}."
    return f" Give it with {flag}."


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn a BulkopsError raised in the block into its message and exit code."""
    try:
        yield
    except BulkopsError as exc:
        fail(exc)
