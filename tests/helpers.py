"""Small helpers for tests: write a CSV, run an operation, read a table back."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from bulkops.engine import Context, OperationConfig, create_operation, execute
from bulkops.entities import RecordValidator, spec_for
from bulkops.model import EntityType, FieldError, OperationType


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def queue(
    ctx: Context,
    org_id: int,
    operation: str,
    entity: str,
    path: Path | None = None,
    *,
    executor: Literal["inline", "worker"] = "inline",
    **config: Any,
) -> str:
    """Create the operation (pending); returns its id."""
    op = create_operation(
        ctx,
        org_id,
        operation_type=OperationType(operation),
        entity_type=EntityType(entity),
        config=OperationConfig(**config),
        source=path,
        file_name=path.name if path else None,
        executor=executor,
    )
    return str(op.id)


def run(
    ctx: Context,
    org_id: int,
    operation: str,
    entity: str,
    path: Path | None = None,
    **config: Any,
) -> dict[str, Any]:
    return execute(ctx, org_id, queue(ctx, org_id, operation, entity, path, **config))


def table(ctx: Context, org_id: int, entity: str) -> list[tuple[Any, ...]]:
    """Every row of the entity for the organization: (id, *fields), by id."""
    fields = spec_for(entity).field_names
    with ctx.store.transaction(org_id) as tx:
        return tx.rows.iter(entity, fields, limit=10_000_000)


def checksum(ctx: Context, org_id: int) -> str:
    """One hash over every entity table of the organization (ids and values)."""
    digest = hashlib.sha256()
    for entity in ("warehouses", "products", "inventory", "pricing", "customers"):
        digest.update(entity.encode())
        for row in table(ctx, org_id, entity):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def validate_records(
    validator: RecordValidator, rows: list[dict[str, str]]
) -> list[dict[str, Any] | list[FieldError]]:
    """``validator.validate_columns`` of records given as field -> raw cell (a missing field:
    a blank cell); each valid record as a dict in the validator's field order."""
    columns = [[row.get(name, "") for row in rows] for name in validator.fields]
    return [
        dict(zip(validator.fields, outcome, strict=True)) if isinstance(outcome, tuple) else outcome
        for outcome in validator.validate_columns(columns)
    ]
