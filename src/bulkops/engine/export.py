"""Export: every row of an entity (optionally filtered) as CSV or XLSX in template column order.

An export goes through the same lifecycle as every operation (:mod:`bulkops.engine.lifecycle`):
it is claimed and leased, renews its lease with every page, stops within one page when it is
cancelled, and is resumed when its process dies. It only reads, so a resumed export starts
its file again from the first row: the file it ends with is the one an uninterrupted export
writes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bulkops.engine.lifecycle import ProgressCallback, advance, claim, finish, process_owner
from bulkops.engine.operations import Context, OperationConfig, get_operation
from bulkops.entities import EntitySpec, spec_for
from bulkops.formats import CsvWriter
from bulkops.formats.workbook import ColumnKind, SheetWriter
from bulkops.model import Operation, OperationStatus

__all__ = ["column_kinds", "export_path", "run_export"]

PAGE_ROWS = 5000


def export_path(ctx: Context, org_id: int, op_id: str, file_format: str = "csv") -> Path:
    """Where the export ``op_id`` writes its file (``file_format``: its config's ``format``)."""
    suffix = ".xlsx" if file_format == "xlsx" else ".csv"
    return ctx.settings.data_dir / "exports" / str(org_id) / f"{op_id}{suffix}"


def column_kinds(spec: EntitySpec) -> list[ColumnKind]:
    """How each field is written to a workbook: prices and whole numbers as numbers."""
    return [
        "decimal" if f.kind == "decimal" else "int" if f.kind == "int" else "text"
        for f in spec.fields
    ]


class _XlsxRows:
    """The export's rows into a workbook: prices and quantities as numbers, text as text."""

    def __init__(self, path: Path, fields: tuple[str, ...], kinds: list[ColumnKind]) -> None:
        self._sheet = SheetWriter(path, list(fields), kinds=kinds, sheet_name="export")

    def writerows(self, rows: list[tuple[Any, ...]]) -> None:
        write = self._sheet.write
        for row in rows:
            write(row)

    def close(self) -> None:
        self._sheet.close()


def run_export(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    owner: str | None = None,
    on_progress: ProgressCallback | None = None,
    wait: Callable[[], bool] | None = None,
) -> Operation:
    """Run (or resume) an export until it ends; returns the operation."""
    owner = owner or process_owner()
    op = claim(ctx, org_id, op_id, owner, wait)
    if op.status is not OperationStatus.PROCESSING:
        return op
    config = OperationConfig.model_validate(op.config)
    spec = spec_for(op.entity_type)
    fields = spec.field_names
    lease = ctx.settings.lease_seconds
    target = export_path(ctx, org_id, op_id, config.format)
    target.parent.mkdir(parents=True, exist_ok=True)
    with ctx.store.transaction(org_id, write=True) as tx:
        total = tx.rows.count(spec.entity.value, config.filters)  # as filtered
        tx.operations.update(op_id, {"total_records": total})
    written = 0
    after_id = 0
    started = time.monotonic()
    partial = target.with_suffix(".part")
    xlsx = config.format == "xlsx"
    with (
        contextlib.nullcontext(None)
        if xlsx
        else partial.open("w", encoding="utf-8", newline="")
    ) as stream:
        writer: CsvWriter | _XlsxRows
        if stream is None:
            writer = _XlsxRows(partial, fields, column_kinds(spec))
        else:
            writer = CsvWriter(stream)
            writer.writerow(list(fields))
        while True:
            with ctx.store.transaction(org_id) as tx:
                page = tx.rows.iter(
                    spec.entity.value,
                    fields,
                    after_id=after_id,
                    limit=PAGE_ROWS,
                    where=config.filters,
                )
            if not page:
                break
            writer.writerows([row[1:] for row in page])
            after_id = page[-1][0]
            written += len(page)
            rate = written / max(time.monotonic() - started, 1e-6)
            event = {
                "status": OperationStatus.PROCESSING,
                "phase": "exporting",
                "total_records": total,
                "processed_records": written,
                "percentage": round(100 * written / total, 1) if total else 100.0,
                "rate": round(rate, 1),
                "estimated_time_remaining": round(max(total - written, 0) / rate, 1),
            }
            with ctx.store.transaction(org_id, write=True) as tx:
                current = advance(
                    tx,
                    op_id,
                    owner,
                    {},
                    {
                        "processed_records": written,
                        "successful_records": written,
                        "lease_expires_at": time.time() + lease,
                        "attempts": 0,
                    },
                )
                if current.cancel_requested_at is None:
                    tx.events.add(op_id, "progress", event)
            if current.cancel_requested_at is not None:
                break
            if on_progress:
                on_progress(event)
        if isinstance(writer, _XlsxRows):
            writer.close()
    if get_operation(ctx, org_id, op_id).cancel_requested_at is not None:
        partial.unlink(missing_ok=True)  # an export cut short is no export
        return finish(
            ctx, org_id, op_id, OperationStatus.CANCELLED, None, on_progress, cancelled=True
        )
    partial.replace(target)
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.operations.update(
            op_id,
            {
                "processed_records": written,
                "successful_records": written,
                "file_path": str(target),
                "file_size_bytes": target.stat().st_size,
            },
        )
    return finish(ctx, org_id, op_id, OperationStatus.COMPLETED, None, on_progress)
