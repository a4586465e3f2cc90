"""Commands that set up and serve: init, org, user, token, serve and worker."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from bulkops import engine
from bulkops.cli.output import err, live_progress, out, print_summary
from bulkops.cli.state import State, reported_errors, state_of
from bulkops.errors import BulkopsError, UsageError
from bulkops.model import EntityType, OperationType, Role

__all__ = ["init", "org_create", "serve", "token_create", "user_create", "worker"]


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
    """Create or upgrade the schema; the first run creates an organization and an admin.

    Example: bulkops init --demo
    """
    state = state_of(ctx)
    with reported_errors():
        if admin_url:
            for line in engine.setup_database_roles(admin_url, state.settings):
                err.print(f"PostgreSQL: {line}.")
        done = engine.migrate_schema(state.ctx)
        err.print(f"{done} ({_redact(state.settings.database_url)}).")
        if not engine.list_organizations(state.ctx):
            slug = state.org_slug or "default"
            org_id = engine.create_organization(state.ctx.store, slug, slug.title())
            password = engine.generate_password()
            engine.create_user(state.ctx.store, org_id, admin_email, Role.ADMIN, password)
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
            starter = state.starter(org["id"])
            op = engine.create_operation(
                state.ctx,
                org["id"],
                created_by=starter.user_id,
                actor=starter.actor,
                operation_type=OperationType.IMPORT,
                entity_type=entity,
                config=engine.OperationConfig(),
                source=path,
                file_name=path.name,
            )
            with live_progress(True, f"demo import {entity.value}") as progress:
                final = engine.execute(state.ctx, org["id"], op.id, on_progress=progress)
            print_summary(final)


def org_create(
    ctx: typer.Context,
    slug: Annotated[str, typer.Argument()],
    name: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create an organization.

    Example: bulkops org create acme --name "Acme Supplies"
    """
    state = state_of(ctx)
    with reported_errors():
        org_id = engine.create_organization(state.ctx.store, slug, name)
    out.print(f"Created organization '{slug}' (id {org_id}).")


def user_create(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument()],
    org: Annotated[str, typer.Option("--org", help="Organization slug.")],
    role: Annotated[Role, typer.Option(case_sensitive=False)] = Role.EDITOR,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Create a user; without --password-stdin a password is generated and shown once.

    Example: bulkops user create ana@example.com --org acme --role editor
    """
    state = state_of(ctx)
    with reported_errors():
        organization = engine.resolve_organization(state.ctx.store, org)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            generated = False
        else:
            password = engine.generate_password()
            generated = True
        engine.create_user(state.ctx.store, organization["id"], email, role, password)
    out.print(f"Created {role.value} {email.strip().lower()} in '{org}'.")
    if generated:
        out.print(f"Password (shown once): [bold]{password}[/]")


def token_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", help="The user's email.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
) -> None:
    """Create an API token for a user; it is printed once and stored hashed.

    Example: bulkops token create --user ana@example.com --name "nightly sync"
    """
    state = state_of(ctx)
    with reported_errors():
        found = engine.find_user_by_email(state.ctx, user)
        if found is None:
            raise UsageError(f"No user {user}.")
        token = engine.create_token(state.ctx.store, found["organization_id"], found["id"], name)
    sys.stdout.write(token + "\n")
    err.print("Store this token now; it cannot be shown again.")


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
    """Web API (+ embedded worker process): http://HOST:PORT/docs, JSON logs on stderr.

    Example: bulkops serve --host 0.0.0.0 --port 8080
    """
    from bulkops.asgi import serve as serve_http

    state = state_of(ctx)
    with reported_errors():
        if state.settings.is_sqlite:
            engine.migrate_schema(state.ctx)  # the embedded default needs no set-up beyond this
        admin = _an_admin(state) if sys.stdout.isatty() else None
        engine.close_context(state.ctx)
        if sys.stdout.isatty():
            out.print(_where_to_go(host, port, admin), markup=False)
        serve_http(state.settings, host=host, port=port, embedded_worker=embedded_worker)


def _an_admin(state: State) -> str | None:
    """The e-mail of the organization's first admin (the one ``init`` made), if there is
    one organization or ``--org`` names it."""
    try:
        org = state.org()
        users = engine.organization_users(state.ctx, org["id"])
    except BulkopsError:
        return None
    admins = [u["email"] for u in users if u["role"] == Role.ADMIN.value and not u["disabled_at"]]
    return admins[0] if admins else None


def _where_to_go(host: str, port: int, admin: str | None = None) -> str:
    """What a person who just typed ``bulkops serve`` needs before the log lines start."""
    local = host in ("0.0.0.0", "::", "")  # noqa: S104 - recognising it, not binding
    shown = "127.0.0.1" if local else (f"[{host}]" if ":" in host else host)
    url = f"http://{shown}:{port}"
    also = "  (listening on every interface)" if local else ""
    return (
        f"bulkops is running: open {url}{also}\n"
        + (
            f"  Log in as {admin} with the password `bulkops init` printed\n"
            f"  (a new one: `bulkops user passwd {admin}`;\n"
            "  the other users: `bulkops user list`).\n"
            if admin
            else "  Log in with your email and password (`bulkops user list` shows the\n"
            "  users; `bulkops user passwd EMAIL` prints a new password).\n"
        )
        + f"  API: {url}/api/v1, documented at {url}/docs\n"
        f"  (a token: `bulkops token create --user {admin or 'EMAIL'}`)\n"
        "  Stop with Ctrl-C. Log lines (JSON) follow on standard error."
    )


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
    """Celery worker on BULKOPS_BROKER_URL (scaling out: run one per machine), JSON logs.

    Example: BULKOPS_BROKER_URL=redis://127.0.0.1:6379/0 bulkops worker --concurrency 2
    """
    state = state_of(ctx)
    with reported_errors():
        if not state.settings.broker_url:
            raise UsageError(
                "No broker: set BULKOPS_BROKER_URL, e.g. redis://127.0.0.1:6379/0 or "
                "amqp://guest:guest@127.0.0.1:5672//"
            )
        from bulkops.workers.service import run_worker

        run_worker(state.settings, concurrency=concurrency, pool=pool, dispatch=dispatch)
