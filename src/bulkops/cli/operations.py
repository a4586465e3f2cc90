"""Commands that run operations: import, update, delete, export, rollback, cancel, resume."""

from __future__ import annotations

import itertools
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from bulkops import engine
from bulkops.cli.arguments import (
    Entity,
    FileArg,
    FormatOpt,
    JsonOpt,
    OpId,
    binary_stdout_allowed,
    chosen_format,
    dash_is_stdout,
)
from bulkops.cli.checks import print_changes, run_apply
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
from bulkops.entities import spec_for
from bulkops.errors import UsageError
from bulkops.model import EntityType, Operation, OperationStatus, OperationType

__all__ = ["cancel", "data_command", "export", "resume", "rollback"]


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
    sheet: str | None,
    decimal_separator: str | None,
    as_json: bool,
    check: bool = False,
    saved_mapping: bool = True,
) -> None:
    state = state_of(ctx)
    with reported_errors():
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
                "validate_only": validate_only or check,
                "rollback_on_error": rollback_on_error,
                "max_errors": max_errors,
                "mapping": parsed_mapping,
                "encoding": encoding,
                "delimiter": delimiter,
                "sheet": sheet,
                "decimal_separator": decimal_separator,
            }
        )
        if not file.is_file():
            raise UsageError(f"No such file: {file}")
        org = state.org()
        starter = state.starter(org["id"])
        if saved_mapping:
            config = _with_saved_mapping(state, org["id"], entity, file, config, as_json=as_json)
        op = engine.create_operation(
            state.ctx,
            org["id"],
            created_by=starter.user_id,
            actor=starter.actor,
            operation_type=operation,
            entity_type=entity,
            config=config,
            source=file,
            file_name=file.name,
        )
        if not as_json:
            err.print(f"Operation {op.id} ({operation.value} {entity.value}).")
        with live_progress(not as_json, f"{operation.value} {entity.value}") as progress:
            final = _unless_interrupted(
                lambda: engine.execute(
                    state.ctx,
                    org["id"],
                    op.id,
                    on_progress=progress,
                    wait=wait_message(state.ctx, org["id"], op.id),
                )
            )
        if final is None:
            _on_interrupt(state, org["id"], op.id, as_json=as_json, rollback=False)
        if as_json:
            print_json(engine.operation_view(final))
        else:
            print_summary(final)
            if check and final.status is OperationStatus.COMPLETED:
                final = _review_check(state, org["id"], final)
    raise typer.Exit(exit_code_for(final))


def _with_saved_mapping(
    state: State,
    org_id: int,
    entity: EntityType,
    file: Path,
    config: engine.OperationConfig,
    *,
    as_json: bool,
) -> engine.OperationConfig:
    """The options with the mapping remembered for this file's header (--map entries win),
    saying so on standard error."""
    saved = engine.saved_mapping_for_file(state.ctx, org_id, entity, file, config)
    if saved is None or not saved["mapping"]:
        return config
    given = {engine.normalised_header_cell(h) for h in config.mapping}
    used = {
        h: f for h, f in saved["mapping"].items() if engine.normalised_header_cell(h) not in given
    }
    if not used:
        return config
    if not as_json:
        pairs = " ".join(f"--map '{h}={f}'" for h, f in used.items())
        err.print(
            f"Using the mapping remembered for this header (mapping {saved['id']}): {pairs}. "
            "Add --no-saved-mapping to not use it.",
            markup=False,
        )
    return config.model_copy(update={"mapping": {**used, **config.mapping}})


_CHECK_PREVIEW = 20


def _review_check(state: State, org_id: int, check: Operation) -> Operation:
    """After --check (whose summary gave the planned counts): the first changes, then apply
    on a yes (on a terminal), or the command that applies it. Returns the operation to exit
    with."""
    counts = engine.planned_change_counts(state.ctx, org_id, check.id)
    items = list(
        itertools.islice(
            engine.iter_planned_changes(state.ctx, org_id, check.id, page_size=_CHECK_PREVIEW),
            _CHECK_PREVIEW,
        )
    )
    if not items:
        out.print("Nothing would change.")
        return check
    total = sum(counts.values())
    out.print(f"The first {len(items)} of {total:,} planned changes:" if total > len(items)
              else "The planned changes:")
    print_changes(items, terminal=out.is_terminal)
    if total > len(items):
        out.print(f"All of them: bulkops changes {check.id[:8]} -o changes.csv")
    if sys.stdin.isatty() and sys.stdout.isatty():
        if typer.confirm("Apply?", default=False):
            return run_apply(state, org_id, check.id, as_json=False)
        out.print(f"Not applied. Apply it later: bulkops apply {check.id[:8]}")
        return check
    out.print(f"Apply it: bulkops apply {check.id[:8]}")
    return check


def _unless_interrupted(run: Callable[[], Operation]) -> Operation | None:
    """``run()``, or None after Ctrl-C. From then on a second Ctrl-C is ignored, so that it
    cannot cut the cancel short; the caller cancels once the interrupt's frames are gone
    (outside the ``except`` block)."""
    try:
        return run()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return None


def _on_interrupt(
    state: State, org_id: int, op_id: str, *, as_json: bool, rollback: bool
) -> NoReturn:
    """Ctrl-C: cancel the operation, or stop its rollback after the batch under way (what
    was committed stays, what was restored stays restored), say what can be done next, and
    exit 130."""
    final = engine.cancel_interrupted(state.ctx, org_id, op_id, engine.process_owner())
    if as_json:
        print_json(engine.operation_view(final))
        raise typer.Exit(130)
    applied = final.created_records + final.updated_records + final.deleted_records
    if rollback:
        err.print(
            f"\nInterrupted: the rollback of operation {op_id} stopped after restoring "
            f"{final.rolled_back_records:,} of {applied:,} records; the operation is "
            f"{final.status.label}."
        )
        err.print(f"Go on with the rollback: bulkops rollback {op_id[:8]}")
    else:
        err.print(
            f"\nInterrupted: operation {op_id} is {final.status.value} after "
            f"{final.processed_records:,} records ({applied:,} changed)."
        )
        if applied:
            err.print(f"Undo what was applied: bulkops rollback {op_id[:8]}")
    err.print(f"See it: bulkops show {op_id[:8]}")
    raise typer.Exit(130)


def _default(option: str) -> object:
    """An option's default, from the operation's configuration (one source)."""
    return engine.OperationConfig.model_fields[option].default


def data_command(operation: OperationType) -> Callable[..., None]:
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
        chunk_size: Annotated[
            int | None, typer.Option(help=f"Records per batch. Default: {_default('chunk_size')}.")
        ] = None,
        max_concurrent: Annotated[
            int | None,
            typer.Option(help=f"Batches in flight. Default: {_default('max_concurrent')}."),
        ] = None,
        max_errors: Annotated[
            int | None,
            typer.Option(
                help=f"Stop after this many failed records. Default: {_default('max_errors')}."
            ),
        ] = None,
        mapping: Annotated[
            list[str] | None,
            typer.Option(
                "--map", metavar="HEADER=FIELD", help="HEADER=FIELD, or HEADER= to ignore."
            ),
        ] = None,
        encoding: Annotated[
            str | None,
            typer.Option(
                help="e.g. windows-1252. Default: UTF-8 (UTF-16 with a byte-order mark)."
            ),
        ] = None,
        delimiter: Annotated[
            str | None, typer.Option(help=", ; | or tab. Default: detected from the header.")
        ] = None,
        sheet: Annotated[
            str | None, typer.Option(help="For a workbook: the sheet to read. Default: the first.")
        ] = None,
        decimal_separator: Annotated[
            str | None,
            typer.Option(
                "--decimal-separator",
                help="How prices write decimals: . or , as in 149,00. Default: .",
            ),
        ] = None,
        check: Annotated[
            bool,
            typer.Option(
                "--check",
                help="Dry run first: show the planned changes, then ask to apply them "
                "(on a terminal) or print the command that does.",
            ),
        ] = False,
        no_saved_mapping: Annotated[
            bool,
            typer.Option(
                "--no-saved-mapping",
                help="Do not use the mapping remembered for this file's header.",
            ),
        ] = False,
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
            sheet=sheet,
            decimal_separator=decimal_separator,
            as_json=as_json,
            check=check,
            saved_mapping=not no_saved_mapping,
        )

    command.__doc__ = {
        OperationType.IMPORT: "Create or update records by natural key (upsert).\n\n"
        "Example: bulkops import products products.xlsx --check",
        OperationType.UPDATE: "Update existing records; only the columns in the file change."
        "\n\nExample: bulkops update products prices.csv --map \"Unit price=price\"",
        OperationType.DELETE: "Delete records by natural key.\n\n"
        "Example: bulkops delete inventory discontinued.csv --check",
    }[operation]
    return command


def export(
    ctx: typer.Context,
    entity: Entity,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", callback=dash_is_stdout, help="File (default: stdout, or -o -)."
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", metavar="COLUMN=VALUE", help="A filter, repeatable."),
    ] = None,
    file_format: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write every row of an entity as CSV (or an XLSX workbook) in template column order.

    Example: bulkops export inventory --where warehouse_code=WH-1 -o wh1.xlsx
    """
    state = state_of(ctx)
    with reported_errors():
        chosen = chosen_format(file_format, output)
        if output is None and not as_json:
            binary_stdout_allowed(chosen)
        filters = dict(item.split("=", 1) for item in (where or []) if "=" in item)
        org = state.org()
        starter = state.starter(org["id"])
        op = engine.create_operation(
            state.ctx,
            org["id"],
            created_by=starter.user_id,
            actor=starter.actor,
            operation_type=OperationType.EXPORT,
            entity_type=entity,
            config=engine.OperationConfig(filters=filters, format=chosen.value),
        )
        with live_progress(not as_json and output is not None, f"export {entity.value}") as p:
            final = engine.execute(state.ctx, org["id"], op.id, on_progress=p)
        source = engine.export_path(state.ctx, org["id"], op.id, chosen.value)
        if output is not None:
            shutil.copyfile(source, output)  # streamed, not read whole into memory
        elif not as_json:
            with source.open("rb") as handle:
                while block := handle.read(1 << 20):
                    sys.stdout.buffer.write(block)
    if as_json:
        print_json(engine.operation_view(final))
    elif output is not None:
        noun = spec_for(entity).row_noun
        err.print(f"Exported {counted(final.processed_records, noun)} to {output}.")
    raise typer.Exit(exit_code_for(final))


def rollback(
    ctx: typer.Context,
    operation_id: OpId,
    force: Annotated[bool, typer.Option("--force", help="Overwrite rows changed since.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Undo an operation exactly; rows changed since are reported as conflicts.

    Example: bulkops rollback 1f2e3d4c
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        operation_id = state.operation_id(org["id"], operation_id)
        with live_progress(not as_json, "rollback") as progress:
            final = _unless_interrupted(
                lambda: engine.rollback_operation(
                    state.ctx, org["id"], operation_id, user_id=None, force=force,
                    on_progress=progress,
                )
            )
        if final is None:
            _on_interrupt(state, org["id"], operation_id, as_json=as_json, rollback=True)
    if as_json:
        print_json(engine.operation_view(final))
    else:
        print_summary(final)
        if final.conflict_records:
            out.print(f"Conflicts: bulkops errors {operation_id[:8]} --conflicts -o conflicts.csv")
    raise typer.Exit(0 if not final.conflict_records else 1)


def cancel(
    ctx: typer.Context,
    operation_id: OpId,
    with_rollback: Annotated[
        bool, typer.Option("--rollback", help="Undo what was applied.")
    ] = False,
) -> None:
    """Stop an operation within one chunk (from any process), or a rollback under way.

    Example: bulkops cancel 1f2e3d4c --rollback
    """
    state = state_of(ctx)
    with reported_errors():
        org = state.org()
        operation_id = state.operation_id(org["id"], operation_id)
        op = engine.request_cancel(
            state.ctx, org["id"], operation_id, user_id=None, rollback=with_rollback
        )
    out.print(
        f"Operation {operation_id}: "
        + (
            "cancelled."
            if op.status is OperationStatus.CANCELLED
            else "cancel requested; it stops "
            "within one chunk" + (" and is then rolled back." if with_rollback else ".")
        )
    )


def resume(
    ctx: typer.Context,
    operation_id: Annotated[
        str | None, typer.Argument(help="Operation id, or a unique prefix of 6+ characters.")
    ] = None,
    orphaned: Annotated[
        bool, typer.Option("--orphaned", help="Every operation whose process died.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue an operation or rollback whose process died, from its last committed chunk.

    Example: bulkops resume 1f2e3d4c
    """
    state = state_of(ctx)
    with reported_errors():
        if (operation_id is None) == (not orphaned):
            raise UsageError("Give an OPERATION_ID or --orphaned (not both).")
        org = state.org()
        with live_progress(not as_json, "resume") as progress:
            if operation_id is not None:
                operation_id = state.operation_id(org["id"], operation_id)
                finals = [engine.resume(state.ctx, org["id"], operation_id, on_progress=progress)]
            else:
                finals = engine.resume_orphaned(state.ctx, org["id"], on_progress=progress)
    if as_json:
        views = [engine.operation_view(f) for f in finals]
        print_json(views[0] if operation_id is not None else views)
    else:
        if not finals:
            out.print("No orphaned operation: nothing to resume.")
        for final in finals:
            print_summary(final)
    raise typer.Exit(max((exit_code_for(f) for f in finals), default=0))
