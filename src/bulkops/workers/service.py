"""``bulkops worker``: a Celery worker on the queue, and beside it its dispatcher process.

The dispatcher runs in a process of its own (spawned, not forked) and looks at the database
every ``reconcile_seconds`` for operations to enqueue (see :mod:`bulkops.workers.celery_app`
for how an operation reaches a worker).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from multiprocessing.process import BaseProcess
from typing import Any

from bulkops import engine
from bulkops.config import Settings
from bulkops.logs import configure_json_logging
from bulkops.workers.celery_app import make_celery, operation_sender
from bulkops.workers.dispatcher import Dispatcher

__all__ = ["DispatcherProcess", "dispatcher_main", "run_worker"]

log = logging.getLogger("bulkops.worker")


def dispatcher_main(
    settings_values: dict[str, Any], stop: threading.Event | None, parent_pid: int | None
) -> None:
    """Entry point of the dispatcher process that ``bulkops worker`` starts beside Celery.

    It runs until ``stop`` is set (a thread, in tests), it is terminated, or its parent dies.
    """
    stop = stop or threading.Event()
    configure_json_logging()
    settings = Settings(**settings_values)
    ctx = engine.open_context(settings)
    app = make_celery(settings)
    dispatcher = Dispatcher(ctx, operation_sender(app, settings))
    uploads = engine.UploadSweeper(ctx)
    log.info("dispatcher started", extra={"pid": os.getpid(), "queue": settings.queue})
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                break  # the worker is gone
            try:
                dispatcher.reconcile_once()
                uploads.maybe_sweep()  # unused uploads past their time to live
            except Exception as exc:  # the database or the broker is down: try again later
                log.warning("dispatch failed", extra={"error": str(exc)})
            stop.wait(settings.reconcile_seconds)
    finally:
        engine.close_context(ctx)


class DispatcherProcess:
    """The dispatcher in its own (spawned) process, so the Celery pool never forks a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._mp = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None

    def start(self) -> None:
        self._process = self._mp.Process(
            target=dispatcher_main,
            args=(self.settings.model_dump(), None, os.getpid()),
            name="bulkops-dispatcher",
            daemon=True,
        )
        self._process.start()

    def stop(self) -> None:
        if self._process is None:
            return
        # Terminate rather than signal an Event: a shared Event's set() hangs when a waiter
        # died (the whole process group gets Ctrl-C or SIGTERM). It only reads and enqueues.
        self._process.terminate()
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._process = None


def run_worker(
    settings: Settings,
    *,
    concurrency: int | None = None,
    pool: str = "prefork",
    loglevel: str = "INFO",
    dispatch: bool = True,
) -> None:
    """``bulkops worker``: a Celery worker on ``settings.queue`` plus its dispatcher."""
    configure_json_logging()
    if not settings.data_dir.is_absolute():
        log.warning(
            "BULKOPS_DATA_DIR is relative; workers on other machines need the same absolute "
            "path to shared storage",
            extra={"data_dir": str(settings.data_dir)},
        )
    app = make_celery(settings)
    dispatcher = DispatcherProcess(settings) if dispatch else None
    if dispatcher is not None:
        dispatcher.start()
    try:
        app.worker_main(
            [
                "worker",
                f"--concurrency={concurrency or settings.worker_concurrency}",
                f"--pool={pool}",
                f"--loglevel={loglevel}",
                f"--queues={settings.queue}",
                f"--hostname=bulkops-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
            ]
        )
    finally:
        if dispatcher is not None:
            dispatcher.stop()
