"""Files the engine writes for people: the error report and the template."""

from __future__ import annotations

import os
import re
from typing import Any, BinaryIO, TextIO

import orjson

from bulkops.engine.export import column_kinds
from bulkops.engine.operations import Context
from bulkops.entities import Field, spec_for
from bulkops.entities.validation import MAX_INT
from bulkops.formats import CsvWriter, error_report_header
from bulkops.formats.workbook import SheetWriter
from bulkops.model import Operation

__all__ = [
    "write_conflict_report",
    "write_error_report",
    "write_error_report_xlsx",
    "write_template",
    "write_template_xlsx",
]

PAGE = 5000


def _error_pages(ctx: Context, org_id: int, op: Operation) -> Any:
    after = 0
    while True:
        with ctx.store.transaction(org_id) as tx:
            page = tx.audit.iter_errors(op.id, after_row=after, limit=PAGE)
        if not page:
            return
        yield page
        after = page[-1]["row"]


def _message(error: dict[str, Any]) -> str:
    return str((f"{error['column']}: " if error.get("column") else "") + error["message"])


def write_error_report(ctx: Context, org_id: int, op: Operation, stream: TextIO) -> int:
    """``_row, _line, _errors`` then the record's original columns; fixable and re-importable."""
    header = op.header if op.header else []
    writer = CsvWriter(stream)
    writer.writerow(error_report_header(header))
    count = 0
    for page in _error_pages(ctx, org_id, op):
        for error in page:
            messages = "; ".join(_message(e) for e in error["errors"])
            raw = list(error["raw"])
            raw += [""] * (len(header) - len(raw))
            writer.writerow([str(error["row"]), str(error["line"]), messages, *raw])
        count += len(page)
    return count


# A message of the workbook reader names its cell ("Row 5, cell E5: …").
_NAMED_CELL = re.compile(r"\bcell ([A-Z]{1,3})[0-9]+\b")


def write_error_report_xlsx(
    ctx: Context, org_id: int, op: Operation, target: str | os.PathLike[str] | BinaryIO
) -> int:
    """The error report as a workbook: the CSV report's columns, every value a text cell as
    read, each failing cell filled in a warning colour with a note holding its message (an
    error of the whole record marks the ``_errors`` cell). Fixed in Excel, it imports as it
    is (the importer ignores the ``_`` columns)."""
    header = op.header if op.header else []
    columns = error_report_header(header)
    position = {name.strip(): 3 + i for i, name in enumerate(header)}
    count = 0
    with SheetWriter(target, columns, sheet_name="errors") as sheet:
        for page in _error_pages(ctx, org_id, op):
            for error in page:
                problems: dict[int, list[str]] = {}
                for e in error["errors"]:
                    column = e.get("column")
                    if column:
                        index = position.get(column.strip(), 2)
                    elif (named := _NAMED_CELL.search(e["message"])) is not None:
                        from bulkops.formats.xlsx import column_index_from_string

                        index = 3 + column_index_from_string(named.group(1)) - 1
                    else:
                        index = 2
                    problems.setdefault(index, []).append(e["message"])
                raw = [str(v) for v in error["raw"]]
                raw += [""] * (len(header) - len(raw))
                messages = "; ".join(_message(e) for e in error["errors"])
                sheet.write(
                    [str(error["row"]), str(error["line"]), messages, *raw],
                    problems={i: "\n".join(m) for i, m in problems.items()},
                )
            count += len(page)
    return count


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


def field_note(field: Field) -> str:
    """What a template's header note says about ``field``: required or optional, type, limits."""
    need = "Required." if field.required else "Optional."
    if field.kind == "decimal":
        kind = (
            "A price: a number greater than 0 with at most 2 decimals (e.g. 149.00), "
            "no currency sign or thousands separator."
        )
    elif field.kind == "int":
        low = field.min_value or 0
        kind = f"A whole number from {low} to {MAX_INT:,}."
    elif field.kind == "email":
        kind = f"An e-mail address, at most {field.max_length or 254} characters."
    else:
        kind = f"Text, at most {field.max_length:,} characters." if field.max_length else "Text."
        if field.key_value:
            kind += " Letter case counts; invisible characters are refused."
    default = f" Empty: {field.default}." if field.default is not None else ""
    return f"{field.name}: {need} {kind}{default}"


def _validation(field: Field, column: int) -> dict[str, Any] | None:
    if field.kind == "decimal":
        cell = f"{chr(ord('A') + column)}2"
        return {
            "validate": "custom",
            "value": f"=AND(ISNUMBER({cell}),{cell}>0,ROUND({cell},2)={cell})",
            "ignore_blank": True,
            "error_title": "Not a price",
            "error_message": "A price is a number greater than 0 with at most 2 decimals.",
            "input_title": field.name,
            "input_message": "A number > 0, at most 2 decimals.",
        }
    if field.kind == "int":
        low = field.min_value or 0
        return {
            "validate": "integer",
            "criteria": "between",
            "minimum": low,
            "maximum": MAX_INT,
            "ignore_blank": True,
            "error_title": "Not a whole number",
            "error_message": f"A whole number of at least {low}.",
            "input_title": field.name,
            "input_message": f"A whole number >= {low}.",
        }
    return None


def write_template_xlsx(entity: str, target: str | os.PathLike[str] | BinaryIO) -> None:
    """The template as a workbook: the header (a note on each cell saying required or
    optional, the type and the limits), Excel data validation for prices and whole numbers,
    and one example row."""
    spec = spec_for(entity)
    kinds = column_kinds(spec)
    with SheetWriter(target, list(spec.field_names), kinds=kinds, sheet_name=entity) as sheet:
        for index, field in enumerate(spec.fields):
            sheet.note(index, field_note(field))
            rule = _validation(field, index)
            if rule is not None:
                sheet.validate(index, rule)
        sheet.write([spec.template_row.get(f, "") for f in spec.field_names])


def write_template(entity: str, stream: TextIO) -> None:
    spec = spec_for(entity)
    writer = CsvWriter(stream)
    writer.writerow(list(spec.field_names))
    writer.writerow([spec.template_row.get(f, "") for f in spec.field_names])
