"""The dashboard's review flow: an upload's review page (``/uploads/{id}``).

New operation uploads the file (``POST /api/v1/uploads``) and opens its review page: a URL,
so leaving and coming back keeps the upload. The page is a server-rendered shell; its script
(``static/flow.js``) reads the upload from the API, re-reads it through ``/preview`` when an
encoding, delimiter, decimal separator, sheet or column mapping changes, and starts the check
(a ``validate_only`` operation from the upload) or the operation itself. The check's planned
changes and the fix-in-place table of an operation page are partial templates
(``_check.html``, ``_fix_errors.html``) with their part of the same script.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from bulkops import engine
from bulkops.entities import spec_for
from bulkops.errors import NotFound
from bulkops.model import EntityType, OperationType

from .pages import current_session, render, to_login, web_state

__all__ = ["FIX_IN_PLACE_ROWS", "router"]

FIX_IN_PLACE_ROWS = 1000
"""The most failed rows an operation page offers to fix in the browser."""

router = APIRouter(include_in_schema=False)


def _fields(entity: EntityType, operation: OperationType) -> list[dict[str, Any]]:
    """The entity's fields for the mapping drop-downs, the ones this operation needs first."""
    spec = spec_for(entity)
    needed = set(spec.required_columns(operation))
    return [{"name": f.name, "required": f.name in needed} for f in spec.fields]


def _review(ctx: engine.Context, org_id: int, upload_id: str) -> dict[str, Any]:
    """The upload as the page's shell shows it (the script reads it again from the API)."""
    view = engine.get_upload(ctx, org_id, upload_id)
    entity = EntityType(view["entity_type"])
    operation = OperationType(view["operation_type"])
    return {"upload": view, "fields": _fields(entity, operation)}


@router.get("/uploads/{upload_id}")
async def review_page(upload_id: str, request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    ctx = web_state(request).ctx
    upload_id = upload_id[:64]
    try:
        data = await anyio.to_thread.run_sync(_review, ctx, session.principal.org_id, upload_id)
    except NotFound:
        return render(
            request,
            "message.html",
            {
                "title": "Upload not found",
                "message": f"There is no upload {upload_id} in your organization. An upload "
                f"no operation used is deleted after {ctx.settings.upload_ttl_hours:g} hours; "
                "upload the file again under New operation.",
            },
            session=session,
            status_code=404,
        )
    return render(
        request,
        "review.html",
        {
            **data,
            "upload_id": upload_id,
            "may_write": session.principal.may_write(),
            "option_schema": engine.OperationConfig.model_json_schema()["properties"],
        },
        session=session,
    )
