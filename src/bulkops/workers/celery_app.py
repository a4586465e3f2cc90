"""Celery executor: tasks carry ids only and call the engine; the database keeps every state.

Nothing is built on import: :func:`make_celery` builds the app for given settings, and
``bulkops worker`` (:func:`bulkops.workers.service.run_worker`) starts it together with its
dispatcher.

How an operation reaches a worker
    The API only writes the operation (``executor = worker``) to the database, exactly as
    without a broker. Every ``bulkops worker`` runs a **dispatcher** process that looks at the
    database every ``reconcile_seconds`` and enqueues ``bulkops.run_operation(org_id, op_id)``
    for pending operations, for orphaned ones (processing or rolling back with an expired or no
    lease: a worker died, or the API queued a rollback) — the same work the embedded worker
    polls for. A task that ends an operation enqueues the next pending ones of its organization
    at once, so a queue of operations does not wait for the next look. The task running an
    operation coordinates it and hands chunks to other workers as
    ``bulkops.apply_chunk(org_id, op_id, chunk_index)`` (see ``bulkops.engine.fanout``).

Why a lost or repeated message does no harm
    ``acks_late`` with ``task_reject_on_worker_lost``: a message is acknowledged only when its
    task has ended, so a killed worker's message is delivered again. Whether or not it is, the
    operation's lease expires ``lease_seconds`` after its last committed chunk and a dispatcher
    enqueues it again; the engine resumes from its chunk ledger. A repeated message finds the
    operation ended, or running under a live lease elsewhere, and does nothing; a chunk whose
    ledger row is committed is never applied twice (one transaction holds its writes, audit
    records, ledger row and counters).

Cancel is the database flag the engine checks between chunks (Celery's revoke cannot stop a
running task); a rollback the API queues is an orphan as above and runs on a worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from bulkops import engine
from bulkops.config import Settings
from bulkops.errors import BulkopsError, Conflict, NotFound, StoreError
from bulkops.model import OperationStatus, OperationType
from bulkops.workers.dispatcher import Dispatcher

__all__ = [
    "APPLY_CHUNK",
    "RUN_OPERATION",
    "make_celery",
    "operation_sender",
]

log = logging.getLogger("bulkops.worker")

RUN_OPERATION = "bulkops.run_operation"
APPLY_CHUNK = "bulkops.apply_chunk"
RECONCILE = "bulkops.reconcile"


class _Runtime:
    """The engine context of the current process (made after the pool forks, never shared)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pid: int | None = None
        self._ctx: engine.Context | None = None

    def ctx(self) -> engine.Context:
        if self._ctx is None or self._pid != os.getpid():
            # A forked child must not reuse its parent's connection pool.
            self._ctx = engine.open_context(self.settings)
            self._pid = os.getpid()
        return self._ctx


def make_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings`` with the bulkops tasks registered on it."""
    if not settings.broker_url:
        raise BulkopsError("No broker: set BULKOPS_BROKER_URL (e.g. redis://127.0.0.1:6379/0).")
    soft_limit = settings.task_time_limit_seconds
    app = Celery("bulkops", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=soft_limit,
        task_time_limit=soft_limit + 30,
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Redis re-delivers an unacknowledged message after this; longer than any task, so a
        # running task's message is not handed to a second worker meanwhile.
        broker_transport_options={"visibility_timeout": int(soft_limit + 120)},
    )
    runtime = _Runtime(settings)

    @app.task(  # type: ignore[untyped-decorator]
        name=RUN_OPERATION,
        bind=True,
        autoretry_for=(StoreError,),
        retry_backoff=2,
        retry_backoff_max=60,
        retry_jitter=True,
        max_retries=8,
    )
    def run_operation(task: Any, org_id: int, op_id: str) -> str:
        """Run, resume or roll back one operation (whatever its state asks for)."""
        return _run_operation(runtime.ctx(), app, org_id, op_id, task_id=task.request.id)

    @app.task(  # type: ignore[untyped-decorator]
        name=APPLY_CHUNK,
        bind=True,
        autoretry_for=(StoreError,),
        retry_backoff=1,
        retry_backoff_max=30,
        retry_jitter=True,
        max_retries=8,
    )
    def apply_chunk(task: Any, org_id: int, op_id: str, index: int) -> str:
        """Apply one chunk that an operation's coordinating worker handed out."""
        return _apply_chunk(runtime.ctx(), org_id, op_id, index, task_id=task.request.id)

    @app.task(name=RECONCILE)  # type: ignore[untyped-decorator]
    def reconcile() -> int:
        """Enqueue every runnable operation once (for Celery beat; the dispatcher loops)."""
        return Dispatcher(runtime.ctx(), operation_sender(app, settings)).reconcile_once()

    del run_operation, apply_chunk, reconcile  # registered on the app by name
    return app


def operation_sender(app: Celery, settings: Settings) -> Callable[[int, str], None]:
    """Enqueue ``bulkops.run_operation(org_id, op_id)`` on the settings' queue."""

    def send(org_id: int, op_id: str) -> None:
        app.send_task(RUN_OPERATION, args=[org_id, op_id], queue=settings.queue)

    return send


def _chunk_sender(app: Celery, settings: Settings) -> engine.ChunkSender:
    def send(org_id: int, op_id: str, index: int) -> None:
        app.send_task(APPLY_CHUNK, args=[org_id, op_id, index], queue=settings.queue)

    return send


def _apply_chunk(
    ctx: engine.Context, org_id: int, op_id: str, index: int, *, task_id: str | None
) -> str:
    fields: dict[str, Any] = {
        "operation_id": op_id,
        "org_id": org_id,
        "chunk": index,
        "task_id": task_id,
    }
    started = time.monotonic()
    try:
        outcome = engine.apply_chunk(ctx, org_id, op_id, index, owner=engine.process_owner())
    except NotFound:
        log.warning("operation not found", extra=fields)
        return "not-found"
    level = logging.INFO if outcome in ("applied", "taken") else logging.WARNING
    log.log(
        level,
        "chunk committed" if outcome == "applied" else "chunk not applied",
        extra={**fields, "outcome": outcome, "seconds": round(time.monotonic() - started, 3)},
    )
    return outcome


def _run_operation(
    ctx: engine.Context, app: Celery, org_id: int, op_id: str, *, task_id: str | None
) -> str:
    owner = engine.process_owner()
    fields: dict[str, Any] = {"operation_id": op_id, "org_id": org_id, "task_id": task_id}
    try:
        op = engine.get_operation(ctx, org_id, op_id)
    except NotFound:
        log.warning("operation not found", extra=fields)
        return "not-found"
    status = str(op.status)
    if OperationStatus(status).is_final:
        log.info("operation already ended", extra={**fields, "status": status})
        return status
    if op.lease_owner not in (None, owner) and engine.expire_dead_leases(ctx, org_id):
        op = engine.get_operation(ctx, org_id, op_id)  # its holder died on this host
    if (
        op.lease_owner not in (None, owner)
        and (op.lease_expires_at or 0) > time.time()
    ):
        # A repeated message: the operation runs elsewhere. If that worker dies, its lease
        # expires and a dispatcher enqueues the operation again.
        log.info("operation runs elsewhere", extra={**fields, "lease_owner": op.lease_owner})
        return "elsewhere"
    path = op.file_path
    readable = status == "rolling_back" or op.operation_type is OperationType.EXPORT
    if path and not readable and not Path(path).is_file():
        log.error(
            "uploaded file not readable on this worker; BULKOPS_DATA_DIR must be shared "
            "storage mounted at the same absolute path on every machine",
            extra={**fields, "file_path": path, "host": socket.gethostname()},
        )
        return "no-file"
    chunks = 0

    def on_progress(event: dict[str, Any]) -> None:
        nonlocal chunks
        if event.get("phase") == "done":
            return
        chunks += 1
        log.info(
            "chunk committed",
            extra={
                **fields,
                "chunk": chunks,  # counted in this task; the ledger holds the file's index
                "phase": event.get("phase"),
                "processed_records": event.get("processed_records"),
                "failed_records": event.get("failed_records"),
                "percentage": event.get("percentage"),
            },
        )

    log.info("operation started", extra={**fields, "status": status, "owner": owner})
    started = time.monotonic()
    try:
        final = engine.resume(
            ctx,
            org_id,
            op_id,
            on_progress=on_progress,
            owner=owner,
            send_chunk=_chunk_sender(app, ctx.settings),
        )
    except Conflict as exc:  # another worker got there first, or it changed meanwhile
        log.info("operation skipped", extra={**fields, "reason": str(exc)})
        return "skipped"
    except SoftTimeLimitExceeded:
        # The chunk in flight was rolled back with its transaction; give the operation up at
        # once (expire the lease) so that a dispatcher enqueues it for a fresh task.
        _expire_lease(ctx, org_id, op_id, owner)
        log.warning("task time limit reached; operation continues in a new task", extra=fields)
        return "time-limit"
    log.info(
        "operation ended" if final.status is not OperationStatus.PENDING else "operation waits",
        extra={
            **fields,
            "status": final.status,
            "processed_records": final.processed_records,
            "failed_records": final.failed_records,
            "chunks": chunks,
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    if final.status.is_final:
        # The next operation of the same entity may be waiting for this one.
        _send_pending(ctx, org_id, operation_sender(app, ctx.settings))
    return str(final.status)


def _expire_lease(ctx: engine.Context, org_id: int, op_id: str, owner: str) -> None:
    with contextlib.suppress(BulkopsError):  # if it fails, the lease runs out by itself
        engine.release_lease(ctx, org_id, op_id, owner)


def _send_pending(ctx: engine.Context, org_id: int, send: Callable[[int, str], None]) -> None:
    for op in engine.pending_worker_operations(ctx, org_id):
        send(org_id, op.id)
