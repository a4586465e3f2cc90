"""Creating, reading and steering operations (the part every door shares: CLI, API, workers)."""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bulkops.config import Settings
from bulkops.entities import map_header, spec_for
from bulkops.errors import (
    FileProblem,
    FileRejected,
    FileTooLarge,
    NotFound,
    UsageError,
)
from bulkops.formats import ReadLimits, ReadOptions, open_table, sniff_content
from bulkops.formats.options import check_encoding
from bulkops.model import EntityType, Operation, OperationStatus, OperationType
from bulkops.store import DuplicateRow, Store, Tx, utcnow

__all__ = [
    "COUNTERS",
    "IDEMPOTENCY_KEY_LIFETIME",
    "Context",
    "IdempotencyKeyReused",
    "OperationConfig",
    "create_operation",
    "get_operation",
    "operation_view",
]

COUNTERS = (
    "total_records",
    "processed_records",
    "successful_records",
    "failed_records",
    "unchanged_records",
    "created_records",
    "updated_records",
    "deleted_records",
)


@dataclass(frozen=True, slots=True)
class Context:
    """What every engine call needs: the store and the settings."""

    store: Store
    settings: Settings

    def read_limits(self) -> ReadLimits:
        s = self.settings
        return ReadLimits(
            max_file_bytes=s.max_file_bytes,
            max_field_bytes=s.max_field_bytes,
            max_columns=s.max_columns,
            max_rows=s.max_rows,
        )


class OperationConfig(BaseModel):
    """The options of an operation (CONTRACT section 2), validated at the door."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_size: int = Field(default=1000, ge=1, le=50_000)
    max_concurrent: int = Field(default=2, ge=1, le=32)
    validate_only: bool = False
    rollback_on_error: bool = False
    # A count of records: at most a 64-bit number (larger ones can be neither stored nor
    # encoded; any count beyond the file's records means "never stop").
    max_errors: int = Field(default=10_000, ge=0, le=2**63 - 1)
    mapping: dict[str, str] = Field(default_factory=dict)
    encoding: str | None = None
    delimiter: str | None = None
    sheet: str | None = Field(default=None, max_length=31)
    decimal_separator: Literal[".", ","] = "."
    filters: dict[str, str] = Field(default_factory=dict)
    format: Literal["csv", "xlsx"] = Field(
        default="csv", description="export only: the file written, CSV or an XLSX workbook"
    )
    #: The check (validate_only operation) this operation applies; set by applying it.
    checked_by: str | None = Field(default=None, min_length=36, max_length=36)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        # Checked with the other options (a parameter error at every door), not when the
        # file is opened.
        if value is None:
            return None
        try:
            return check_encoding(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None

    @classmethod
    def parse(cls, values: Mapping[str, Any]) -> OperationConfig:
        try:
            return cls.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(p) for p in e['loc'])}: "
                + (str(e["ctx"]["error"]) if e["type"] == "value_error" else e["msg"])
                for e in exc.errors(include_url=False)
            ]
            raise UsageError("Bad option: " + "; ".join(problems)) from exc

    def read_options(self) -> ReadOptions:
        delimiter = {"tab": "\t", "\\t": "\t"}.get(self.delimiter or "", self.delimiter)
        return ReadOptions(
            encoding=self.encoding,
            delimiter=delimiter,
            sheet=self.sheet,
            decimal_separator=self.decimal_separator,
        )


IDEMPOTENCY_KEY_LIFETIME = timedelta(hours=24)
"""How long an Idempotency-Key names its operation; an older key may be used again."""


class IdempotencyKeyReused(UsageError):
    """An Idempotency-Key sent again with another request (file, type, entity or option)."""

    http_status = 422
    title = "Idempotency-Key reused"

    def __init__(self, operation_id: str, differences: list[dict[str, Any]]) -> None:
        self.operation_id = operation_id
        self.differences = differences
        super().__init__(
            f"The Idempotency-Key was used for operation {operation_id} with a different "
            "request; send this request with a new key."
        )


def _request_parts(
    file_sha256: str | None,
    operation_type: OperationType,
    entity_type: EntityType,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    """What makes two requests the same request (the file's name and the caller do not)."""
    return {
        "file_sha256": file_sha256,
        "operation_type": operation_type.value,
        "entity_type": entity_type.value,
        "config": dict(config),
    }


def _fingerprint(parts: Mapping[str, Any]) -> str:
    # Canonical JSON: sorted keys, no spaces, so equal requests hash equally in any process.
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _differences(first: Operation, parts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the new request changes from the first one, one entry per field or option."""
    try:
        first_config = OperationConfig.model_validate(first.config).model_dump(mode="json")
    except ValidationError:  # stored by an older version with other options: compare as is
        first_config = dict(first.config)
    before = _request_parts(
        first.file_sha256, first.operation_type, first.entity_type, first_config
    )
    named = {k: v for k, v in before.items() if k != "config"} | before["config"]
    now = {k: v for k, v in parts.items() if k != "config"} | parts["config"]
    return [
        {
            "code": "idempotency_key_reused",
            "field": "file" if name == "file_sha256" else name,
            "message": "another file than the first request's"
            if name == "file_sha256"
            else f"{orjson.dumps(named.get(name)).decode()} in the first request",
        }
        for name in dict.fromkeys([*named, *now])
        if named.get(name) != now.get(name)
    ]



def uploaded_name(name: str | None) -> str | None:
    """The file name exactly as uploaded (HTML and all: whoever displays it escapes it), cut
    to the column's 255 characters. The stored file has a generated name of its own."""
    return name[:255] if name else None


_STORE_BLOCK_BYTES = 256 * 1024


def _blocks(handle: BinaryIO) -> Iterator[memoryview]:
    """The stream's bytes, block by block, read into one buffer again and again where the
    stream can (a new megabyte for every block cost page faults: the copy of a 120 MB file
    took up to 0.5 s instead of 0.12 s, measured). Each block is valid until the next."""
    readinto = getattr(handle, "readinto", None)
    if readinto is None:
        while data := handle.read(_STORE_BLOCK_BYTES):
            yield memoryview(data)
        return
    buffer = bytearray(_STORE_BLOCK_BYTES)
    view = memoryview(buffer)
    while read := readinto(buffer):
        yield view[:read]


def store_file(
    ctx: Context, org_id: int, source: Path | BinaryIO, *, move: bool = False
) -> tuple[Path, int, str]:
    """Put the file into the organization's storage under a generated name.

    Returns (stored path, size in bytes, SHA-256). Stops as soon as the size limit is passed.
    With ``move`` (a file already spooled on the same file system, as uploads are) the file is
    read once for its checksum and renamed instead of copied.
    """
    folder = ctx.settings.data_dir / "files" / str(org_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex}.csv"
    digest = hashlib.sha256()
    size = 0
    limit = ctx.settings.max_file_bytes
    handle = source.open("rb") if isinstance(source, Path) else source
    try:
        with contextlib.nullcontext() if move else target.open("wb") as out:
            for block in _blocks(handle):
                if size == 0:
                    sniff_content(bytes(block[: 64 * 1024]))
                size += len(block)
                if size > limit:
                    raise _too_large(limit)
                digest.update(block)
                if out is not None:
                    out.write(block)
        if move and isinstance(source, Path):
            source.replace(target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    finally:
        if isinstance(source, Path):
            handle.close()
    return target, size, digest.hexdigest()


def _too_large(limit: int) -> FileRejected:
    return FileTooLarge(
        FileProblem(
            code="file_too_large",
            message=f"The file is larger than the limit of {limit:,} bytes. "
            "Split it into smaller files.",
        )
    )


def create_operation(
    ctx: Context,
    org_id: int,
    *,
    operation_type: OperationType,
    entity_type: EntityType,
    config: OperationConfig,
    source: Path | BinaryIO | None = None,
    file_name: str | None = None,
    created_by: int | None = None,
    idempotency_key: str | None = None,
    executor: Literal["inline", "worker"] = "inline",
    move_source: bool = False,
    actor: str | None = None,
    upload_id: str | None = None,
) -> Operation:
    """Store the file, check its header and queue the operation as ``pending``.

    ``executor`` says who runs it: the caller itself (``inline``, as the CLI does) or the
    service's workers (``worker``). ``move_source`` takes over a spooled upload instead of
    copying it.

    Everything that makes the whole file unusable is raised here (FileRejected and its
    subclasses), before any operation exists.

    With ``idempotency_key``, a live operation that holds the key is returned instead when it
    was made by the same request (file checksum, type, entity, options), and
    :class:`IdempotencyKeyReused` is raised when by another; the file is checked and stored
    first either way, since its checksum is part of the request.

    With ``upload_id`` instead of ``source``, the operation takes over the file of that upload
    (stored already: nothing is copied), with the upload's read options for those ``config``
    does not set, and the upload records the operation.
    """
    spec = spec_for(entity_type)
    header: list[str] | None = None
    total_records: int | None = None
    stored: tuple[Path, int, str] | None = None
    owned = True  # the stored file is this call's own: removed when the call fails
    if upload_id is not None and operation_type is not OperationType.EXPORT:
        if source is not None:
            raise UsageError("Send either a file or an upload_id, not both.")
        with ctx.store.transaction(org_id) as tx:
            upload = tx.uploads.get(upload_id)
        if upload is None or not Path(upload["file_path"]).is_file():
            raise NotFound(f"No upload {upload_id}.")
        stored = (
            Path(upload["file_path"]),
            upload["file_size_bytes"],
            upload["file_sha256"],
        )
        owned = False
        file_name = file_name or upload["file_name"]
        kept = {
            k: v
            for k, v in upload["options"].items()
            if k in type(config).model_fields and k not in config.model_fields_set
        }
        config = OperationConfig.model_validate({**config.model_dump(exclude_unset=True), **kept})
    if operation_type is not OperationType.EXPORT:
        if source is None and stored is None:
            raise UsageError(f"A file is needed for an {operation_type.value} operation.")
        if stored is None:
            assert source is not None
            stored = store_file(ctx, org_id, source, move=move_source)
        try:
            with open_table(stored[0], config.read_options(), ctx.read_limits()) as table:
                header = list(table.header)
                map_header(spec, header, operation_type, config.mapping)
                # Exact, before the first chunk, and with the row limit enforced.
                total_records = table.count_records()
        except BaseException:
            if owned:
                stored[0].unlink(missing_ok=True)
            raise
    else:
        for column in config.filters:
            if column not in spec.field_names:
                raise UsageError(
                    f"Cannot filter {entity_type.value} by '{column}'; "
                    f"use one of {', '.join(spec.field_names)}."
                )
    op_id = str(uuid.uuid4())
    now = utcnow()
    parts = _request_parts(
        stored[2] if stored else None,
        operation_type,
        entity_type,
        config.model_dump(mode="json"),
    )
    values: dict[str, Any] = {
        "id": op_id,
        "operation_type": operation_type.value,
        "entity_type": entity_type.value,
        "status": OperationStatus.PENDING.value,
        "file_name": uploaded_name(
            file_name or (source.name if isinstance(source, Path) else None)
        ),
        "file_path": str(stored[0]) if stored else None,
        "file_size_bytes": stored[1] if stored else None,
        "file_sha256": stored[2] if stored else None,
        "total_records": total_records,
        "created_at": now,
        "created_by": created_by,
        "actor": actor,
        "validate_only": config.validate_only,
        "idempotency_key": idempotency_key,
        "idempotency_fingerprint": _fingerprint(parts) if idempotency_key else None,
        "executor": executor,
        "config": config.model_dump_json(),
        "header": orjson.dumps(header).decode() if header is not None else None,
        "results": "{}",
    }
    insert = partial(
        _insert_once, ctx, org_id, values, idempotency_key, parts, now,
        used_upload=upload_id if not owned else None,
    )
    try:
        try:
            op, made = insert()
        except DuplicateRow:
            if not idempotency_key:
                raise
            # The same key sent twice at once: the other request's operation was committed
            # between this one's look-up and its insert; the look-up again returns it (or
            # says the key is taken by another request).
            op, made = insert()
    except BaseException:
        if stored and owned:
            stored[0].unlink(missing_ok=True)
        raise
    if not made and stored and owned:
        stored[0].unlink(missing_ok=True)  # the first request's operation has its own file
    return op


def _insert_once(
    ctx: Context,
    org_id: int,
    values: dict[str, Any],
    key: str | None,
    parts: Mapping[str, Any],
    now: datetime,
    *,
    used_upload: str | None,
) -> tuple[Operation, bool]:
    """Insert the operation, or find the one that already holds ``key`` for this request;
    the operation and whether it was inserted here."""
    with ctx.store.transaction(org_id, write=True) as tx:
        if key and (first := _first_with_key(tx, key, parts, now)):
            return first, False
        tx.operations.insert(values)
        if used_upload is not None:
            tx.uploads.mark_used(used_upload, values["id"])
        tx.events.add(values["id"], "status", {"status": OperationStatus.PENDING})
        return tx.operations.require(values["id"]), True


def _first_with_key(
    tx: Tx, key: str, parts: Mapping[str, Any], now: datetime
) -> Operation | None:
    """The live operation that already holds ``key`` for this same request, if any.

    A key older than :data:`IDEMPOTENCY_KEY_LIFETIME` is released (the key is unique in the
    organization), and the new request makes a new operation. The same key with another
    request raises :class:`IdempotencyKeyReused`. An operation made before fingerprints were
    kept matches any request, as it did then.
    """
    entry = tx.operations.idempotency_entry(key)
    if entry is None:
        return None
    first, fingerprint = entry
    if first.created_at <= now - IDEMPOTENCY_KEY_LIFETIME:
        tx.operations.release_idempotency_key(first.id)
        return None
    if fingerprint is None or fingerprint == _fingerprint(parts):
        return first
    raise IdempotencyKeyReused(first.id, _differences(first, parts))


def get_operation(ctx: Context, org_id: int, op_id: str) -> Operation:
    with ctx.store.transaction(org_id) as tx:
        op = tx.operations.require(op_id)
    return op


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def percentage(op: Operation) -> float:
    """How far the operation got, in percent of its records (of its file's bytes while the
    total is not known yet)."""
    total = op.total_records
    processed = op.processed_records
    status = op.status
    if status in (OperationStatus.COMPLETED, OperationStatus.ROLLED_BACK) or (
        total and processed >= total
    ):
        return 100.0 if status is not OperationStatus.PENDING else 0.0
    if status in (OperationStatus.FAILED, OperationStatus.CANCELLED) and total:
        return round(100.0 * processed / total, 1)
    if op.file_size_bytes and op.bytes_processed:
        return round(min(99.9, 100.0 * op.bytes_processed / op.file_size_bytes), 1)
    if total:
        return round(min(99.9, 100.0 * processed / total), 1)
    return 0.0


def operation_view(op: Operation) -> dict[str, Any]:
    """The operation object of CONTRACT section 5 (JSON-ready, snake_case)."""
    return {
        "id": op.id,
        "operation_type": op.operation_type.value,
        "entity_type": op.entity_type.value,
        "status": op.status.value,
        "outcome": op.outcome.value if op.outcome is not None else None,
        "file_name": op.file_name,
        "file_size_bytes": op.file_size_bytes,
        "file_sha256": op.file_sha256,
        **{name: getattr(op, name) for name in COUNTERS},
        "rolled_back_records": op.rolled_back_records,
        "conflict_records": op.conflict_records,
        "percentage": percentage(op),
        "estimated_completion": _iso(op.estimated_completion),
        "started_at": _iso(op.started_at),
        "completed_at": _iso(op.completed_at),
        "created_at": _iso(op.created_at),
        "created_by": op.created_by,
        "actor": op.actor,
        "cancelled_at": _iso(op.cancelled_at),
        "cancelled_by": op.cancelled_by,
        "config": op.config,
        "results": op.results,
    }
