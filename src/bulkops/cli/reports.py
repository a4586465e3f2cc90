"""Commands that read: history, show, errors (and conflicts) and template."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from bulkops import engine
from bulkops.cli.arguments import (
    Entity,
    FileFormat,
    FormatOpt,
    JsonOpt,
    OpId,
    binary_stdout_allowed,
    chosen_format,
    dash_is_stdout,
)
from bulkops.cli.output import counted, err, out, print_fields, print_json, print_summary
from bulkops.cli.state import reported_errors, state_of
from bulkops.entities import closest
from bulkops.errors import UsageError
from bulkops.model import EntityType, OperationStatus, OperationType, Outcome

__all__ = ["errors", "history", "show", "template"]


def _parse_date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"'{value}' is not a date; use YYYY-MM-DD or an ISO time.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _checked(values: list[str] | None, allowed: type[StrEnum], option: str) -> list[str]:
    """The filter values, each one of ``allowed``; otherwise a UsageError (exit 2) that lists
    the valid values and suggests the closest."""
    valid = [member.value for member in allowed]
    for value in values or []:
        if value not in valid:
            close = closest(value, valid)
            hint = f" Did you mean '{close}'?" if close else ""
            raise UsageError(
                f"'{value}' is not a valid {option} value.{hint} Valid: {', '.join(valid)}."
            )
    return values or []


_COUNT_WORDS = (
    ("created", "new"),
    ("updated", "upd"),
    ("deleted", "del"),
    ("unchanged", "same"),
    ("rolled_back", "undone"),
    ("failed", "failed"),
)


def _counts(view: dict[str, Any]) -> str:
    """A compact count summary for a narrow column: '1,204 upd · 6 failed', '12 rows' (an
    export's rows written)."""
    if view["operation_type"] == OperationType.EXPORT.value:
        return counted(view["processed_records"], "row")
    parts = [
        f"{view[f'{name}_records']:,} {word}"
        for name, word in _COUNT_WORDS
        if view[f"{name}_records"]
    ]
    return " · ".join(parts) or "—"


def _json_parts(value: Any) -> list[str]:
    """``value`` as JSON in parts that wrap between the items of its objects, nested ones
    too (a long mapping wraps between its columns): ``{"a": 1,``, ``"b": {"c": 2}}``."""
    if not isinstance(value, dict) or not value:
        return [json.dumps(value)]
    parts: list[str] = []
    for key, item in value.items():
        inner = _json_parts(item)
        inner[0] = f"{json.dumps(key)}: {inner[0]}"
        inner[-1] += ","
        parts += inner
    parts[0] = "{" + parts[0]
    parts[-1] = parts[-1][:-1] + "}"
    return parts


def _when(created_at: str | None) -> str:
    """Local time today, the day otherwise (the exact time is in --json and the TSV)."""
    if not created_at:
        return ""
    when = datetime.fromisoformat(created_at).astimezone()
    if when.date() == datetime.now().astimezone().date():
        return when.strftime("%H:%M")
    return when.strftime("%b %d") if when.year == datetime.now().year else f"{when:%Y-%m}"


def history(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option(help=f"Status filter, repeatable: {', '.join(OperationStatus)}."),
    ] = None,
    type_: Annotated[
        list[str] | None,
        typer.Option("--type", help=f"Operation type: {', '.join(OperationType)}."),
    ] = None,
    entity: Annotated[
        list[str] | None, typer.Option(help=f"Entity: {', '.join(EntityType)}.")
    ] = None,
    outcome: Annotated[
        list[str] | None,
        typer.Option(help=f"How it went, repeatable: {', '.join(Outcome)}."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after this date (YYYY-MM-DD).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Created before this date.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many, newest first.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Operations, newest first: a table on a terminal, tab-separated values through a pipe.

    Example: bulkops history --outcome completed_with_errors --type import --since 2024-06-01
    """
    state = state_of(ctx)
    with reported_errors():
        statuses = _checked(status, OperationStatus, "--status")
        types = _checked(type_, OperationType, "--type")
        entities = _checked(entity, EntityType, "--entity")
        outcomes = [Outcome(o) for o in _checked(outcome, Outcome, "--outcome")]
        org = state.org()
        rows = engine.list_operations(
            state.ctx,
            org["id"],
            status=statuses,
            operation_type=types,
            entity_type=entities,
            outcome=outcomes,
            created_after=_parse_date(since),
            created_before=_parse_date(until),
            limit=limit,
        )
    views = [engine.operation_view(r) for r in rows]
    if as_json:
        print_json(views)
    elif not out.is_terminal:
        _print_tsv(views)
    else:
        _print_table(views)


_TSV_COLUMNS = (
    "id", "created_at", "operation_type", "entity_type", "status", "outcome", "file_name",
    "total_records", "processed_records", "created_records", "updated_records",
    "unchanged_records", "deleted_records", "failed_records", "actor",
)


def _print_tsv(views: list[dict[str, Any]]) -> None:
    """One line per operation with the whole id, for scripts (tabs and line breaks in a
    file name become spaces, so that every line is one record)."""
    lines = ["\t".join(_TSV_COLUMNS)]
    for view in views:
        cells = ("" if view[c] is None else str(view[c]) for c in _TSV_COLUMNS)
        lines.append("\t".join(" ".join(cell.split()) for cell in cells))
    sys.stdout.write("\n".join(lines) + "\n")


def _print_table(views: list[dict[str, Any]]) -> None:
    """One line per operation that fits the terminal (80 columns and up): the file name
    and the counts share what the other columns leave; where both do not fit, the counts
    keep at least 22 characters and the file name is cut first, each with an ellipsis."""
    rows = [
        (
            v["id"][:8],
            _OUTCOME_WORDS.get(v["outcome"] or "", v["status"].replace("_", " ")),
            f"{v['operation_type']} {v['entity_type']}",
            Text(v["file_name"] or "—"),
            _counts(v),
            _when(v["created_at"]),
        )
        for v in views
    ]
    headers = ("id", "outcome", "operation", "file", "counts", "when")
    widths = [max([len(headers[i])] + [len(str(r[i])) for r in rows]) for i in range(6)]
    shared = out.width - sum(w for i, w in enumerate(widths) if i not in (3, 4)) - len(headers) + 1
    widths[4] = min(widths[4], max(22, shared - widths[3]))
    widths[3] = max(shared - widths[4], 6)
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    for i, name in enumerate(headers):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=widths[i])
    for row in rows:
        table.add_row(*row)
    out.print(table, soft_wrap=False)


_OUTCOME_WORDS = {
    "succeeded": "succeeded",
    "completed_with_errors": "with errors",
    "checked": "checked",
    "failed": "failed",
    "cancelled": "cancelled",
    "rolled_back": "rolled back",
}


def show(ctx: typer.Context, operation_id: OpId, as_json: JsonOpt = False) -> None:
    """One operation with its counters, configuration and first errors.

    Example: bulkops show 1f2e3d4c --json
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        op = engine.get_operation(state.ctx, org["id"], state.operation_id(org["id"], operation_id))
    if as_json:
        print_json(engine.operation_view(op))
    else:
        view = engine.operation_view(op)
        fields: list[tuple[str, str | list[str]]] = [
            (key, "-" if view[key] is None else str(view[key]))
            for key in (
                "id",
                "operation_type",
                "entity_type",
                "status",
                "outcome",
                "actor",
                "file_name",
                "file_size_bytes",
                "file_sha256",
                "percentage",
                "created_at",
                "started_at",
                "completed_at",
                "cancelled_at",
            )
        ]
        fields.append(("config", _json_parts(view["config"])))
        print_fields(fields)
        print_summary(op)


def errors(
    ctx: typer.Context,
    operation_id: OpId,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", callback=dash_is_stdout)
    ] = None,
    conflicts: Annotated[
        bool, typer.Option("--conflicts", help="The rollback's conflicts instead.")
    ] = False,
    file_format: FormatOpt = None,
) -> None:
    """The error report CSV or XLSX (fix it and upload it as it is), or the conflict report.

    Example: bulkops errors 3f2a9c1e -o errors.xlsx
    """
    state = state_of(ctx)
    with reported_errors():
        chosen = chosen_format(file_format, output)
        org = state.org()
        op = engine.get_operation(state.ctx, org["id"], state.operation_id(org["id"], operation_id))
        if chosen is FileFormat.XLSX and not conflicts:
            if output is None:
                binary_stdout_allowed(chosen)
                count = engine.write_error_report_xlsx(state.ctx, org["id"], op, sys.stdout.buffer)
            else:
                count = engine.write_error_report_xlsx(state.ctx, org["id"], op, output)
                err.print(f"Wrote {counted(count, 'failed row')} to {output}.")
            return
        write = engine.write_conflict_report if conflicts else engine.write_error_report
        if output is None:
            count = write(state.ctx, org["id"], op, sys.stdout)
            if out.is_terminal and not conflicts:
                # On a screen the report is for reading; it is meant to be fixed in a file.
                sys.stdout.flush()
                err.print(
                    f"{counted(count, 'failed row')}. To fix them in a spreadsheet: "
                    f"bulkops errors {op.id[:8]} -o errors.xlsx (or errors.csv), then import "
                    "that file as it is.",
                    highlight=False,
                )
        else:
            with output.open("w", encoding="utf-8", newline="") as stream:
                count = write(state.ctx, org["id"], op, stream)
            noun = "conflict" if conflicts else "failed row"
            err.print(f"Wrote {counted(count, noun)} to {output}.")


def template(
    entity: Entity,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", callback=dash_is_stdout)
    ] = None,
    file_format: FormatOpt = None,
) -> None:
    """An entity's header and one example row: CSV, or XLSX with notes and data validation.

    Example: bulkops template products -o products.xlsx
    """
    chosen = chosen_format(file_format, output)
    if chosen is FileFormat.XLSX:
        with reported_errors():
            if output is None:
                binary_stdout_allowed(chosen)
            engine.write_template_xlsx(entity.value, output or sys.stdout.buffer)
        return
    if output is None:
        engine.write_template(entity.value, sys.stdout)
    else:
        with output.open("w", encoding="utf-8", newline="") as stream:
            engine.write_template(entity.value, stream)
