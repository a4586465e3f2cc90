"""``/api/v1/operations``: start (upload), list, read, cancel, roll back, and their files.

Routes only create operations and set flags; the embedded worker process (or Celery) runs
them. Reads and writes go through the engine, which scopes every one to the caller's
organization, so an operation of another organization is simply not found (404). The form that
starts an operation is :mod:`.forms`; the reports of an operation are :mod:`.reports`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from bulkops import engine
from bulkops.model import EntityType, Operation, OperationStatus, OperationType, Outcome

from .deps import Ctx, Editor, State, Viewer
from .forms import operation_arguments, read_small_form, upload_request_body
from .models import CancelIn, OperationOut, OperationPage, RollbackIn
from .pages import page_by_cursor
from .params import Cursor, Timestamp
from .problems import problem_response, problem_responses
from .uploads import upload_reader

__all__ = ["router"]

log = logging.getLogger("bulkops.api.operations")
router = APIRouter(prefix="/api/v1", tags=["operations"])


def _view(op: Operation) -> dict[str, Any]:
    return engine.operation_view(op)


# -- start --------------------------------------------------------------------------------------


def _operation_response(op: Operation, status_code: int) -> JSONResponse:
    return JSONResponse(
        _view(op),
        status_code=status_code,
        headers={"Location": f"/api/v1/operations/{op.id}"},
    )


@router.post(
    "/operations",
    status_code=202,
    response_model=OperationOut,
    summary="Start an operation (upload a file)",
    openapi_extra=upload_request_body(),
    responses={
        200: {
            "description": "A repeated Idempotency-Key: the first operation",
            "model": OperationOut,
        },
        **problem_responses(
            400,
            401,
            403,
            404,
            413,
            415,
            422,
            s400="Options the service refuses",
            s403="Your role may not start operations",
            s404="No such upload (`upload_id`) in your organization",
            s415="Not CSV text (binary, workbook, PDF, image), or not a form",
            s422="Bad header or parameters (every problem listed)",
        ),
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
    # A repeated key is answered once the file is stored: its checksum is part of the request
    # the key must match (engine.create_operation).
    key = idempotency_key.strip() if idempotency_key else None
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        # No file: an export (or a request that will be told it needs one).
        fields = await read_small_form(request)
        arguments = operation_arguments(fields, has_file=False)
        try:
            op = await anyio.to_thread.run_sync(
                partial(
                    engine.create_operation,
                    ctx,
                    principal.org_id,
                    created_by=principal.user_id,
                    actor=principal.email,
                    idempotency_key=key,
                    executor="worker",
                    **arguments,
                )
            )
        except engine.IdempotencyKeyReused as exc:
            return _key_reused(exc)
        return _created(op, principal, key, started)
    read = upload_reader(
        request,
        spool_dir=ctx.settings.data_dir / "uploads",
        max_file_bytes=ctx.settings.max_file_bytes,
    )

    def create() -> Operation:
        upload = read()
        try:
            arguments = operation_arguments(upload.fields, has_file=upload.path is not None)
            return engine.create_operation(
                ctx,
                principal.org_id,
                source=upload.path,
                move_source=True,
                file_name=upload.file_name or None,
                created_by=principal.user_id,
                actor=principal.email,
                idempotency_key=key,
                executor="worker",
                **arguments,
            )
        finally:
            upload.discard()

    try:
        op = await anyio.to_thread.run_sync(create)
    except engine.IdempotencyKeyReused as exc:
        return _key_reused(exc)
    return _created(op, principal, key, started)


def _key_reused(exc: engine.IdempotencyKeyReused) -> JSONResponse:
    """422 naming the first operation, with what differs from its request under ``errors``."""
    return problem_response(exc.http_status, str(exc), title=exc.title, errors=exc.differences)


def _created(
    op: Operation, principal: engine.Principal, key: str | None, started: datetime
) -> JSONResponse:
    repeated = key is not None and op.created_at < started
    if not repeated:
        log.info(
            "operation created",
            extra={
                "operation_id": op.id,
                "status": op.status,
                "operation_type": op.operation_type,
                "entity_type": op.entity_type,
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
    responses=problem_responses(401, 422),
)
def list_operations(
    principal: Viewer,
    ctx: Ctx,
    status: Annotated[list[OperationStatus] | None, Query()] = None,
    operation_type: Annotated[list[OperationType] | None, Query()] = None,
    entity_type: Annotated[list[EntityType] | None, Query()] = None,
    outcome: Annotated[list[Outcome] | None, Query()] = None,
    created_by: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    created_after: Timestamp = None,
    created_before: Timestamp = None,
    q: Annotated[str | None, Query(max_length=255, description="file name or id")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Newest first. Filters repeat (``status=failed&status=cancelled``); pages by cursor."""
    rows, next_cursor = page_by_cursor(
        lambda before, how_many: engine.list_operations(
            ctx,
            principal.org_id,
            status=[s.value for s in status or ()],
            operation_type=[t.value for t in operation_type or ()],
            entity_type=[e.value for e in entity_type or ()],
            created_by=created_by,
            created_after=_aware(created_after),
            created_before=_aware(created_before),
            query=q or None,
            outcome=outcome or (),
            limit=how_many,
            before=before,
        ),
        cursor=cursor,
        limit=limit,
        position_of=_position,
        read_position=_read_position,
        to_json=lambda position: [position[0].isoformat(), position[1]],
    )
    return {"items": [_view(r) for r in rows], "next_cursor": next_cursor}


def _position(op: Operation) -> tuple[datetime, str]:
    return op.created_at, op.id


def _read_position(value: Any) -> tuple[datetime, str]:
    return datetime.fromisoformat(value[0]), str(value[1])


@router.get(
    "/operations/{operation_id}",
    response_model=OperationOut,
    summary="One operation",
    responses=problem_responses(401, 404),
)
def get_operation(operation_id: str, principal: Viewer, ctx: Ctx) -> dict[str, Any]:
    return _view(engine.get_operation(ctx, principal.org_id, operation_id))


# -- steer --------------------------------------------------------------------------------------


@router.post(
    "/operations/{operation_id}/cancel",
    status_code=202,
    response_model=OperationOut,
    summary="Stop an operation within one chunk",
    responses=problem_responses(400, 401, 403, 404, 409, 422, s409="The operation has ended"),
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
            "status": op.status,
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
    responses=problem_responses(400, 401, 403, 404, 409, 422, s409="Cannot be rolled back now"),
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
            "status": op.status,
            "force": force,
            "org_id": principal.org_id,
            "user_id": principal.user_id,
        },
    )
    return _operation_response(op, 202)
