"""The embedded worker: a process beside the server that runs queued operations.

The API only creates operations and sets flags in the database; this worker finds the work
there (the database is the only channel between them):

- **pending** operations whose ``executor`` is ``worker`` (those created through the API; the
  CLI runs the ones it creates itself) are run with :func:`bulkops.engine.execute`;
- **orphaned** operations — processing or rolling back with an expired or no lease — are
  resumed with :func:`bulkops.engine.resume`. That covers a process that died, and a rollback
  the API queued (``rolling_back`` without a lease: the same state a crashed rollback is in),
  which ``resume`` runs as the user who asked for it.

It runs in a separate process (``multiprocessing`` spawn), never in the server's event loop or
request threads, so the API stays responsive while a large import runs. Inside, a few threads
run operations side by side (one writer per organization and entity is still the engine's
rule); a poll every ``poll_seconds`` submits new work. The process exits when asked, or when
its parent dies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from bulkops import engine
from bulkops.config import Settings
from bulkops.errors import BulkopsError
from bulkops.logs import configure_json_logging
from bulkops.model import OperationStatus

__all__ = ["EmbeddedWorker", "Worker", "worker_main"]

log = logging.getLogger("bulkops.worker")


class StopSignal(Protocol):
    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Worker:
    """Polls the database for work and runs it in a small thread pool."""

    def __init__(self, ctx: engine.Context, *, poll_seconds: float = 0.5, threads: int = 4) -> None:
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bulkops-op")
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._uploads = engine.UploadSweeper(ctx)

    def run(self, stop: StopSignal, *, parent_pid: int | None = None) -> None:
        log.info("worker started", extra={"pid": os.getpid()})
        try:
            while not stop.is_set():
                if parent_pid is not None and os.getppid() != parent_pid:
                    log.warning("server process gone; worker exits")
                    break
                try:
                    self.poll_once()
                    self._uploads.maybe_sweep()  # unused uploads past their time to live
                except BulkopsError as exc:  # the database is down, say: try again later
                    log.warning("poll failed", extra={"error": str(exc)})
                stop.wait(self.poll_seconds)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            log.info("worker stopping", extra={"running": sorted(self._running)})

    def poll_once(self) -> int:
        """Submit every runnable operation not already running here; returns how many."""
        submitted = 0
        for org in engine.list_organizations(self.ctx):
            runnable = engine.runnable_operations(self.ctx, org["id"])
            for op in runnable.pending:
                submitted += self._submit(org["id"], op.id, resume=False)
            for op in runnable.orphaned:
                submitted += self._submit(org["id"], op.id, resume=True)
        return submitted

    def _submit(self, org_id: int, op_id: str, *, resume: bool) -> int:
        with self._lock:
            if op_id in self._running:
                return 0
            self._running.add(op_id)
        self._pool.submit(self._run, org_id, op_id, resume)
        return 1

    def _run(self, org_id: int, op_id: str, resume: bool) -> None:
        fields: dict[str, Any] = {"operation_id": op_id, "org_id": org_id}
        try:
            before = engine.get_operation(self.ctx, org_id, op_id)
            if resume:
                log.info("operation resumed", extra={**fields, "status": before.status})
                final = engine.resume(self.ctx, org_id, op_id)
            else:
                final = engine.execute(self.ctx, org_id, op_id)
            if final.status != before.status or resume:
                log.info(
                    "operation queued"
                    if final.status is OperationStatus.PENDING
                    else "operation ended",
                    extra={
                        **fields,
                        "status": final.status,
                        "processed_records": final.processed_records,
                        "failed_records": final.failed_records,
                    },
                )
        except BulkopsError as exc:
            # Another process got there first, or the operation changed meanwhile.
            log.info("operation skipped", extra={**fields, "reason": str(exc)})
        except Exception:
            log.exception("operation crashed", extra=fields)
        finally:
            with self._lock:
                self._running.discard(op_id)


def worker_main(
    settings_values: dict[str, Any], stop: StopSignal, parent_pid: int | None, poll_seconds: float
) -> None:
    """Entry point of the worker process (also usable in a thread, for tests)."""
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C reaches the whole process group; the server decides when the worker stops.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        configure_json_logging()
    settings = Settings(**settings_values)
    ctx = engine.open_context(settings)
    try:
        worker = Worker(ctx, poll_seconds=poll_seconds)
        worker.run(stop, parent_pid=parent_pid)
    finally:
        engine.close_context(ctx)


class EmbeddedWorker:
    """The worker process that ``bulkops serve`` starts beside the server."""

    def __init__(self, settings: Settings, *, poll_seconds: float = 0.5) -> None:
        self.settings = settings
        self.poll_seconds = poll_seconds
        self._mp = multiprocessing.get_context("spawn")
        self._stop = self._mp.Event()
        self._process: BaseProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self._process = self._mp.Process(
            target=worker_main,
            args=(self.settings.model_dump(), self._stop, os.getpid(), self.poll_seconds),
            name="bulkops-worker",
            daemon=True,
        )
        self._process.start()

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Ask the worker to stop; operations still running then are cut off and resume later.

        (A chunk cut off is rolled back by the database; the operation's lease expires and
        the next worker resumes it from its last committed chunk.)
        """
        if self._process is None:
            return
        self._stop.set()
        self._process.join(grace_seconds)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None
