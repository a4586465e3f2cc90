"""The one place where driver errors become :class:`StoreError` or :class:`DuplicateRow`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from bulkops.errors import StoreError

__all__ = ["DuplicateRow", "translate"]


class DuplicateRow(StoreError):
    """A batched write hit a unique or foreign key constraint (the engine retries per record)."""


@contextmanager
def translate() -> Iterator[None]:
    """Turn SQLAlchemy's driver errors raised inside the block into the store's errors."""
    try:
        yield
    except DuplicateRow:
        raise
    except OperationalError as exc:
        raise StoreError(f"The database is not available: {exc.orig}") from exc
    except DBAPIError as exc:
        if isinstance(exc, IntegrityError):
            raise DuplicateRow(str(exc.orig)) from exc
        raise StoreError(f"Database error: {exc.orig}") from exc
