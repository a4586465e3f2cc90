"""``/api/v1/operations``: start (upload), list, read, cancel, roll back, and their files.

Routes only create operations and set flags; the embedded worker process (or Celery) runs
them. Reads and writes go through the engine facade and the organization-scoped store
transactions, so an operation of another organization is simply not found (404).
"""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import anyio
import anyio.from_thread
import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from bulkops import engine
from bulkops.errors import Conflict, FileProblem, FileTooLarge, UnsupportedFile
from bulkops.model import EntityType, OperationStatus, OperationType

from .deps import Ctx, Editor, State, Viewer
from .models import (
    CancelIn,
    ErrorPage,
    ErrorRowOut,
    OperationOut,
    OperationPage,
    RecordOut,
    RecordPage,
    RollbackIn,
)
from .pages import decode_cursor, encode_cursor
from .problems import PROBLEM_JSON, InvalidParameters
from .uploads import MAX_FIELD_BYTES, read_upload

__all__ = ["router"]

log = logging.getLogger("bulkops.api.operations")
router = APIRouter(prefix="/api/v1", tags=["operations"])

# Room for the form fields around the file when judging Content-Length before reading.
FORM_ALLOWANCE_BYTES = 4 * MAX_FIELD_BYTES
_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}
_FORM_FIELDS = (
    "operation_type",
    "entity_type",
    "validate_only",
    "rollback_on_error",
    "chunk_size",
    "max_concurrent",
    "max_errors",
    "mapping",
    "encoding",
    "delimiter",
    "filters",
)

_problem: dict[str, Any] = {"content": {PROBLEM_JSON: {}}}
_OP_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or a bad token", **_problem},
    404: {"description": "No such operation in your organization", **_problem},
}

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["operation_type", "entity_type"],
                    "properties": {
                        "operation_type": {
                            "type": "string",
                            "enum": [t.value for t in OperationType],
                        },
                        "entity_type": {"type": "string", "enum": [e.value for e in EntityType]},
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The CSV/TSV file (not for export).",
                        },
                        "validate_only": {"type": "boolean", "default": False},
                        "rollback_on_error": {"type": "boolean", "default": False},
                        "chunk_size": {"type": "integer", "minimum": 1, "maximum": 50000},
                        "max_concurrent": {"type": "integer", "minimum": 1, "maximum": 32},
                        "max_errors": {"type": "integer", "minimum": 0},
                        "mapping": {
                            "type": "string",
                            "description": 'JSON object: CSV header -> field, or "" '
                            "to ignore the column",
                        },
                        "encoding": {"type": "string", "example": "windows-1252"},
                        "delimiter": {"type": "string", "enum": [",", ";", "tab", "|"]},
                        "filters": {
                            "type": "string",
                            "description": "export only: JSON object column -> value",
                        },
                    },
                },
            }
        },
    }
}


def _view(op: dict[str, Any]) -> dict[str, Any]:
    return engine.operation_view(op)


# -- start --------------------------------------------------------------------------------------


def _parse_form(fields: dict[str, str], has_file: bool) -> dict[str, Any]:
    """The form fields as create_operation arguments; every problem is listed at once."""
    problems: list[dict[str, Any]] = []

    def problem(name: str, message: str) -> None:
        problems.append({"code": "bad_parameter", "field": name, "message": message})

    for name in fields:
        if name not in _FORM_FIELDS:
            problem(name, f"Unknown parameter; the parameters are: {', '.join(_FORM_FIELDS)}.")
    values: dict[str, Any] = {}
    operation: OperationType | None = None
    entity: EntityType | None = None
    raw_type = fields.get("operation_type", "").strip().lower()
    raw_entity = fields.get("entity_type", "").strip().lower()
    if not raw_type:
        problem("operation_type", "is required: import, update, delete or export.")
    else:
        try:
            operation = OperationType(raw_type)
        except ValueError:
            problem("operation_type", f"'{raw_type}' is not one of import, update, delete, export.")
    if not raw_entity:
        problem("entity_type", f"is required: {', '.join(e.value for e in EntityType)}.")
    else:
        try:
            entity = EntityType(raw_entity)
        except ValueError:
            problem(
                "entity_type",
                f"'{raw_entity}' is not one of {', '.join(e.value for e in EntityType)}.",
            )
    for name in ("validate_only", "rollback_on_error"):
        if (text := fields.get(name, "").strip().lower()) != "":
            if text not in _BOOLEANS:
                problem(name, f"'{text}' is not true or false.")
            else:
                values[name] = _BOOLEANS[text]
    for name in ("chunk_size", "max_concurrent", "max_errors"):
        if (text := fields.get(name, "").strip()) != "":
            if not text.isascii() or not text.isdigit():
                problem(name, f"'{text}' is not a whole number.")
            else:
                values[name] = int(text)
    for name in ("mapping", "filters"):
        if (text := fields.get(name, "").strip()) != "":
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
            ):
                problem(name, 'must be a JSON object of texts, e.g. {"Artikel": "sku"}.')
            else:
                values[name] = parsed
    for name in ("encoding", "delimiter"):
        if (text := fields.get(name, "").strip()) != "":
            values[name] = text
    if values.get("delimiter") not in (None, ",", ";", "|", "tab", "\t", "\\t"):
        problem("delimiter", "must be one of , ; | or tab.")
    if operation is OperationType.EXPORT and has_file:
        problem("file", "An export takes no file.")
    if operation is not None and operation is not OperationType.EXPORT and not has_file:
        problem("file", f"A CSV file is required for an {operation.value} operation.")
    if operation is not OperationType.EXPORT and "filters" in values:
        problem("filters", "Only an export can be filtered.")
    config: engine.OperationConfig | None = None
    try:
        config = engine.OperationConfig.model_validate(values)
    except ValidationError as exc:
        for error in exc.errors():
            problem(".".join(str(p) for p in error["loc"]) or "config", str(error["msg"]))
    if problems:
        raise InvalidParameters(problems)
    assert operation is not None and entity is not None and config is not None
    return {"operation_type": operation, "entity_type": entity, "config": config}


def _find_by_key(ctx: engine.Context, org_id: int, key: str) -> dict[str, Any] | None:
    with ctx.store.transaction(org_id) as tx:
        return tx.operations.find_by_idempotency_key(key)


def _operation_response(op: dict[str, Any], status_code: int) -> JSONResponse:
    return JSONResponse(
        _view(op),
        status_code=status_code,
        headers={"Location": f"/api/v1/operations/{op['id']}"},
    )


@router.post(
    "/operations",
    status_code=202,
    response_model=OperationOut,
    summary="Start an operation (upload a file)",
    openapi_extra=_UPLOAD_SCHEMA,
    responses={
        200: {
            "description": "A repeated Idempotency-Key: the first operation",
            "model": OperationOut,
        },
        401: _OP_RESPONSES[401],
        403: {"description": "Your role may not start operations", **_problem},
        413: {"description": "The file is over the size limit", **_problem},
        415: {"description": "Not CSV text (binary, workbook, PDF, image)", **_problem},
        422: {"description": "Bad header or parameters (every problem listed)", **_problem},
    },
)
async def create_operation(
    request: Request,
    principal: Editor,
    state: State,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Store the upload and queue the operation (202); the worker runs it.

    The file is streamed to storage as it arrives; it is refused with 413 as soon as it passes
    the size limit (at once when Content-Length says so), with 415 when it is not text, and
    with 422 listing every problem of its header or of the parameters. Nothing is kept then.
    """
    ctx = state.ctx
    started = datetime.now(UTC)
    key = idempotency_key.strip() if idempotency_key else None
    if key:
        existing = await anyio.to_thread.run_sync(_find_by_key, ctx, principal.org_id, key)
        if existing is not None:
            return _operation_response(existing, 200)
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        # No file: an export (or a request that will be told it needs one).
        fields = await _small_form(request)
        arguments = _parse_form(fields, has_file=False)
        op = await anyio.to_thread.run_sync(
            partial(
                engine.create_operation,
                ctx,
                principal.org_id,
                created_by=principal.user_id,
                idempotency_key=key,
                executor="worker",
                **arguments,
            )
        )
        return _created(op, principal, key, started)
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedFile(
            FileProblem(
                code="not_multipart",
                message="Send the file and parameters as multipart/form-data.",
            )
        )
    limit = ctx.settings.max_file_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + FORM_ALLOWANCE_BYTES:
        raise FileTooLarge(
            FileProblem(
                code="file_too_large",
                message=f"The upload ({int(declared):,} bytes) is larger than the limit of "
                f"{limit:,} bytes. Split it into smaller files.",
            )
        )
    chunks = request.stream().__aiter__()

    async def next_chunk() -> bytes:
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            return b""

    def pull() -> bytes:
        return anyio.from_thread.run(next_chunk)

    def create() -> dict[str, Any]:
        upload = read_upload(
            content_type,
            pull,
            spool_dir=ctx.settings.data_dir / "uploads",
            max_file_bytes=limit,
        )
        try:
            arguments = _parse_form(upload.fields, upload.path is not None)
            return engine.create_operation(
                ctx,
                principal.org_id,
                source=upload.path,
                move_source=True,
                file_name=upload.file_name or None,
                created_by=principal.user_id,
                idempotency_key=key,
                executor="worker",
                **arguments,
            )
        finally:
            upload.discard()

    op = await anyio.to_thread.run_sync(create)
    return _created(op, principal, key, started)


async def _small_form(request: Request) -> dict[str, str]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_ALLOWANCE_BYTES:
            raise InvalidParameters(
                [{"field": "body", "message": "The form is too large; send a file as multipart."}]
            )
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidParameters(
            [{"field": "body", "message": "The form is not valid UTF-8 URL-encoded text."}]
        ) from exc
    return dict(pairs)


def _created(
    op: dict[str, Any], principal: engine.Principal, key: str | None, started: datetime
) -> JSONResponse:
    repeated = key is not None and op["created_at"] < started
    if not repeated:
        log.info(
            "operation created",
            extra={
                "operation_id": op["id"],
                "status": op["status"],
                "operation_type": op["operation_type"],
                "entity_type": op["entity_type"],
                "org_id": principal.org_id,
                "user_id": principal.user_id,
            },
        )
    return _operation_response(op, 200 if repeated else 202)


# -- read ---------------------------------------------------------------------------------------


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@router.get(
    "/operations",
    response_model=OperationPage,
    summary="List operations",
    responses={401: _OP_RESPONSES[401]},
)
def list_operations(
    principal: Viewer,
    ctx: Ctx,
    status: Annotated[list[OperationStatus] | None, Query()] = None,
    operation_type: Annotated[list[OperationType] | None, Query()] = None,
    entity_type: Annotated[list[EntityType] | None, Query()] = None,
    created_by: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    created_after: Annotated[datetime | None, Query()] = None,
    created_before: Annotated[datetime | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=255, description="file name or id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """Newest first. Filters repeat (``status=failed&status=cancelled``); pages by cursor."""
    before: tuple[datetime, str] | None = None
    if (position := decode_cursor(cursor)) is not None:
        try:
            before = (datetime.fromisoformat(position[0]), str(position[1]))
        except (TypeError, ValueError, IndexError, KeyError):
            raise InvalidParameters(
                [{"field": "cursor", "message": "Not a cursor this API returned."}]
            ) from None
    with ctx.store.transaction(principal.org_id) as tx:
        rows = tx.operations.list(
            status=[s.value for s in status or ()],
            operation_type=[t.value for t in operation_type or ()],
            entity_type=[e.value for e in entity_type or ()],
            created_by=created_by,
            created_after=_aware(created_after),
            created_before=_aware(created_before),
            query=q or None,
            limit=limit + 1,
            before=before,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = (
        encode_cursor([rows[-1]["created_at"].isoformat(), rows[-1]["id"]]) if more else None
    )
    return {"items": [_view(r) for r in rows], "next_cursor": next_cursor}


@router.get(
    "/operations/{operation_id}",
    response_model=OperationOut,
    summary="One operation",
    responses=_OP_RESPONSES,
)
def get_operation(operation_id: str, principal: Viewer, ctx: Ctx) -> dict[str, Any]:
    return _view(engine.get_operation(ctx, principal.org_id, operation_id))


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/csv" not in accept


def _temporary_csv(ctx: engine.Context) -> Path:
    folder = ctx.settings.data_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (handed to the response)
        dir=folder, suffix=".csv", delete=False
    )
    handle.close()
    return Path(handle.name)


def _csv_file_response(path: Path, download_name: str) -> FileResponse:
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=download_name,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get(
    "/operations/{operation_id}/errors",
    summary="The error report (CSV, or JSON pages with Accept: application/json)",
    response_model=ErrorPage,
    responses={**_OP_RESPONSES, 200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def get_errors(
    operation_id: str,
    request: Request,
    principal: Viewer,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Any:
    """CSV: ``_row, _line, _errors`` then the original columns, fixable and re-importable."""
    op = engine.get_operation(ctx, principal.org_id, operation_id)
    if not _wants_json(request):
        path = _temporary_csv(ctx)
        try:
            with path.open("w", encoding="utf-8", newline="") as stream:
                engine.write_error_report(ctx, principal.org_id, op, stream)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return _csv_file_response(path, f"errors-{operation_id}.csv")
    after = decode_cursor(cursor) or 0
    if not isinstance(after, int):
        raise InvalidParameters([{"field": "cursor", "message": "Not a cursor this API returned."}])
    with ctx.store.transaction(principal.org_id) as tx:
        page = tx.audit.iter_errors(operation_id, after_row=after, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return ErrorPage(
        header=orjson.loads(op["header"]) if op.get("header") else [],
        items=[
            ErrorRowOut(
                row=e["row"], line=e["line"], errors=e["errors"], values=[str(v) for v in e["raw"]]
            )
            for e in page
        ],
        next_cursor=encode_cursor(page[-1]["row"]) if more else None,
    )


@router.get(
    "/operations/{operation_id}/records",
    response_model=RecordPage,
    summary="Audit records (before and after images)",
    responses=_OP_RESPONSES,
)
def get_records(
    operation_id: str,
    principal: Viewer,
    ctx: Ctx,
    status: Annotated[str | None, Query(pattern="^(applied|rolled_back|conflict)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """In the order they were written; ``status`` filters applied, rolled_back or conflict."""
    engine.get_operation(ctx, principal.org_id, operation_id)
    after = decode_cursor(cursor)
    if after is not None and not isinstance(after, int):
        raise InvalidParameters([{"field": "cursor", "message": "Not a cursor this API returned."}])
    with ctx.store.transaction(principal.org_id) as tx:
        page = tx.audit.page(
            operation_id, newest_first=False, after_id=after, limit=limit + 1, status=status
        )
    more = len(page) > limit
    page = page[:limit]
    items = [
        RecordOut(
            id=r["id"],
            record_index=r["record_index"],
            entity_id=r["entity_id"],
            action=r["action"],
            before_data=orjson.loads(r["before_data"]) if r["before_data"] else None,
            after_data=orjson.loads(r["after_data"]) if r["after_data"] else None,
            status=r["status"],
            error=r["error"],
        )
        for r in page
    ]
    return {"items": items, "next_cursor": encode_cursor(page[-1]["id"]) if more else None}


@router.get(
    "/operations/{operation_id}/download",
    summary="The CSV of an export operation",
    response_class=FileResponse,
    responses={
        **_OP_RESPONSES,
        200: {"content": {"text/csv": {}}},
        409: {"description": "Not a completed export", **_problem},
    },
)
def download(operation_id: str, principal: Viewer, ctx: Ctx) -> FileResponse:
    op = engine.get_operation(ctx, principal.org_id, operation_id)
    if op["operation_type"] != "export":
        raise Conflict(f"Operation {operation_id} is an {op['operation_type']}, not an export.")
    path = engine.export_path(ctx, principal.org_id, operation_id)
    if op["status"] != "completed" or not path.is_file():
        raise Conflict(f"Export {operation_id} is {op['status']}; its file is not ready yet.")
    return FileResponse(
        path,
        media_type="text/csv; charset=utf-8",
        filename=f"{op['entity_type']}-{operation_id}.csv",
    )


@router.get(
    "/operations/{operation_id}/conflicts",
    summary="The rows a rollback left alone (CSV)",
    response_class=FileResponse,
    responses={**_OP_RESPONSES, 200: {"content": {"text/csv": {}}}},
)
def get_conflicts(operation_id: str, principal: Viewer, ctx: Ctx) -> FileResponse:
    op = engine.get_operation(ctx, principal.org_id, operation_id)
    path = _temporary_csv(ctx)
    try:
        with path.open("w", encoding="utf-8", newline="") as stream:
            engine.write_conflict_report(ctx, principal.org_id, op, stream)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _csv_file_response(path, f"conflicts-{operation_id}.csv")


# -- steer --------------------------------------------------------------------------------------


@router.post(
    "/operations/{operation_id}/cancel",
    status_code=202,
    response_model=OperationOut,
    summary="Stop an operation within one chunk",
    responses={
        **_OP_RESPONSES,
        403: {"description": "Viewer", **_problem},
        409: {"description": "The operation has ended", **_problem},
    },
)
def cancel(
    operation_id: str, principal: Editor, ctx: Ctx, body: CancelIn | None = None
) -> JSONResponse:
    """A pending operation is cancelled at once; a running one stops after its chunk."""
    rollback = bool(body and body.rollback)
    op = engine.request_cancel(
        ctx, principal.org_id, operation_id, user_id=principal.user_id, rollback=rollback
    )
    log.info(
        "operation cancel requested",
        extra={
            "operation_id": operation_id,
            "status": op["status"],
            "rollback": rollback,
            "org_id": principal.org_id,
            "user_id": principal.user_id,
        },
    )
    return _operation_response(op, 202)


@router.post(
    "/operations/{operation_id}/rollback",
    status_code=202,
    response_model=OperationOut,
    summary="Undo an ended operation",
    responses={
        **_OP_RESPONSES,
        403: {"description": "Viewer", **_problem},
        409: {"description": "Cannot be rolled back now", **_problem},
    },
)
def rollback(
    operation_id: str, principal: Editor, ctx: Ctx, body: RollbackIn | None = None
) -> JSONResponse:
    """Restores every record newest first; rows changed since are conflicts unless forced."""
    force = bool(body and body.force)
    op = engine.queue_rollback(
        ctx, principal.org_id, operation_id, user_id=principal.user_id, force=force
    )
    log.info(
        "operation rollback queued",
        extra={
            "operation_id": operation_id,
            "status": op["status"],
            "force": force,
            "org_id": principal.org_id,
            "user_id": principal.user_id,
        },
    )
    return _operation_response(op, 202)
