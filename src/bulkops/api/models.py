"""The JSON the API accepts and returns (separate in and out models, snake_case).

Bodies are read strictly: a boolean is ``true`` or ``false`` and a whole number is a JSON
integer, never ``0``, ``"yes"`` or ``"5"`` (the document says boolean and integer).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from bulkops.model import Outcome, Role

__all__ = [
    "CancelIn",
    "ChangeOut",
    "ChangePage",
    "EntityPage",
    "ErrorPage",
    "ErrorRowOut",
    "FieldChangeOut",
    "HealthOut",
    "MappingOut",
    "MappingPage",
    "MappingSuggestionOut",
    "MeOut",
    "OperationOut",
    "OperationPage",
    "PreviewIn",
    "PreviewRecordOut",
    "RecordOut",
    "RecordPage",
    "RollbackIn",
    "TokenCreatedOut",
    "TokenIn",
    "TokenOut",
    "TokenPage",
    "UploadOut",
    "UserCreatedOut",
    "UserIn",
    "UserOut",
    "UserPage",
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OperationOut(BaseModel):
    """The operation object of CONTRACT section 5."""

    id: str
    operation_type: str
    entity_type: str
    status: str
    outcome: Outcome | None = Field(
        description="How it went: succeeded, completed_with_errors, checked (a completed dry "
        "run), failed, cancelled or rolled_back; null while it runs."
    )
    file_name: str | None
    file_size_bytes: int | None
    file_sha256: str | None
    total_records: int | None
    processed_records: int
    successful_records: int
    failed_records: int
    unchanged_records: int
    created_records: int
    updated_records: int
    deleted_records: int
    rolled_back_records: int
    conflict_records: int
    percentage: float
    estimated_completion: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime
    created_by: int | None
    actor: str | None = Field(
        description="Who started it: the user's e-mail (API, dashboard, CLI with --as) or "
        "cli:<os-user>@<host> for the command line"
    )
    cancelled_at: datetime | None
    cancelled_by: int | None
    config: dict[str, Any]
    results: dict[str, Any]


class OperationPage(BaseModel):
    items: list[OperationOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class CancelIn(_In):
    rollback: StrictBool = Field(
        default=False, description="Roll back what was applied, at once, after stopping."
    )


class RollbackIn(_In):
    force: StrictBool = Field(
        default=False, description="Overwrite rows changed since the operation."
    )


class ErrorRowOut(BaseModel):
    row: int = Field(description="Spreadsheet row: the header is row 1.")
    line: int = Field(description="Physical line where the record starts.")
    errors: list[dict[str, Any]] = Field(description="column, value and message of each problem")
    values: list[str] = Field(description="The record's original values, in header order.")


class ErrorPage(BaseModel):
    header: list[str]
    items: list[ErrorRowOut]
    next_cursor: str | None


class RecordOut(BaseModel):
    id: int
    record_index: int = Field(description="The spreadsheet row of the record.")
    entity_id: int | None
    key: dict[str, Any] = Field(
        description="The record's natural key by field (sku; sku and warehouse_code; …)"
    )
    action: str
    before_data: dict[str, Any] | None
    after_data: dict[str, Any] | None
    status: str
    error: str | None


class RecordPage(BaseModel):
    items: list[RecordOut]
    next_cursor: str | None


class EntityPage(BaseModel):
    entity_type: str
    columns: list[str]
    items: list[dict[str, Any]] = Field(description="`id` and the entity's columns.")
    next_cursor: str | None


class HealthOut(BaseModel):
    status: str
    database: str


class MeOut(BaseModel):
    user_id: int | None
    email: str
    role: Role
    organization_id: int


class UserIn(_In):
    email: str = Field(
        min_length=3,
        max_length=254,
        # Documents the service's own check (400 without an @), which stays where it is.
        json_schema_extra={"pattern": "@"},
    )
    role: Role = Role.EDITOR
    password: str | None = Field(
        default=None,
        min_length=10,
        max_length=1024,
        description="At least 10 characters; when left out one is generated and shown once.",
    )


class UserOut(BaseModel):
    id: int
    email: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None


class UserCreatedOut(UserOut):
    password: str | None = Field(description="The generated password, shown once (or null).")


class UserPage(BaseModel):
    items: list[UserOut]


class TokenIn(_In):
    name: str = Field(default="api", min_length=1, max_length=100)
    user_id: StrictInt | None = Field(
        default=None,
        ge=1,
        # The largest integer a JSON number holds exactly: above it a client's 2**62 + 95
        # and 2**62 are one double, so no limit there could be told truthfully.
        le=2**53 - 1,
        description="Whose token (a user of your organization); default: yours.",
    )


class TokenOut(BaseModel):
    id: int
    user_id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The token, shown once; only its hash is stored.")


class TokenPage(BaseModel):
    items: list[TokenOut]


# -- check, then apply (CONTRACT section 7) ------------------------------------------------------


class PreviewRecordOut(BaseModel):
    row: int = Field(description="Spreadsheet row: the header is row 1.")
    line: int = Field(description="Physical line where the record starts.")
    cells: list[str] = Field(description="The record's cells as read.")
    error: str | None = Field(description="Why the record cannot be read, if it cannot.")


class MappingSuggestionOut(BaseModel):
    header: str = Field(description="The header cell as read.")
    field: str | None = Field(description="The suggested field; null: the column is ignored.")
    how: str = Field(
        description="given (the preview's mapping), saved (a remembered mapping), exact, "
        "case_or_space, similar (see score) or none"
    )
    score: float | None = Field(description="For similar: the similarity, 0..1 (at least 0.6).")


class UploadOut(BaseModel):
    """The upload object: the stored file, how it is read, a preview and a suggested mapping."""

    id: str
    entity_type: str
    operation_type: str
    file_name: str | None
    file_size_bytes: int
    file_sha256: str
    format: str = Field(description="csv or xlsx")
    encoding: str | None = Field(description="As detected or given.")
    encoding_detected: bool = Field(
        default=False,
        description="True when the file is not UTF-8 and `encoding` is the one it most "
        "likely is (see `notes`), proposed for the review",
    )
    notes: list[str] = Field(
        default_factory=list, description="What the reading found, for the person reviewing it."
    )
    delimiter: str | None = Field(description="As detected or given (CSV).")
    decimal_separator: str
    sheet: str | None
    sheets: list[str] | None = Field(description="The workbook's sheets (XLSX).")
    header: list[str]
    preview: list[PreviewRecordOut] = Field(description="The first 20 records as read.")
    mapping: list[MappingSuggestionOut] = Field(description="One entry per header column.")
    missing_required: list[str] = Field(description="Required fields no column maps to.")
    other_entity: str | None = Field(
        default=None,
        description="Where columns are unknown or missing: another entity whose columns are "
        "all the file's, with every column it needs (a file chosen for the wrong entity).",
    )
    saved_mapping_id: int | None = Field(description="The remembered mapping suggested.")
    suggested_mapping: dict[str, str] = Field(
        description="The `mapping` option that reads the columns as suggested."
    )
    created_at: datetime
    expires_at: datetime | None = Field(description="When it is deleted unless used.")
    used_by_operation: str | None


class PreviewIn(_In):
    """Read the upload again another way; a field left out keeps its value."""

    encoding: str | None = Field(default=None, max_length=64)
    delimiter: str | None = Field(default=None, pattern=r"^(,|;|\||tab|\t)$")
    decimal_separator: str | None = Field(default=None, pattern=r"^[.,]$")
    sheet: str | None = Field(default=None, min_length=1, max_length=31)
    mapping: dict[str, str] | None = Field(
        default=None, description='header -> field, or "" to ignore the column'
    )


class MappingOut(BaseModel):
    id: int
    entity_type: str
    header: list[str]
    mapping: dict[str, str]
    created_at: datetime
    updated_at: datetime
    updated_by: int | None
    operation_id: str | None = Field(description="The operation it was remembered from.")


class MappingPage(BaseModel):
    items: list[MappingOut]
    next_cursor: str | None


class FieldChangeOut(BaseModel):
    field: str
    current: Any = Field(description="The stored value (null for a create).")
    new: Any = Field(description="The value the operation would write.")


class ChangeOut(BaseModel):
    row: int = Field(description="Spreadsheet row: the header is row 1.")
    action: str = Field(description="create, update or delete")
    key: dict[str, Any] = Field(description="The record's natural key.")
    changes: list[FieldChangeOut] = Field(
        description="An update's changed fields; a create's values; none for a delete."
    )


class ChangePage(BaseModel):
    items: list[ChangeOut]
    next_cursor: str | None
