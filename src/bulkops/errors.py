"""The one exception tree of bulkops.

Row failures are values (:class:`bulkops.model.RecordError`), not exceptions. Exceptions are
for operation-level faults; each class knows the HTTP status and the CLI exit code it maps to.

    BulkopsError                      500 / 1
    ├── UsageError                    400 / 2   bad parameters or configuration
    │   └── NotFound                  404 / 2   no such operation, entity, organization, user
    ├── PermissionDenied              403 / 2   the role may not do this
    ├── AuthenticationFailed          401 / 2
    ├── Conflict                      409 / 1   the operation's state does not allow it
    ├── FileRejected                  422 / 2   the file as a whole cannot be used
    │   ├── FileTooLarge              413 / 2
    │   └── UnsupportedFile           415 / 2   binary, archive, PDF, image
    └── StoreError                    503 / 1   the database failed (translated driver error)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "AuthenticationFailed",
    "BulkopsError",
    "Conflict",
    "FileProblem",
    "FileRejected",
    "FileTooLarge",
    "NotFound",
    "PermissionDenied",
    "StoreError",
    "UnsupportedFile",
    "UsageError",
]


class BulkopsError(Exception):
    http_status = 500
    exit_code = 1
    title = "Internal error"


class UsageError(BulkopsError):
    http_status = 400
    exit_code = 2
    title = "Bad request"


class NotFound(UsageError):
    http_status = 404
    title = "Not found"


class PermissionDenied(BulkopsError):
    http_status = 403
    exit_code = 2
    title = "Forbidden"


class AuthenticationFailed(BulkopsError):
    http_status = 401
    exit_code = 2
    title = "Unauthorized"


class Conflict(BulkopsError):
    http_status = 409
    exit_code = 1
    title = "Conflict"


@dataclass(frozen=True, slots=True)
class FileProblem:
    """One reason a file is rejected; ``column`` names the header cell when there is one."""

    code: str
    message: str
    column: str | None = None
    line: int | None = None
    suggestion: str | None = field(default=None)
    # The option that settles it (``"delimiter"``, ``"encoding"``, ``"mapping"``); each door
    # words the remedy its way: the CLI names its flag (--map 'x=y'), the API its field
    # (``mapping``), the dashboard its control. ``message`` says what is wrong and where.
    hint_field: str | None = None
    # The value to give it, when known (``"windows-1252"`` for ``encoding``).
    hint_value: str | None = None


class FileRejected(BulkopsError):
    """The file cannot be processed at all; nothing was changed."""

    http_status = 422
    exit_code = 2
    title = "File rejected"

    def __init__(self, problems: list[FileProblem] | FileProblem) -> None:
        self.problems = [problems] if isinstance(problems, FileProblem) else list(problems)
        super().__init__("; ".join(p.message for p in self.problems))

    def __reduce__(self) -> tuple[type[FileRejected], tuple[list[FileProblem]]]:
        # Rebuilt from its problems (it crosses process boundaries as a pickle).
        return (type(self), (self.problems,))


class FileTooLarge(FileRejected):
    http_status = 413
    title = "File too large"


class UnsupportedFile(FileRejected):
    http_status = 415
    title = "Unsupported file type"


class StoreError(BulkopsError):
    http_status = 503
    title = "Database error"
