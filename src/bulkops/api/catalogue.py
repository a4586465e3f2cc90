"""``/api/v1/templates`` and ``/api/v1/entities``: the catalogue as CSV templates and JSON rows."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from bulkops import engine
from bulkops.entities import MAX_INT, spec_for
from bulkops.formats.workbook import XLSX_MEDIA_TYPE
from bulkops.model import EntityType

from .deps import Ctx, Viewer
from .models import EntityPage
from .pages import int_position, page_by_cursor
from .params import Cursor
from .problems import problem_responses

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["catalogue"])

KeyFilter = Annotated[
    str | None,
    Query(max_length=254, description="Rows whose key column of this name has this value."),
]


@router.get(
    "/templates/{entity}",
    summary="Template: the header and one example row (CSV, or XLSX with format=xlsx)",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}, XLSX_MEDIA_TYPE: {}}},
        **problem_responses(401, 422),
    },
)
def template(
    entity: EntityType,
    _principal: Viewer,
    file_format: Annotated[
        Literal["csv", "xlsx"],
        Query(
            alias="format",
            description="csv, or xlsx: a workbook with a note on each header cell (required "
            "or optional, type, limits) and Excel data validation for prices and quantities.",
        ),
    ] = "csv",
) -> Response:
    if file_format == "xlsx":
        data = io.BytesIO()
        engine.write_template_xlsx(entity.value, data)
        return Response(
            data.getvalue(),
            media_type=XLSX_MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{entity.value}-template.xlsx"'
            },
        )
    buffer = io.StringIO(newline="")
    engine.write_template(entity.value, buffer)
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{entity.value}-template.csv"'},
    )


@router.get(
    "/entities/{entity}",
    response_model=EntityPage,
    summary="Rows of an entity",
    responses=problem_responses(401, 422),
)
def entity_rows(
    entity: EntityType,
    principal: Viewer,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Cursor = None,
    sku: KeyFilter = None,
    code: KeyFilter = None,
    warehouse_code: KeyFilter = None,
    price_tier: KeyFilter = None,
    email: KeyFilter = None,
    min_quantity: Annotated[
        int | None,
        Query(ge=1, le=MAX_INT, description="Pricing rows of this minimum quantity."),
    ] = None,
) -> dict[str, Any]:
    """Ordered by id. Filter by the entity's key columns, e.g.
    ``/entities/inventory?warehouse_code=WH-01`` or ``/entities/products?sku=A-1``; a key
    column the entity does not have (``code`` for products) filters nothing."""
    spec = spec_for(entity)
    given: dict[str, Any] = {
        "sku": sku,
        "code": code,
        "warehouse_code": warehouse_code,
        "price_tier": price_tier,
        "email": email.strip().lower() if email is not None else None,
        "min_quantity": min_quantity,
    }
    where = {
        column: value.strip() if isinstance(value, str) else value
        for column in spec.key
        if (value := given.get(column)) is not None
    }
    fields = spec.field_names
    rows, next_cursor = page_by_cursor(
        lambda after, how_many: engine.entity_rows(
            ctx,
            principal.org_id,
            entity.value,
            fields,
            after_id=after or 0,
            limit=how_many,
            where=where,
        ),
        cursor=cursor,
        limit=limit,
        position_of=lambda row: int(row[0]),
        read_position=lambda value: int_position(value or 0),
    )
    return {
        "entity_type": entity.value,
        "columns": list(fields),
        "items": [{"id": r[0], **dict(zip(fields, r[1:], strict=True))} for r in rows],
        "next_cursor": next_cursor,
    }
