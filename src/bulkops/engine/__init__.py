"""Operations: run, chunk, roll back, cancel, resume, export, and the accounts behind them."""

from __future__ import annotations

from typing import Any

from bulkops.engine.accounts import (
    LOGIN_FAILURE_LIMIT,
    LOGIN_FAILURE_WINDOW,
    LoginThrottled,
    Principal,
    Starter,
    authenticate_password,
    authenticate_token,
    cli_starter,
    create_organization,
    create_token,
    create_user,
    generate_password,
    log_in,
    resolve_organization,
    set_password,
)
from bulkops.engine.changes import (
    ACTIONS,
    ChangePosition,
    iter_planned_changes,
    planned_change_counts,
    planned_changes,
    write_planned_changes,
)
from bulkops.engine.checks import apply_check
from bulkops.engine.export import export_path, run_export
from bulkops.engine.fanout import ChunkSender, apply_chunk
from bulkops.engine.leases import expire_dead_leases
from bulkops.engine.lifecycle import (
    ProgressCallback,
    cancel_interrupted,
    process_owner,
    request_cancel,
)
from bulkops.engine.operations import (
    IDEMPOTENCY_KEY_LIFETIME,
    Context,
    IdempotencyKeyReused,
    OperationConfig,
    create_operation,
    get_operation,
    operation_view,
)
from bulkops.engine.queries import (
    MIN_ID_PREFIX,
    OperationTotals,
    Page,
    audit_records,
    entity_rows,
    error_rows,
    events_after,
    keyset_page,
    list_operations,
    listen_for_events,
    live_token,
    mark_token_used,
    operation_by_idempotency_key,
    operation_id_from_prefix,
    operation_totals,
    operation_with_latest_event,
    organization_token,
    organization_tokens,
    organization_user,
    organization_users,
    revoke_token,
)
from bulkops.engine.reports import (
    write_conflict_report,
    write_error_report,
    write_error_report_xlsx,
    write_template,
    write_template_xlsx,
)
from bulkops.engine.rollback import (
    queue_rollback,
    request_rollback,
    rollback_applied,
    rollback_operation,
)
from bulkops.engine.run import run_operation
from bulkops.engine.scheduling import blocker
from bulkops.engine.setup import (
    RunnableOperations,
    close_context,
    database_reachable,
    find_user_by_email,
    list_organizations,
    migrate_schema,
    missing_database,
    open_context,
    pending_worker_operations,
    release_lease,
    runnable_operations,
    setup_database_roles,
    uses_postgresql,
)
from bulkops.engine.uploads import (
    PREVIEW_RECORDS,
    SIMILAR_THRESHOLD,
    UPLOAD_OPTIONS,
    UploadSweeper,
    create_upload,
    delete_expired_uploads,
    forget_mapping,
    get_upload,
    list_mappings,
    preview_upload,
    saved_mapping_for_file,
    suggest_mapping,
)
from bulkops.entities import normalised_cell as normalised_header_cell
from bulkops.errors import Conflict
from bulkops.model import Operation, OperationStatus, OperationType

__all__ = [
    "ACTIONS",
    "IDEMPOTENCY_KEY_LIFETIME",
    "LOGIN_FAILURE_LIMIT",
    "LOGIN_FAILURE_WINDOW",
    "MIN_ID_PREFIX",
    "PREVIEW_RECORDS",
    "SIMILAR_THRESHOLD",
    "UPLOAD_OPTIONS",
    "ChangePosition",
    "ChunkSender",
    "Context",
    "IdempotencyKeyReused",
    "LoginThrottled",
    "OperationConfig",
    "OperationTotals",
    "Page",
    "Principal",
    "ProgressCallback",
    "RunnableOperations",
    "Starter",
    "UploadSweeper",
    "apply_check",
    "apply_chunk",
    "audit_records",
    "authenticate_password",
    "authenticate_token",
    "blocker",
    "cancel_interrupted",
    "cli_starter",
    "close_context",
    "create_operation",
    "create_organization",
    "create_token",
    "create_upload",
    "create_user",
    "database_reachable",
    "delete_expired_uploads",
    "entity_rows",
    "error_rows",
    "events_after",
    "execute",
    "expire_dead_leases",
    "export_path",
    "find_user_by_email",
    "forget_mapping",
    "generate_password",
    "get_operation",
    "get_upload",
    "iter_planned_changes",
    "keyset_page",
    "list_mappings",
    "list_operations",
    "list_organizations",
    "listen_for_events",
    "live_token",
    "log_in",
    "mark_token_used",
    "migrate_schema",
    "missing_database",
    "normalised_header_cell",
    "open_context",
    "operation_by_idempotency_key",
    "operation_id_from_prefix",
    "operation_totals",
    "operation_view",
    "operation_with_latest_event",
    "organization_token",
    "organization_tokens",
    "organization_user",
    "organization_users",
    "pending_worker_operations",
    "planned_change_counts",
    "planned_changes",
    "preview_upload",
    "process_owner",
    "queue_rollback",
    "release_lease",
    "request_cancel",
    "request_rollback",
    "resolve_organization",
    "resume",
    "resume_orphaned",
    "revoke_token",
    "rollback_operation",
    "runnable_operations",
    "saved_mapping_for_file",
    "set_password",
    "setup_database_roles",
    "suggest_mapping",
    "uses_postgresql",
    "write_conflict_report",
    "write_error_report",
    "write_error_report_xlsx",
    "write_planned_changes",
    "write_template",
    "write_template_xlsx",
]


def execute(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    wait: Any = None,
    owner: str | None = None,
    send_chunk: ChunkSender | None = None,
) -> Operation:
    """Run a pending operation of any type to its end (the one entry point for executors).

    ``send_chunk``: a distributed executor's way to have other workers apply chunks.
    """
    op = get_operation(ctx, org_id, op_id)
    if op.operation_type is OperationType.EXPORT:
        return run_export(ctx, org_id, op_id, owner=owner, on_progress=on_progress, wait=wait)
    return run_operation(
        ctx, org_id, op_id, on_progress=on_progress, wait=wait, owner=owner, send_chunk=send_chunk
    )


def resume(
    ctx: Context,
    org_id: int,
    op_id: str,
    *,
    on_progress: ProgressCallback | None = None,
    owner: str | None = None,
    send_chunk: ChunkSender | None = None,
) -> Operation:
    """Continue an operation or rollback whose process died, from its last committed chunk."""
    op = get_operation(ctx, org_id, op_id)
    owner = owner or process_owner()
    if op.status is OperationStatus.ROLLING_BACK:
        return rollback_applied(
            ctx,
            org_id,
            op_id,
            owner=owner,
            on_progress=on_progress,
            force=bool(op.rollback_force),
            user_id=op.rollback_requested_by,
        )
    if op.status in (OperationStatus.PENDING, OperationStatus.PROCESSING):
        return execute(
            ctx, org_id, op_id, on_progress=on_progress, owner=owner, send_chunk=send_chunk
        )
    raise Conflict(f"Operation {op_id} is {op.status}; there is nothing to resume.")


def resume_orphaned(
    ctx: Context, org_id: int, *, on_progress: ProgressCallback | None = None
) -> list[Operation]:
    """Resume every operation of the organization whose process died (its lease expired).

    The service calls this at start; ``bulkops resume --orphaned`` does it by hand.
    """
    with ctx.store.transaction(org_id) as tx:
        orphans = tx.operations.orphaned()
    return [resume(ctx, org_id, op_id, on_progress=on_progress) for op_id in orphans]
