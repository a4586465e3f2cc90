"""The ``bulkops`` command line (Typer + Rich)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bulkops import engine
from bulkops.config import Settings
from bulkops.errors import BulkopsError, FileRejected, UsageError
from bulkops.model import EntityType, OperationType, Role
from bulkops.store import Store

__all__ = ["app", "main"]

app = typer.Typer(
    name="bulkops",
    help="Validated, audited, undoable bulk changes to a B2B catalogue from CSV files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(org_app, name="org")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")

err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


@dataclass
class State:
    settings: Settings
    org_slug: str | None
    _store: Store | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database_url)
        return self._store

    @property
    def ctx(self) -> engine.Context:
        return engine.Context(self.store, self.settings)

    def org(self) -> dict[str, Any]:
        return engine.resolve_organization(self.store, self.org_slug)


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
    org: Annotated[str | None, typer.Option("--org", help="Organization slug.")] = None,
) -> None:
    settings = Settings() if database_url is None else Settings(database_url=database_url)
    ctx.obj = State(settings, org)


def _state(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    assert isinstance(state, State)
    return state


def _fail(exc: BulkopsError) -> NoReturn:
    if isinstance(exc, FileRejected):
        err.print(
            f"[bold red]The file was rejected[/] ({exc.title}); nothing was changed:", markup=True
        )
        for problem in exc.problems:
            where = f" (line {problem.line})" if problem.line else ""
            err.print(f"  - {problem.message}{where}", markup=False)
    else:
        err.print(f"Error: {exc}", markup=False)
    raise typer.Exit(exc.exit_code)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except BulkopsError as exc:
        _fail(exc)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


@contextlib.contextmanager
def _live_progress(enabled: bool, title: str) -> Iterator[engine.ProgressCallback | None]:
    """A Rich bar with rate and time remaining, on a terminal only."""
    if not enabled or not err.is_terminal:
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[counts]}"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(title, total=100.0, counts="", rate="")

        def update(event: dict[str, Any]) -> None:
            phase = event.get("phase", "")
            counts = (
                f"{event.get('processed_records', 0):,} rows"
                f" ✓{event.get('successful_records', event.get('rolled_back_records', 0)) or 0:,}"
                f" ✗{event.get('failed_records', event.get('conflict_records', 0)) or 0:,}"
            )
            rate = f"{event['rate']:,.0f}/s" if event.get("rate") else ""
            bar.update(
                task,
                completed=event.get("percentage") or 0.0,
                counts=counts,
                rate=rate,
                description=f"{title} ({phase})" if phase and phase != "done" else title,
            )

        yield update


def _exit_for(op: dict[str, Any]) -> int:
    return 0 if op["status"] == "completed" and not op["failed_records"] else 1


def _summary(op: dict[str, Any]) -> None:
    view = engine.operation_view(op)
    out.print(
        f"Operation {view['id']}: [bold]{view['status']}[/] — "
        f"{view['processed_records']:,} processed, {view['created_records']:,} created, "
        f"{view['updated_records']:,} updated, {view['unchanged_records']:,} unchanged, "
        f"{view['deleted_records']:,} deleted, {view['failed_records']:,} failed"
        + (f", {view['rolled_back_records']:,} rolled back" if view["rolled_back_records"] else "")
        + (f", {view['conflict_records']:,} conflicts" if view["conflict_records"] else "")
    )
    if view["results"].get("validate_only"):
        out.print("Validation only: nothing was changed; the counts say what would happen.")
    for error in view["results"].get("first_errors", [])[:5]:
        column = f" [{error['column']}]" if error.get("column") else ""
        out.print(
            f"  row {error['row']} (line {error['line']}){column}: {error['message']}", markup=False
        )
    if view["failed_records"]:
        out.print(f"Error report: bulkops errors {view['id']} -o errors.csv")


def _wait_message(op_id: str) -> Callable[[], bool]:
    import time

    shown = False

    def wait() -> bool:
        nonlocal shown
        if not shown:
            err.print(f"Queued: another operation on this entity is running; {op_id} waits.")
            shown = True
        time.sleep(0.5)
        return True

    return wait


def _run_data_operation(
    ctx: typer.Context,
    operation: OperationType,
    entity: EntityType,
    file: Path,
    *,
    validate_only: bool,
    rollback_on_error: bool,
    chunk_size: int | None,
    max_concurrent: int | None,
    max_errors: int | None,
    mapping: list[str],
    encoding: str | None,
    delimiter: str | None,
    as_json: bool,
) -> None:
    state = _state(ctx)
    with _errors():
        parsed_mapping: dict[str, str] = {}
        for item in mapping:
            if "=" not in item:
                raise UsageError(f"--map expects HEADER=FIELD, got '{item}'.")
            header, field = item.split("=", 1)
            parsed_mapping[header] = field
        config = engine.OperationConfig.parse(
            {
                "chunk_size": chunk_size,
                "max_concurrent": max_concurrent,
                "validate_only": validate_only,
                "rollback_on_error": rollback_on_error,
                "max_errors": max_errors,
                "mapping": parsed_mapping,
                "encoding": encoding,
                "delimiter": delimiter,
            }
        )
        if not file.is_file():
            raise UsageError(f"No such file: {file}")
        org = state.org()
        op = engine.create_operation(
            state.ctx,
            org["id"],
            operation_type=operation,
            entity_type=entity,
            config=config,
            source=file,
            file_name=file.name,
        )
        if not as_json:
            err.print(f"Operation {op['id']} queued ({operation.value} {entity.value}).")
        with _live_progress(not as_json, f"{operation.value} {entity.value}") as progress:
            final = engine.execute(
                state.ctx, org["id"], op["id"], on_progress=progress, wait=_wait_message(op["id"])
            )
    if as_json:
        _print_json(engine.operation_view(final))
    else:
        _summary(final)
    raise typer.Exit(_exit_for(final))


Entity = Annotated[
    EntityType,
    typer.Argument(
        help="warehouses, products, inventory, pricing or customers.", case_sensitive=False
    ),
]
FileArg = Annotated[Path, typer.Argument(help="CSV or TSV file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the operation as JSON only.")]


def _data_command(operation: OperationType) -> Callable[..., None]:
    def command(
        ctx: typer.Context,
        entity: Entity,
        file: FileArg,
        validate_only: Annotated[
            bool, typer.Option("--validate-only", help="Dry run: change nothing.")
        ] = False,
        rollback_on_error: Annotated[
            bool, typer.Option("--rollback-on-error", help="All or nothing.")
        ] = False,
        chunk_size: Annotated[int | None, typer.Option(help="Records per batch.")] = None,
        max_concurrent: Annotated[int | None, typer.Option(help="Batches in flight.")] = None,
        max_errors: Annotated[
            int | None, typer.Option(help="Stop after this many failed records.")
        ] = None,
        mapping: Annotated[
            list[str] | None, typer.Option("--map", help="HEADER=FIELD, or HEADER= to ignore.")
        ] = None,
        encoding: Annotated[str | None, typer.Option(help="e.g. windows-1252")] = None,
        delimiter: Annotated[str | None, typer.Option(help=", ; | or tab")] = None,
        as_json: JsonOpt = False,
    ) -> None:
        _run_data_operation(
            ctx,
            operation,
            entity,
            file,
            validate_only=validate_only,
            rollback_on_error=rollback_on_error,
            chunk_size=chunk_size,
            max_concurrent=max_concurrent,
            max_errors=max_errors,
            mapping=mapping or [],
            encoding=encoding,
            delimiter=delimiter,
            as_json=as_json,
        )

    command.__doc__ = {
        OperationType.IMPORT: "Create or update records by natural key (upsert).",
        OperationType.UPDATE: "Update existing records; only the columns in the file change.",
        OperationType.DELETE: "Delete records by natural key.",
    }[operation]
    return command


for _operation in (OperationType.IMPORT, OperationType.UPDATE, OperationType.DELETE):
    app.command(_operation.value)(_data_command(_operation))


@app.command()
def init(
    ctx: typer.Context,
    demo: Annotated[bool, typer.Option("--demo", help="Add sample data.")] = False,
    admin_email: Annotated[str, typer.Option(help="Email of the first admin user.")] = (
        "admin@example.com"
    ),
    admin_url: Annotated[
        str | None,
        typer.Option(
            envvar="BULKOPS_DATABASE_ADMIN_URL",
            help="PostgreSQL: a superuser URL; first create the owner and application roles "
            "(users and passwords of BULKOPS_DATABASE_OWNER_URL and BULKOPS_DATABASE_URL) "
            "and the database.",
        ),
    ] = None,
) -> None:
    """Create or upgrade the schema; the first run creates an organization and an admin."""
    state = _state(ctx)
    with _errors():
        if admin_url:
            for line in Store.setup_roles(
                admin_url, state.settings.database_url, state.settings.database_owner_url
            ):
                err.print(f"PostgreSQL: {line}.")
        state.store.migrate(owner_url=state.settings.database_owner_url)
        err.print(f"Schema is up to date ({_redact(state.settings.database_url)}).")
        if not state.store.accounts.list_organizations():
            slug = state.org_slug or "default"
            org_id = engine.create_organization(state.store, slug, slug.title())
            password = engine.generate_password()
            engine.create_user(state.store, org_id, admin_email, Role.ADMIN, password)
            out.print(f"Created organization '{slug}' and admin user {admin_email}.")
            out.print(f"Admin password (shown once, store it now): [bold]{password}[/]")
        if demo:
            _demo(state)


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _demo(state: State) -> None:
    org = state.org()
    rows = 20_000
    with tempfile.TemporaryDirectory() as folder:
        files = {
            EntityType.WAREHOUSES: "code,name\n"
            + "".join(f"WH-{i:02d},Warehouse {i}\n" for i in range(1, 6)),
            EntityType.PRODUCTS: "sku,name,description,category,price\n"
            + "".join(
                f'DEMO-{i:06d},"Demo product {i}","Sample, with a comma",'
                f"{('Tools', 'Garden', 'Office')[i % 3]},{(i % 900) + 1}.{i % 100:02d}\n"
                for i in range(rows)
            ),
            EntityType.INVENTORY: "sku,warehouse_code,quantity,reason,notes\n"
            + "".join(
                f"DEMO-{i:06d},WH-{(i % 5) + 1:02d},{i % 250},initial count,\n"
                for i in range(0, rows, 4)
            ),
            EntityType.CUSTOMERS: "email,name,company,price_tier\n"
            + "".join(
                f"buyer{i}@example.com,Buyer {i},Company {i % 40},standard\n" for i in range(500)
            ),
        }
        for entity, content in files.items():
            path = Path(folder) / f"demo-{entity.value}.csv"
            path.write_text(content, encoding="utf-8")
            op = engine.create_operation(
                state.ctx,
                org["id"],
                operation_type=OperationType.IMPORT,
                entity_type=entity,
                config=engine.OperationConfig(),
                source=path,
                file_name=path.name,
            )
            with _live_progress(True, f"demo import {entity.value}") as progress:
                final = engine.execute(state.ctx, org["id"], op["id"], on_progress=progress)
            _summary(final)


@app.command()
def export(
    ctx: typer.Context,
    entity: Entity,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default: stdout).")
    ] = None,
    where: Annotated[list[str] | None, typer.Option("--where", help="COLUMN=VALUE filter.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write every row of an entity as CSV in template column order."""
    state = _state(ctx)
    with _errors():
        filters = dict(item.split("=", 1) for item in (where or []) if "=" in item)
        org = state.org()
        op = engine.create_operation(
            state.ctx,
            org["id"],
            operation_type=OperationType.EXPORT,
            entity_type=entity,
            config=engine.OperationConfig(filters=filters),
        )
        with _live_progress(not as_json and output is not None, f"export {entity.value}") as p:
            final = engine.execute(state.ctx, org["id"], op["id"], on_progress=p)
        source = engine.export_path(state.ctx, org["id"], op["id"])
        if output is not None:
            shutil.copyfile(source, output)  # streamed, not read whole into memory
        elif not as_json:
            with source.open("rb") as handle:
                while block := handle.read(1 << 20):
                    sys.stdout.buffer.write(block)
    if as_json:
        _print_json(engine.operation_view(final))
    elif output is not None:
        err.print(f"Exported {final['processed_records']:,} {entity.value} rows to {output}.")
    raise typer.Exit(_exit_for(final))


OpId = Annotated[str, typer.Argument(help="Operation id.")]


@app.command()
def rollback(
    ctx: typer.Context,
    operation_id: OpId,
    force: Annotated[bool, typer.Option("--force", help="Overwrite rows changed since.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo an operation exactly; rows changed since are reported as conflicts."""
    state = _state(ctx)
    with _errors():
        org = state.org()
        with _live_progress(not as_json, "rollback") as progress:
            final = engine.rollback_operation(
                state.ctx, org["id"], operation_id, user_id=None, force=force, on_progress=progress
            )
    if as_json:
        _print_json(engine.operation_view(final))
    else:
        _summary(final)
        if final["conflict_records"]:
            out.print(f"Conflicts: bulkops errors {operation_id} --conflicts -o conflicts.csv")
    raise typer.Exit(0 if not final["conflict_records"] else 1)


@app.command()
def cancel(
    ctx: typer.Context,
    operation_id: OpId,
    with_rollback: Annotated[
        bool, typer.Option("--rollback", help="Undo what was applied.")
    ] = False,
) -> None:
    """Stop an operation within one chunk (from any process)."""
    state = _state(ctx)
    with _errors():
        org = state.org()
        op = engine.request_cancel(
            state.ctx, org["id"], operation_id, user_id=None, rollback=with_rollback
        )
    out.print(
        f"Operation {operation_id}: "
        + (
            "cancelled."
            if op["status"] == "cancelled"
            else "cancel requested; it stops "
            "within one chunk" + (" and is then rolled back." if with_rollback else ".")
        )
    )


@app.command()
def resume(
    ctx: typer.Context,
    operation_id: Annotated[str | None, typer.Argument(help="Operation id.")] = None,
    orphaned: Annotated[
        bool, typer.Option("--orphaned", help="Every operation whose process died.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue an operation or rollback whose process died, from its last committed chunk."""
    state = _state(ctx)
    with _errors():
        if (operation_id is None) == (not orphaned):
            raise UsageError("Give an OPERATION_ID or --orphaned (not both).")
        org = state.org()
        with _live_progress(not as_json, "resume") as progress:
            if operation_id is not None:
                finals = [engine.resume(state.ctx, org["id"], operation_id, on_progress=progress)]
            else:
                finals = engine.resume_orphaned(state.ctx, org["id"], on_progress=progress)
    if as_json:
        views = [engine.operation_view(f) for f in finals]
        _print_json(views[0] if operation_id is not None else views)
    else:
        if not finals:
            out.print("No orphaned operation: nothing to resume.")
        for final in finals:
            _summary(final)
    raise typer.Exit(max((_exit_for(f) for f in finals), default=0))


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"'{value}' is not a date; use YYYY-MM-DD or an ISO time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@app.command()
def history(
    ctx: typer.Context,
    status: Annotated[list[str] | None, typer.Option(help="Status filter.")] = None,
    type_: Annotated[list[str] | None, typer.Option("--type", help="Operation type.")] = None,
    entity: Annotated[list[str] | None, typer.Option(help="Entity type.")] = None,
    since: Annotated[str | None, typer.Option(help="Created at or after (date).")] = None,
    until: Annotated[str | None, typer.Option(help="Created before (date).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Operations, newest first."""
    state = _state(ctx)
    with _errors():
        org = state.org()
        with state.store.transaction(org["id"]) as tx:
            rows = tx.operations.list(
                status=status or (),
                operation_type=type_ or (),
                entity_type=entity or (),
                created_after=_parse_date(since),
                created_before=_parse_date(until),
                limit=limit,
            )
    views = [engine.operation_view(r) for r in rows]
    if as_json:
        _print_json(views)
        return
    table = Table(
        "created",
        "operation",
        "status",
        "file",
        "processed",
        "created",
        "updated",
        "unchanged",
        "deleted",
        "failed",
    )
    table.add_column("id", no_wrap=True, min_width=36)
    for v in views:
        table.add_row(
            (v["created_at"] or "")[:19].replace("T", " "),
            f"{v['operation_type']} {v['entity_type']}",
            v["status"],
            v["file_name"] or "",
            f"{v['processed_records']:,}",
            f"{v['created_records']:,}",
            f"{v['updated_records']:,}",
            f"{v['unchanged_records']:,}",
            f"{v['deleted_records']:,}",
            f"{v['failed_records']:,}",
            v["id"],
        )
    out.print(table)


@app.command()
def show(ctx: typer.Context, operation_id: OpId, as_json: JsonOpt = False) -> None:
    """One operation with its counters, configuration and first errors."""
    state = _state(ctx)
    with _errors():
        org = state.org()
        op = engine.get_operation(state.ctx, org["id"], operation_id)
    if as_json:
        _print_json(engine.operation_view(op))
    else:
        view = engine.operation_view(op)
        for key in (
            "id",
            "operation_type",
            "entity_type",
            "status",
            "file_name",
            "file_size_bytes",
            "file_sha256",
            "percentage",
            "created_at",
            "started_at",
            "completed_at",
            "cancelled_at",
        ):
            out.print(f"{key:>20}: {view[key]}", markup=False)
        out.print(f"{'config':>20}: {json.dumps(view['config'])}", markup=False)
        _summary(op)


@app.command()
def errors(
    ctx: typer.Context,
    operation_id: OpId,
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
    conflicts: Annotated[
        bool, typer.Option("--conflicts", help="The rollback's conflicts instead.")
    ] = False,
) -> None:
    """The error report CSV (fix it and upload it as it is), or the conflict report."""
    state = _state(ctx)
    with _errors():
        org = state.org()
        op = engine.get_operation(state.ctx, org["id"], operation_id)
        write = engine.write_conflict_report if conflicts else engine.write_error_report
        if output is None:
            count = write(state.ctx, org["id"], op, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as stream:
                count = write(state.ctx, org["id"], op, stream)
            err.print(f"Wrote {count:,} {'conflicts' if conflicts else 'failed rows'} to {output}.")


@app.command()
def template(
    entity: Entity,
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
) -> None:
    """The CSV header of an entity with one example row."""
    if output is None:
        engine.write_template(entity.value, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as stream:
            engine.write_template(entity.value, stream)


@org_app.command("create")
def org_create(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument()],
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create an organization."""
    state = _state(ctx)
    with _errors():
        org_id = engine.create_organization(state.store, slug, name)
    out.print(f"Created organization '{slug}' (id {org_id}).")


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument()],
    org: Annotated[str, typer.Option("--org", help="Organization slug.")],
    role: Annotated[Role, typer.Option(case_sensitive=False)] = Role.EDITOR,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user; without --password-stdin a password is generated and shown once."""
    state = _state(ctx)
    with _errors():
        organization = engine.resolve_organization(state.store, org)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            generated = False
        else:
            password = engine.generate_password()
            generated = True
        engine.create_user(state.store, organization["id"], email, role, password)
    out.print(f"Created {role.value} {email.strip().lower()} in '{org}'.")
    if generated:
        out.print(f"Password (shown once): [bold]{password}[/]")


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="The user's email.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
) -> None:
    """Create an API token for a user; it is printed once and stored hashed."""
    state = _state(ctx)
    with _errors():
        found = state.store.accounts.find_user(email=user.strip().lower())
        if found is None:
            raise UsageError(f"No user {user}.")
        token = engine.create_token(state.store, found["organization_id"], found["id"], name)
    sys.stdout.write(token + "\n")
    err.print("Store this token now; it cannot be shown again.")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    embedded_worker: Annotated[
        bool,
        typer.Option(
            "--embedded-worker/--no-embedded-worker",
            help="Run queued operations in a worker process beside the server "
            "(never with BULKOPS_BROKER_URL set: `bulkops worker` runs them).",
        ),
    ] = True,
) -> None:
    """Web API (+ embedded worker process): http://HOST:PORT/docs, JSON logs on stderr."""
    from bulkops.asgi import serve as serve_http

    state = _state(ctx)
    with _errors():
        if state.settings.is_sqlite:
            state.store.migrate()  # the embedded default needs no set-up beyond this
        state.store.dispose()
        serve_http(state.settings, host=host, port=port, embedded_worker=embedded_worker)


@app.command()
def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option(help="Operations run at once; default BULKOPS_WORKER_CONCURRENCY."),
    ] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads or solo.")] = "prefork",
    dispatch: Annotated[
        bool,
        typer.Option(
            "--dispatch/--no-dispatch",
            help="Also look for runnable operations in the database and enqueue them.",
        ),
    ] = True,
) -> None:
    """Celery worker on BULKOPS_BROKER_URL (scaling out: run one per machine), JSON logs."""
    state = _state(ctx)
    with _errors():
        if not state.settings.broker_url:
            raise UsageError(
                "No broker: set BULKOPS_BROKER_URL, e.g. redis://127.0.0.1:6379/0 or "
                "amqp://guest:guest@127.0.0.1:5672//"
            )
        from bulkops.workers.celery_app import run_worker

        run_worker(state.settings, concurrency=concurrency, pool=pool, dispatch=dispatch)


def main() -> None:
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    try:
        app()
    except BulkopsError as exc:  # raised outside a command body
        _fail(exc)
