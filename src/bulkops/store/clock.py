"""Time values as the store writes and returns them: always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

__all__ = ["aware", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: Any) -> Any:
    """SQLite returns naive datetimes (stored as UTC): give them their timezone back."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
