"""Query parameters read for what the document says they are, not for what pydantic could
make of them: a time is an ISO 8601 text (a number is not a time), a cursor is one this API
returned."""

from __future__ import annotations

from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from .problems import InvalidParameters

__all__ = ["CURSOR_FORMAT", "Cursor", "Timestamp", "refuse_unknown_query_parameters"]

CURSOR_FORMAT = "cursor"
"""The OpenAPI ``format`` of a cursor: opaque, made by this API (``next_cursor``)."""


def _not_a_number(value: Any) -> Any:
    # Pydantic reads "0.5" or "1700000000" as seconds since 1970; a person never means that.
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise PydanticCustomError(
            "datetime_not_number",
            "'{text}' is a number, not a time; give an ISO 8601 date or date and time.",
            {"text": value},
        )
    return value


Timestamp = Annotated[
    datetime | None,
    BeforeValidator(_not_a_number),
    Query(description="ISO 8601 date or date and time; without an offset it is UTC."),
]
"""An optional time in a query (``created_after``)."""

Cursor = Annotated[
    str | None,
    Query(
        max_length=500,
        description="`next_cursor` of the previous page; leave out for the first page.",
        json_schema_extra={"format": CURSOR_FORMAT},
    ),
]
"""The position of a page in a list (:mod:`.pages`)."""


def _takes_many(annotation: Any) -> bool:
    """Whether a query parameter of this type is a list (``?status=a&status=b``)."""
    origin = get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return True
    if origin in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return False


def _declared(dependant: Dependant) -> dict[str, bool]:
    """The route's query parameters: name -> whether it takes one value (not a list)."""
    names = {
        param.alias: not _takes_many(param.field_info.annotation)
        for param in dependant.query_params
    }
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


_declared_by_route: dict[int, dict[str, bool]] = {}


def refuse_unknown_query_parameters(request: Request) -> None:
    """A query parameter the route does not declare, or one of a single value given twice,
    is a 422 naming it, as the document says (its parameters are all there is), rather than
    silently ignored: a misspelt filter (``?stauts=failed``) would otherwise return
    everything, and of ``?sku=A&sku=B`` one value would be dropped."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _declared_by_route.get(id(route))
    if known is None:
        known = _declared_by_route.setdefault(id(route), _declared(route.dependant))
    problems = []
    for name in dict.fromkeys(request.query_params):
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            problems.append(
                {"field": name, "message": f"is not a parameter here (they are: {listed})."}
            )
        elif known[name] and len(request.query_params.getlist(name)) > 1:
            problems.append({"field": name, "message": "takes one value; it was given twice."})
    if problems:
        raise InvalidParameters(problems)
