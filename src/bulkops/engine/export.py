"""Export: every row of an entity (optionally filtered) as CSV in template column order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bulkops.engine.operations import Context, OperationConfig
from bulkops.engine.runner import ProgressCallback, _finish, get_fresh, process_owner
from bulkops.entities import spec_for
from bulkops.formats import CsvWriter
from bulkops.store import utcnow

__all__ = ["export_path", "run_export"]

PAGE_ROWS = 5000


def export_path(ctx: Context, org_id: int, op_id: str) -> Path:
    return ctx.settings.data_dir / "exports" / str(org_id) / f"{op_id}.csv"


def run_export(
    ctx: Context, org_id: int, op_id: str, *, on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    op = get_fresh(ctx, org_id, op_id)
    if op["status"] != "pending":
        return op
    config = OperationConfig.model_validate_json(op["config"])
    spec = spec_for(op["entity_type"])
    fields = spec.field_names
    target = export_path(ctx, org_id, op_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    with ctx.store.transaction(org_id, write=True) as tx:
        total = tx.rows.count(spec.entity.value)
        tx.operations.update(
            op_id,
            {
                "status": "processing",
                "started_at": utcnow(),
                "total_records": total,
                "lease_owner": process_owner(),
                "lease_expires_at": time.time() + 60,
            },
        )
    written = 0
    after_id = 0
    started = time.monotonic()
    partial = target.with_suffix(".part")
    with partial.open("w", encoding="utf-8", newline="") as stream:
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
                "status": "processing",
                "phase": "exporting",
                "total_records": total,
                "processed_records": written,
                "percentage": round(100 * written / total, 1) if total else 100.0,
                "rate": round(rate, 1),
                "estimated_time_remaining": round(max(total - written, 0) / rate, 1),
            }
            with ctx.store.transaction(org_id, write=True) as tx:
                tx.operations.update(
                    op_id, {"processed_records": written, "successful_records": written}
                )
                tx.events.add(op_id, "progress", event)
            if on_progress:
                on_progress(event)
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
    return _finish(ctx, org_id, op_id, "completed", None, on_progress)
