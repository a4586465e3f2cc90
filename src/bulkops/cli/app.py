"""The Typer apps: the root options, every command in the order ``--help`` lists them, main.

The commands live in :mod:`bulkops.cli.operations` (running operations),
:mod:`bulkops.cli.reports` (reading them), :mod:`bulkops.cli.doctor` (key twins) and
:mod:`bulkops.cli.admin` (set-up and services); they are registered here, in one place,
because Typer lists commands in the order they were registered.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from bulkops.cli import accounts, admin, checks, doctor, operations, reports
from bulkops.cli.state import State, fail
from bulkops.config import Settings
from bulkops.errors import BulkopsError
from bulkops.model import OperationType

__all__ = ["app", "main"]

app = typer.Typer(
    name="bulkops",
    help="Validated, audited, undoable bulk changes to a B2B catalogue from CSV or Excel files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
mapping_app = typer.Typer(help="Remembered mappings (per entity and header).", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(mapping_app, name="mapping")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version as package_version  # only --version waits

        typer.echo(f"bulkops {package_version('bulkops')}")
        raise typer.Exit()


@app.callback()
def _options(
    ctx: typer.Context,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="BULKOPS_DATABASE_URL",
            help="SQLAlchemy URL (default: SQLite file bulkops.db here).",
        ),
    ] = None,
    org: Annotated[
        str | None,
        typer.Option("--org", help="Organization slug (may be left out while there is one)."),
    ] = None,
    as_email: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="EMAIL",
            help="Record operations as started by this user of the organization "
            "(default: cli:<os-user>@<host>).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    ctx.obj = State(
        settings, org, needs_database=ctx.invoked_subcommand != "init", as_email=as_email
    )


for _operation in (OperationType.IMPORT, OperationType.UPDATE, OperationType.DELETE):
    app.command(_operation.value)(operations.data_command(_operation))
app.command()(admin.init)
app.command()(operations.export)
app.command()(operations.rollback)
app.command()(operations.cancel)
app.command()(operations.resume)
app.command()(checks.apply)
app.command()(reports.history)
app.command()(reports.show)
app.command()(reports.errors)
app.command()(checks.changes)
app.command()(reports.template)
app.command()(doctor.doctor)
app.command()(admin.serve)
app.command()(admin.worker)
org_app.command("create")(admin.org_create)
user_app.command("create")(admin.user_create)
user_app.command("list")(accounts.user_list)
user_app.command("passwd")(accounts.user_passwd)
token_app.command("create")(admin.token_create)
token_app.command("list")(accounts.token_list)
token_app.command("revoke")(accounts.token_revoke)
mapping_app.command("list")(checks.mapping_list)
mapping_app.command("forget")(checks.mapping_forget)


def _plain_flags(command: Any) -> Any:
    """Help that shows a flag as a flag: Typer prints ``<bool>`` after ``--json`` (as if it
    took a value) unless the flag's metavar is set empty. (Typer's commands are those of its
    own copy of Click, so they are looked at, not type-checked.)"""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _plain_flags(sub)
    return command


def main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    try:
        _plain_flags(typer.main.get_command(app))()
    except BulkopsError as exc:  # raised outside a command body
        fail(exc)
