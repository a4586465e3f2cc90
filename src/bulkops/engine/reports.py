"""Files the engine writes for people: the error report and the template."""

from __future__ import annotations

from typing import TextIO

import orjson

from bulkops.engine.operations import Context
from bulkops.entities import spec_for
from bulkops.formats import CsvWriter, error_report_header
from bulkops.model import Operation

__all__ = ["write_conflict_report", "write_error_report", "write_template"]

PAGE = 5000


def write_error_report(ctx: Context, org_id: int, op: Operation, stream: TextIO) -> int:
    """``_row, _line, _errors`` then the record's original columns; fixable and re-importable."""
    header = op.header if op.header else []
    writer = CsvWriter(stream)
    writer.writerow(error_report_header(header))
    after = 0
    count = 0
    while True:
        with ctx.store.transaction(org_id) as tx:
            page = tx.audit.iter_errors(op.id, after_row=after, limit=PAGE)
        if not page:
            return count
        for error in page:
            messages = "; ".join(
                (f"{e['column']}: " if e.get("column") else "") + e["message"]
                for e in error["errors"]
            )
            raw = list(error["raw"])
            raw += [""] * (len(header) - len(raw))
            writer.writerow([str(error["row"]), str(error["line"]), messages, *raw])
        count += len(page)
        after = page[-1]["row"]


def write_conflict_report(ctx: Context, org_id: int, op: Operation, stream: TextIO) -> int:
    """The rows a rollback left alone because someone changed them afterwards."""
    spec = spec_for(op.entity_type)
    writer = CsvWriter(stream)
    writer.writerow(["_row", "_key", "_entity_id", "_action", "_conflict", *spec.field_names])
    count = 0
    after: int | None = None
    while True:
        with ctx.store.transaction(org_id) as tx:
            page = tx.audit.page(op.id, newest_first=False, after_id=after, status="conflict")
        if not page:
            return count
        for record in page:
            image = orjson.loads(record["before_data"] or record["after_data"] or "{}")
            writer.writerow(
                [
                    str(record["record_index"]),
                    " / ".join(str(image.get(name, "")) for name in spec.key),
                    str(record["entity_id"]),
                    record["action"],
                    record["error"] or "",
                    *[image.get(f) for f in spec.field_names],
                ]
            )
        count += len(page)
        after = page[-1]["id"]


def write_template(entity: str, stream: TextIO) -> None:
    spec = spec_for(entity)
    writer = CsvWriter(stream)
    writer.writerow(list(spec.field_names))
    writer.writerow([spec.template_row.get(f, "") for f in spec.field_names])
