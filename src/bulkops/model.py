"""Plain values shared by every layer: enums and frozen dataclasses. Imports nothing internal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

__all__ = [
    "RECORD_ERROR",
    "RECORD_LINE",
    "RECORD_ROW",
    "RECORD_VALUES",
    "STATUS_LABELS",
    "EntityType",
    "FieldError",
    "Operation",
    "OperationStatus",
    "OperationType",
    "Outcome",
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

    @property
    def changes(self) -> tuple[str, ...]:
        """What an operation of this type can do to a record, beside failing it (``create``,
        ``update``, ``delete``, ``unchanged``): an import never deletes. Every door shows
        these counts, and any other only when it is not zero."""
        return _CHANGES[self]


_CHANGES = {
    OperationType.IMPORT: ("create", "update", "unchanged"),
    OperationType.UPDATE: ("update", "unchanged"),
    OperationType.DELETE: ("delete",),
    OperationType.EXPORT: (),
}


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
    def is_active(self) -> bool:
        """A process works on it, under its lease (``processing``, ``rolling_back``)."""
        return self in _ACTIVE

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
_ACTIVE = frozenset({OperationStatus.PROCESSING, OperationStatus.ROLLING_BACK})
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


class Outcome(StrEnum):
    """How an operation went, in one word (None while it runs)."""

    SUCCEEDED = "succeeded"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    CHECKED = "checked"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"

    @property
    def label(self) -> str:
        return _OUTCOME_LABELS[self]


_OUTCOME_LABELS = {
    Outcome.SUCCEEDED: "succeeded",
    Outcome.COMPLETED_WITH_ERRORS: "completed with errors",
    Outcome.CHECKED: "checked",
    Outcome.FAILED: "failed",
    Outcome.CANCELLED: "cancelled",
    Outcome.ROLLED_BACK: "rolled back",
}


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


#: A RawRecord's fields as getters that run in C, for whole chunks (``map(RECORD_ROW, chunk)``).
RECORD_ROW, RECORD_LINE, RECORD_VALUES, RECORD_ERROR = (
    itemgetter(RawRecord._fields.index(name)) for name in ("row", "line", "values", "error")
)


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


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation as the database has it (``operations`` row), typed.

    ``config``, ``results`` and ``header`` are stored as JSON text and come parsed. Made by
    :meth:`from_row` in the store; changed only through the store (it is a value: a change
    gives a new one).
    """

    id: str
    organization_id: int
    operation_type: OperationType
    entity_type: EntityType
    status: OperationStatus
    created_at: datetime
    config: dict[str, Any]
    results: dict[str, Any]
    header: list[str] | None = None
    file_name: str | None = None
    file_path: str | None = None
    file_size_bytes: int | None = None
    file_sha256: str | None = None
    total_records: int | None = None
    processed_records: int = 0
    successful_records: int = 0
    failed_records: int = 0
    unchanged_records: int = 0
    created_records: int = 0
    updated_records: int = 0
    deleted_records: int = 0
    rolled_back_records: int = 0
    conflict_records: int = 0
    bytes_processed: int = 0
    estimated_completion: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    created_by: int | None = None
    cancel_requested_at: datetime | None = None
    cancel_rollback: bool = False
    cancelled_at: datetime | None = None
    cancelled_by: int | None = None
    rollback_requested_by: int | None = None
    rollback_force: bool = False
    rollback_started_at: datetime | None = None
    rollback_completed_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    idempotency_key: str | None = None
    executor: str = "inline"
    actor: str | None = None
    chunk_count: int | None = None
    attempts: int = 0
    differs_from_check: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Operation:
        """From a database row (JSON columns as text, enums as their values)."""
        values = {name: row[name] for name in _OPERATION_FIELDS if name in row}
        values["operation_type"] = OperationType(row["operation_type"])
        values["entity_type"] = EntityType(row["entity_type"])
        values["status"] = OperationStatus(row["status"])
        values["config"] = orjson.loads(row["config"]) if row.get("config") else {}
        values["results"] = orjson.loads(row["results"]) if row.get("results") else {}
        values["header"] = orjson.loads(row["header"]) if row.get("header") else None
        for name in _DEFAULTED_COUNTERS:
            if values.get(name) is None:
                values[name] = 0
        return cls(**values)

    @property
    def validate_only(self) -> bool:
        return bool(self.config.get("validate_only"))

    @property
    def outcome(self) -> Outcome | None:
        """How it went: a completed operation with failed records did not simply succeed."""
        if self.status is OperationStatus.COMPLETED:
            if self.validate_only:
                return Outcome.CHECKED
            return Outcome.COMPLETED_WITH_ERRORS if self.failed_records else Outcome.SUCCEEDED
        return _OUTCOME_OF_STATUS.get(self.status)


_OPERATION_FIELDS = tuple(f.name for f in fields(Operation))
_DEFAULTED_COUNTERS = (
    "processed_records", "successful_records", "failed_records", "unchanged_records",
    "created_records", "updated_records", "deleted_records", "rolled_back_records",
    "conflict_records", "bytes_processed", "attempts", "differs_from_check",
)
_OUTCOME_OF_STATUS = {
    OperationStatus.FAILED: Outcome.FAILED,
    OperationStatus.CANCELLED: Outcome.CANCELLED,
    OperationStatus.ROLLED_BACK: Outcome.ROLLED_BACK,
}
