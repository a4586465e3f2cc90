"""Plain values shared by every layer: enums and frozen dataclasses. Imports nothing internal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

__all__ = [
    "STATUS_LABELS",
    "EntityType",
    "FieldError",
    "OperationStatus",
    "OperationType",
    "RawRecord",
    "RecordAction",
    "RecordError",
    "RecordStatus",
    "Role",
]


class EntityType(StrEnum):
    WAREHOUSES = "warehouses"
    PRODUCTS = "products"
    INVENTORY = "inventory"
    PRICING = "pricing"
    CUSTOMERS = "customers"


class OperationType(StrEnum):
    IMPORT = "import"
    UPDATE = "update"
    DELETE = "delete"
    EXPORT = "export"


class OperationStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def can_roll_back(self) -> bool:
        return self in _ROLLBACKABLE

    @property
    def label(self) -> str:
        """How the dashboard names the status ("queued" rather than "pending")."""
        return _LABELS[self]


_FINAL = frozenset(
    {
        OperationStatus.COMPLETED,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
        OperationStatus.ROLLED_BACK,
    }
)
_ROLLBACKABLE = frozenset(
    {OperationStatus.COMPLETED, OperationStatus.FAILED, OperationStatus.CANCELLED}
)
_LABELS = {
    OperationStatus.PENDING: "queued",
    OperationStatus.PROCESSING: "running",
    OperationStatus.COMPLETED: "completed",
    OperationStatus.FAILED: "failed",
    OperationStatus.CANCELLED: "cancelled",
    OperationStatus.ROLLING_BACK: "rolling back",
    OperationStatus.ROLLED_BACK: "rolled back",
}
STATUS_LABELS: Mapping[str, str] = {status.value: status.label for status in OperationStatus}
"""Every status's label keyed by its plain value: what the dashboard's pages and script show."""


class RecordAction(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class RecordStatus(StrEnum):
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"
    CONFLICT = "conflict"


class Role(StrEnum):
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"


class RawRecord(NamedTuple):
    """One record as read from the file, before mapping and validation.

    ``row`` is the spreadsheet row (header = 1, first record = 2); ``line`` is the physical
    line (1-based) where the record starts. ``error`` is set when the record could not be
    read as a whole (wrong field count, unclosed quote, undecodable bytes); ``values`` then
    holds what could be read. (A named tuple: a million of them are made per million rows,
    and tuples are the cheapest objects to make.)
    """

    row: int
    line: int
    values: Sequence[str]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class FieldError:
    """A validation failure of one field (``field`` is the entity field name, or None)."""

    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class RecordError:
    """A failed record: where it is in the file, which column and value, and why."""

    row: int
    line: int
    column: str | None
    value: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "line": self.line,
            "column": self.column,
            "value": self.value,
            "message": self.message,
        }
