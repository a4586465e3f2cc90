"""Commands that read: history, show, errors (and conflicts) and template."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from bulkops import engine
from bulkops.cli.arguments import Entity, JsonOpt, OpId
from bulkops.cli.output import err, out, print_json, print_summary
from bulkops.cli.state import reported_errors, state_of
from bulkops.errors import UsageError

__all__ = ["errors", "history", "show", "template"]


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"'{value}' is not a date; use YYYY-MM-DD or an ISO time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        rows = engine.list_operations(
            state.ctx,
            org["id"],
            status=status or (),
            operation_type=type_ or (),
            entity_type=entity or (),
            created_after=_parse_date(since),
            created_before=_parse_date(until),
            limit=limit,
        )
    views = [engine.operation_view(r) for r in rows]
    if as_json:
        print_json(views)
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


def show(ctx: typer.Context, operation_id: OpId, as_json: JsonOpt = False) -> None:
    """One operation with its counters, configuration and first errors."""
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        op = engine.get_operation(state.ctx, org["id"], operation_id)
    if as_json:
        print_json(engine.operation_view(op))
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
        print_summary(op)


def errors(
    ctx: typer.Context,
    operation_id: OpId,
    output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
    conflicts: Annotated[
        bool, typer.Option("--conflicts", help="The rollback's conflicts instead.")
    ] = False,
) -> None:
    """The error report CSV (fix it and upload it as it is), or the conflict report."""
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        op = engine.get_operation(state.ctx, org["id"], operation_id)
        write = engine.write_conflict_report if conflicts else engine.write_error_report
        if output is None:
            count = write(state.ctx, org["id"], op, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as stream:
                count = write(state.ctx, org["id"], op, stream)
            err.print(f"Wrote {count:,} {'conflicts' if conflicts else 'failed rows'} to {output}.")


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
