"""Query parameters read for what the document says they are, not for what pydantic could
make of them: a time is an ISO 8601 text (a number is not a time), a cursor is one this API
returned."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["CURSOR_FORMAT", "Cursor", "Timestamp"]

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
