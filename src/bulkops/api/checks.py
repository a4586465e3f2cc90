"""Check, then apply (CONTRACT section 7): uploads, their preview, remembered mappings, the
planned changes of a check, and applying a check.

``POST /api/v1/uploads`` stores a file once and answers with what it holds (the header, the
first records, a suggested mapping); ``POST /api/v1/operations`` then takes ``upload_id``
instead of the file. A check (``validate_only``) keeps its planned changes, read here in
pages or as CSV, and ``POST /api/v1/operations/{id}/apply`` runs the checked file for real.
Everything is scoped to the caller's organization: another's is simply not found (404).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from bulkops import engine
from bulkops.model import EntityType, Operation

from .deps import Ctx, Editor, State, Viewer
from .forms import review_arguments, review_request_body
from .models import ChangePage, MappingPage, OperationOut, PreviewIn, UploadOut
from .pages import int_position, page_by_cursor
from .params import Cursor
from .problems import problem_responses
from .reports import csv_report
from .uploads import upload_reader

__all__ = ["router"]

log = logging.getLogger("bulkops.api.checks")
router = APIRouter(prefix="/api/v1", tags=["check and apply"])

UploadId = Annotated[str, Path(max_length=64, description="The upload's id.")]


def _upload_response(view: dict[str, Any], status_code: int) -> JSONResponse:
    return JSONResponse(
        UploadOut.model_validate(view).model_dump(mode="json"),
        status_code=status_code,
        headers={"Location": f"/api/v1/uploads/{view['id']}"},
    )


# -- uploads --------------------------------------------------------------------------------------


@router.post(
    "/uploads",
    status_code=201,
    response_model=UploadOut,
    summary="Upload a file for review (preview, suggested mapping)",
    openapi_extra=review_request_body(),
    responses=problem_responses(
        400,
        401,
        403,
        413,
        415,
        422,
        s403="Your role may not upload files",
        s415="Not a file the service reads (binary, PDF, image), or not multipart",
        s422="A file that cannot be read, or bad parameters (every problem listed)",
    ),
)
async def create_upload(request: Request, principal: Editor, state: State) -> Response:
    """Stores the file once (201 + Location) and answers with the upload object.

    Refused as an operation's file would be: 413 over the size limit, 415 when it is not a
    table, 422 when it cannot be read (encoding, no header) or a parameter is wrong. A header
    with unknown or missing columns is not refused: the answer suggests a mapping.
    """
    ctx = state.ctx
    read = upload_reader(
        request,
        spool_dir=ctx.settings.data_dir / "uploads",
        max_file_bytes=ctx.settings.max_file_bytes,
    )

    def create() -> dict[str, Any]:
        upload = read()
        try:
            arguments = review_arguments(upload.fields, has_file=upload.path is not None)
            assert upload.path is not None
            return engine.create_upload(
                ctx,
                principal.org_id,
                source=upload.path,
                move_source=True,
                file_name=upload.file_name or None,
                created_by=principal.user_id,
                **arguments,
            )
        finally:
            upload.discard()

    view = await anyio.to_thread.run_sync(create)
    log.info(
        "upload stored",
        extra={"upload_id": view["id"], "org_id": principal.org_id, "user_id": principal.user_id},
    )
    return _upload_response(view, 201)


@router.get(
    "/uploads/{upload_id}",
    response_model=UploadOut,
    summary="One upload, read with the options last given",
    responses=problem_responses(401, 404, 422),
)
def get_upload(upload_id: UploadId, principal: Viewer, ctx: Ctx) -> dict[str, Any]:
    return engine.get_upload(ctx, principal.org_id, upload_id)


@router.post(
    "/uploads/{upload_id}/preview",
    response_model=UploadOut,
    summary="Read the upload again with other options or a mapping",
    responses=problem_responses(
        400, 401, 403, 404, 422, s422="Options or a mapping that cannot be used, or the file "
        "cannot be read so"
    ),
)
def preview_upload(
    upload_id: UploadId, principal: Editor, ctx: Ctx, body: PreviewIn | None = None
) -> dict[str, Any]:
    """The upload object read with ``encoding``, ``delimiter``, ``decimal_separator`` or
    ``sheet`` (kept for the upload: an operation made from it reads it so), and ``mapping``
    shown as ``how: given``."""
    given = body or PreviewIn()
    options = given.model_dump(exclude_unset=True, exclude={"mapping"})
    return engine.preview_upload(
        ctx, principal.org_id, upload_id, options=options, mapping=given.mapping
    )


# -- remembered mappings --------------------------------------------------------------------------


@router.get(
    "/mappings",
    response_model=MappingPage,
    summary="Remembered mappings (per entity and header)",
    responses=problem_responses(401, 422),
)
def list_mappings(
    principal: Viewer,
    ctx: Ctx,
    entity_type: Annotated[EntityType | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> dict[str, Any]:
    """Oldest first. A completed operation with a ``mapping`` remembers it for its header."""
    rows, next_cursor = page_by_cursor(
        lambda after, how_many: engine.list_mappings(
            ctx, principal.org_id, entity=entity_type, after_id=after or 0, limit=how_many
        ),
        cursor=cursor,
        limit=limit,
        position_of=lambda m: int(m["id"]),
        read_position=int_position,
    )
    return {"items": rows, "next_cursor": next_cursor}


@router.delete(
    "/mappings/{mapping_id}",
    status_code=204,
    response_class=Response,
    summary="Forget a remembered mapping",
    responses=problem_responses(401, 403, 404, 422),
)
def forget_mapping(
    mapping_id: Annotated[int, Path(ge=1, le=2**62)], principal: Editor, ctx: Ctx
) -> Response:
    engine.forget_mapping(ctx, principal.org_id, mapping_id)
    return Response(status_code=204)


# -- planned changes and apply --------------------------------------------------------------------


def _position(value: Any) -> engine.ChangePosition:
    chunk, position = value
    if not isinstance(chunk, int) or not isinstance(position, int):
        raise TypeError(value)
    return chunk, position


@router.get(
    "/operations/{operation_id}/changes",
    response_model=ChangePage,
    summary="A check's planned changes (JSON pages, or CSV with Accept: text/csv)",
    responses={
        200: {"content": {"application/json": {}, "text/csv": {}}},
        **problem_responses(401, 404, 409, 422, s409="Not a check (validate_only)"),
    },
)
def get_changes(
    operation_id: str,
    request: Request,
    principal: Viewer,
    ctx: Ctx,
    action: Annotated[str | None, Query(pattern="^(create|update|delete)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
) -> Any:
    """Every record the check would change, in row order: its row, key, action and, for an
    update, each changed field with its current and new value.

    CSV: ``_row, _action``, the key columns, then ``field, current, new``, one line per
    changed field (a delete: one line, those three empty).
    """
    if "text/csv" in request.headers.get("accept", ""):
        op = engine.get_operation(ctx, principal.org_id, operation_id)
        engine.planned_change_counts(ctx, principal.org_id, operation_id)  # 409 if no check

        def write(c: engine.Context, org_id: int, o: Operation, stream: Any) -> int:
            return engine.write_planned_changes(c, org_id, o, stream, action=action)

        response: FileResponse = csv_report(
            ctx, principal.org_id, op, write, f"changes-{operation_id}.csv"
        )
        return response
    items, next_cursor = page_by_cursor(
        lambda after, how_many: engine.planned_changes(
            ctx, principal.org_id, operation_id, action=action, after=after, limit=how_many
        ),
        cursor=cursor,
        limit=limit,
        position_of=lambda item: item[0],
        read_position=_position,
        to_json=list,
    )
    return {"items": [item for _, item in items], "next_cursor": next_cursor}


@router.post(
    "/operations/{operation_id}/apply",
    status_code=202,
    response_model=OperationOut,
    summary="Apply a check: run the checked file for real",
    responses=problem_responses(
        401,
        403,
        404,
        409,
        s409="Not a completed check, or applied already (the first apply is named)",
    ),
)
async def apply_check(operation_id: str, principal: Editor, state: State) -> JSONResponse:
    """Starts the real operation on the check's stored file with its configuration (202):
    ``config.checked_by`` names the check, and its results count the records whose outcome
    differs from the check (``differs_from_check``)."""
    op = await anyio.to_thread.run_sync(
        partial(
            engine.apply_check,
            state.ctx,
            principal.org_id,
            operation_id,
            created_by=principal.user_id,
            executor="worker",
        )
    )
    log.info(
        "check applied",
        extra={
            "operation_id": op.id,
            "checked_by": operation_id,
            "org_id": principal.org_id,
            "user_id": principal.user_id,
        },
    )
    return JSONResponse(
        engine.operation_view(op),
        status_code=202,
        headers={"Location": f"/api/v1/operations/{op.id}"},
    )
