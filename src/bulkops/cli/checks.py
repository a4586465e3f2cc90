"""Check, then apply: a check's planned changes, applying a check, remembered mappings."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from rich.text import Text

from bulkops import engine
from bulkops.cli.arguments import JsonOpt, OpId, dash_is_stdout
from bulkops.cli.output import (
    counted,
    err,
    exit_code_for,
    live_progress,
    out,
    print_json,
    print_summary,
    wait_message,
)
from bulkops.cli.state import State, reported_errors, state_of
from bulkops.errors import UsageError
from bulkops.model import Operation

__all__ = [
    "apply",
    "changes",
    "mapping_forget",
    "mapping_list",
    "print_changes",
    "run_apply",
]


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _key_text(key: dict[str, Any]) -> str:
    return " / ".join(_cell(v) for v in key.values())


def _lines(items: Iterable[dict[str, Any]]) -> Iterable[tuple[str, str, str, str, str, str]]:
    """One line per changed field: (row, action, key, field, current, new); a delete has one
    line with the last three empty."""
    for item in items:
        lead = (str(item["row"]), item["action"], _key_text(item["key"]))
        if not item["changes"]:
            yield (*lead, "", "", "")
        for change in item["changes"]:
            yield (*lead, change["field"], _cell(change["current"]), _cell(change["new"]))


def print_changes(items: Iterable[dict[str, Any]], *, terminal: bool) -> None:
    """Planned changes: a table that fits 80 columns on a terminal (the values take what is
    left and are cut with an ellipsis), tab-separated values with a header line otherwise."""
    if not terminal:
        sys.stdout.write("row\taction\tkey\tfield\tcurrent\tnew\n")
        for line in _lines(items):
            sys.stdout.write("\t".join(" ".join(c.split()) for c in line) + "\n")
        return
    table = Table(box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold")
    value_width = max((out.width - 6 - 7 - 18 - 14 - 5) // 2, 8)
    for name, width in (
        ("row", 6), ("action", 6), ("key", 18), ("field", 14),
        ("current", value_width), ("new", value_width),
    ):
        table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=width)
    previous: tuple[str, str, str] | None = None
    for line in _lines(items):
        lead = line[:3]
        shown = ("", "", "") if lead == previous else lead
        previous = lead
        table.add_row(*(Text(c) for c in (*shown, *line[3:])))
    out.print(table, soft_wrap=False)


def changes(
    ctx: typer.Context,
    operation_id: OpId,
    action: Annotated[
        str | None,
        typer.Option(help="Only create, update or delete (default: every action)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", callback=dash_is_stdout,
            help="Write CSV to this file (default: print them).",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Print at most this many (default: all).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as a JSON array.")] = False,
) -> None:
    """The planned changes of a check (an operation run with --check or --validate-only).

    A table on a terminal, tab-separated values through a pipe; -o writes CSV: _row,
    _action, the key columns, then field, current, new (one line per changed field).

    Example: bulkops changes 8c10a2f4 --action update -o changes.csv
    """
    state = state_of(ctx)
    with reported_errors():
        if action is not None and action not in engine.ACTIONS:
            raise UsageError(
                f"'{action}' is not a valid --action value. Valid: {', '.join(engine.ACTIONS)}."
            )
        org = state.org()
        op_id = state.operation_id(org["id"], operation_id)
        op = engine.get_operation(state.ctx, org["id"], op_id)
        if output is not None:
            with output.open("w", encoding="utf-8", newline="") as stream:
                count = engine.write_planned_changes(
                    state.ctx, org["id"], op, stream, action=action
                )
            err.print(f"Wrote {counted(count, 'planned change')} to {output}.")
            return
        items = engine.iter_planned_changes(state.ctx, org["id"], op_id, action=action)
        if limit is not None:
            items = (item for _, item in zip(range(limit), items, strict=False))
        if as_json:
            sys.stdout.write("[")
            for index, item in enumerate(items):
                sys.stdout.write(("," if index else "") + orjson.dumps(item).decode())
            sys.stdout.write("]\n")
            return
        print_changes(items, terminal=out.is_terminal)


def run_apply(state: State, org_id: int, check_id: str, *, as_json: bool) -> Operation:
    """Apply a check and run the new operation here, with a progress bar; returns it."""
    op = engine.apply_check(state.ctx, org_id, check_id)
    if not as_json:
        err.print(f"Operation {op.id} applies check {check_id[:8]}.")
    with live_progress(not as_json, f"apply {check_id[:8]}") as progress:
        final = engine.execute(
            state.ctx, org_id, op.id, on_progress=progress,
            wait=wait_message(state.ctx, org_id, op.id),
        )
    if as_json:
        print_json(engine.operation_view(final))
    else:
        print_summary(final)
        differs = final.results.get("differs_from_check")
        if differs:
            out.print(
                f"{differs:,} records ended otherwise than the check planned: the data "
                "changed since the check."
            )
    return final


def apply(ctx: typer.Context, operation_id: OpId, as_json: JsonOpt = False) -> None:
    """Apply a check: run the checked file for real, without giving it again.

    The check must have completed, and is applied once. Records changed since the check are
    decided again; the summary says how many ended otherwise than planned.

    Example: bulkops apply 8c10a2f4
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        check_id = state.operation_id(org["id"], operation_id)
        final = run_apply(state, org["id"], check_id, as_json=as_json)
    raise typer.Exit(exit_code_for(final))


def mapping_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
) -> None:
    """Remembered mappings: the last mapping used per entity and header.

    A completed operation with --map remembers its mapping; the next file with the same
    header gets it (unless --no-saved-mapping).

    Example: bulkops mapping list
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        rows: list[dict[str, Any]] = []
        after = 0
        while page := engine.list_mappings(state.ctx, org["id"], after_id=after, limit=200):
            rows += page
            after = page[-1]["id"]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("No remembered mapping.")
        return
    for row in rows:
        pairs = ", ".join(f"{h}={f}" for h, f in row["mapping"].items())
        out.print(
            f"{row['id']:>5}  {row['entity_type']:<10} {row['updated_at'][:16]}  {pairs}",
            markup=False,
        )
        out.print(f"       header: {', '.join(row['header'])}", markup=False)


def mapping_forget(
    ctx: typer.Context,
    mapping_id: Annotated[int, typer.Argument(help="The id `bulkops mapping list` shows.")],
) -> None:
    """Forget a remembered mapping.

    Example: bulkops mapping forget 3
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        engine.forget_mapping(state.ctx, org["id"], mapping_id)
    out.print(f"Forgot mapping {mapping_id}.")
