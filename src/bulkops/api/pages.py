"""Opaque cursors for keyset pagination (base64url JSON, never offsets)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from .problems import InvalidParameters

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Any:
    if cursor is None or cursor == "":
        return None
    try:
        return orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, orjson.JSONDecodeError, ValueError):
        raise InvalidParameters(
            [{"field": "cursor", "message": "Not a cursor this API returned."}]
        ) from None
