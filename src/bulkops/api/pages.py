"""Opaque cursors for keyset pagination (base64url JSON, never offsets) and the page they make.

Every list of the API pages the same way: the cursor is decoded into the position of the last
row already seen, :func:`bulkops.engine.keyset_page` fetches the next rows, and the position of
the new last row becomes the next cursor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from bulkops import engine

from .problems import InvalidParameters

__all__ = ["decode_cursor", "encode_cursor", "int_position", "page_by_cursor"]

Row = TypeVar("Row")
Position = TypeVar("Position")


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def _not_a_cursor() -> InvalidParameters:
    return InvalidParameters([{"field": "cursor", "message": "Not a cursor this API returned."}])


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None or cursor == "":
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise _not_a_cursor() from None


def int_position(value: Any) -> int:
    """The position of a list ordered by a whole number (a row number or an id)."""
    if not isinstance(value, int):
        raise TypeError(value)
    return value


def page_by_cursor(
    fetch: Callable[[Position | None, int], Sequence[Row]],
    *,
    cursor: str | None,
    limit: int,
    position_of: Callable[[Row], Position],
    read_position: Callable[[Any], Position],
    to_json: Callable[[Position], Any] = lambda position: position,
) -> tuple[list[Row], str | None]:
    """The rows after ``cursor`` (``fetch(position, how_many)``) and the next page's cursor.

    ``read_position`` turns a decoded cursor back into a position (raising TypeError,
    ValueError, IndexError or KeyError for one this API did not make); ``to_json`` is its
    inverse.
    """
    decoded = decode_cursor(cursor)
    after: Position | None = None
    if decoded is not None:
        try:
            after = read_position(decoded)
        except (TypeError, ValueError, IndexError, KeyError):
            raise _not_a_cursor() from None
    page = engine.keyset_page(lambda how_many: fetch(after, how_many), limit, position_of)
    following = page.next_position
    return page.items, encode_cursor(to_json(following)) if following is not None else None
