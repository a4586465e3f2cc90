"""``/api/v1/operations/{id}/…``: an operation's reports and files.

The error report (CSV, or JSON pages), the audit records, an export's file and the conflicts a
rollback left. CSV reports are written to a temporary file that is removed once sent.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from bulkops import engine
from bulkops.errors import Conflict
from bulkops.formats.workbook import XLSX_MEDIA_TYPE
from bulkops.model import Operation, OperationStatus, OperationType

from .deps import Ctx, Viewer
from .models import ErrorPage, ErrorRowOut, RecordOut, RecordPage
from .pages import int_position, page_by_cursor
from .params import Cursor
from .problems import problem_responses

__all__ = ["csv_report", "router"]

router = APIRouter(prefix="/api/v1", tags=["operations"])


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/csv" not in accept


def _wants_xlsx(request: Request, file_format: str | None) -> bool:
    if file_format is not None:
        return file_format == "xlsx"
    accept = request.headers.get("accept", "")
    return XLSX_MEDIA_TYPE in accept and "text/csv" not in accept


FormatQuery = Annotated[
    Literal["csv", "xlsx"] | None,
    Query(
        alias="format",
        description="csv or xlsx (an Excel workbook); without it, the Accept header decides.",
    ),
]


def _temporary_report(
    ctx: engine.Context, suffix: str, media_type: str, download_name: str,
    write: Callable[[Path], object],
) -> FileResponse:
    """What ``write`` puts into a temporary file, sent and then removed (removed at once
    when writing it fails)."""
    folder = ctx.settings.data_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (handed to the response)
        dir=folder, suffix=suffix, delete=False
    )
    handle.close()
    path = Path(handle.name)
    try:
        write(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=media_type,
        filename=download_name,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


def _xlsx_report(
    ctx: engine.Context,
    org_id: int,
    op: Operation,
    write: Callable[[engine.Context, int, Operation, Path], int],
    download_name: str,
) -> FileResponse:
    """The workbook ``write`` makes, sent from a temporary file."""
    return _temporary_report(
        ctx, ".xlsx", XLSX_MEDIA_TYPE, download_name, lambda path: write(ctx, org_id, op, path)
    )


ReportWriter = Callable[[engine.Context, int, Operation, TextIO], int]


def csv_report(
    ctx: engine.Context, org_id: int, op: Operation, write: ReportWriter, download_name: str
) -> FileResponse:
    """The CSV report ``write`` makes, sent from a temporary file."""

    def write_csv(path: Path) -> None:
        with path.open("w", encoding="utf-8", newline="") as stream:
            write(ctx, org_id, op, stream)

    return _temporary_report(ctx, ".csv", "text/csv; charset=utf-8", download_name, write_csv)


@router.get(
    "/operations/{operation_id}/errors",
    summary="The error report (CSV, XLSX with format=xlsx, or JSON pages with Accept: "
    "application/json)",
    response_model=ErrorPage,
    responses={
        200: {"content": {"text/csv": {}, "application/json": {}, XLSX_MEDIA_TYPE: {}}},
        **problem_responses(401, 404, 422),
    },
)
def get_errors(
    operation_id: str,
    request: Request,
    principal: Viewer,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
    file_format: FormatQuery = None,
) -> Any:
    """CSV: ``_row, _line, _errors`` then the original columns, fixable and re-importable.
    XLSX (``format=xlsx`` or ``Accept`` of the XLSX media type): the same columns, each
    failing cell filled and carrying its message as a note."""
    op = engine.get_operation(ctx, principal.org_id, operation_id)
    if _wants_xlsx(request, file_format):
        return _xlsx_report(
            ctx,
            principal.org_id,
            op,
            engine.write_error_report_xlsx,
            f"errors-{operation_id}.xlsx",
        )
    if file_format == "csv" or not _wants_json(request):
        return csv_report(
            ctx, principal.org_id, op, engine.write_error_report, f"errors-{operation_id}.csv"
        )
    page, next_cursor = page_by_cursor(
        lambda after, how_many: engine.error_rows(
            ctx, principal.org_id, operation_id, after_row=after or 0, limit=how_many
        ),
        cursor=cursor,
        limit=limit,
        position_of=lambda e: int(e["row"]),
        read_position=lambda value: int_position(value or 0),
    )
    return ErrorPage(
        header=op.header if op.header else [],
        items=[
            ErrorRowOut(
                row=e["row"], line=e["line"], errors=e["errors"], values=[str(v) for v in e["raw"]]
            )
            for e in page
        ],
        next_cursor=next_cursor,
    )


@router.get(
    "/operations/{operation_id}/records",
    response_model=RecordPage,
    summary="Audit records (before and after images)",
    responses=problem_responses(401, 404, 422),
)
def get_records(
    operation_id: str,
    principal: Viewer,
    ctx: Ctx,
    status: Annotated[str | None, Query(pattern="^(applied|rolled_back|conflict)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """In the order they were written; ``status`` filters applied, rolled_back or conflict."""
    engine.get_operation(ctx, principal.org_id, operation_id)
    page, next_cursor = page_by_cursor(
        lambda after, how_many: engine.audit_records(
            ctx, principal.org_id, operation_id, after_id=after, limit=how_many, status=status
        ),
        cursor=cursor,
        limit=limit,
        position_of=lambda r: int(r["id"]),
        read_position=int_position,
    )
    items = [
        RecordOut(
            id=r["id"],
            record_index=r["record_index"],
            entity_id=r["entity_id"],
            key=r["key"],
            action=r["action"],
            before_data=orjson.loads(r["before_data"]) if r["before_data"] else None,
            after_data=orjson.loads(r["after_data"]) if r["after_data"] else None,
            status=r["status"],
            error=r["error"],
        )
        for r in page
    ]
    return {"items": items, "next_cursor": next_cursor}


@router.get(
    "/operations/{operation_id}/download",
    summary="The file of an export operation (CSV, or XLSX for an export with format=xlsx)",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}},
        **problem_responses(401, 404, 409, s409="Not a completed export"),
    },
)
def download(operation_id: str, principal: Viewer, ctx: Ctx) -> FileResponse:
    op = engine.get_operation(ctx, principal.org_id, operation_id)
    if op.operation_type is not OperationType.EXPORT:
        raise Conflict(f"Operation {operation_id} is an {op.operation_type}, not an export.")
    file_format = "xlsx" if op.config.get("format") == "xlsx" else "csv"
    path = engine.export_path(ctx, principal.org_id, operation_id, file_format)
    if op.status is not OperationStatus.COMPLETED or not path.is_file():
        raise Conflict(f"Export {operation_id} is {op.status}; its file is not ready yet.")
    return FileResponse(
        path,
        media_type=XLSX_MEDIA_TYPE if file_format == "xlsx" else "text/csv; charset=utf-8",
        filename=f"{op.entity_type}-{operation_id}.{file_format}",
    )


@router.get(
    "/operations/{operation_id}/conflicts",
    summary="The rows a rollback left alone (CSV)",
    response_class=FileResponse,
    responses={200: {"content": {"text/csv": {}}}, **problem_responses(401, 404)},
)
def get_conflicts(operation_id: str, principal: Viewer, ctx: Ctx) -> FileResponse:
    op = engine.get_operation(ctx, principal.org_id, operation_id)
    return csv_report(
        ctx, principal.org_id, op, engine.write_conflict_report, f"conflicts-{operation_id}.csv"
    )
