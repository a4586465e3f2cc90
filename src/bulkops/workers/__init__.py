"""Executors: the embedded worker process (ids in, engine call). Celery tasks live here too."""

from bulkops.workers.embedded import EmbeddedWorker, Worker, worker_main

__all__ = ["EmbeddedWorker", "Worker", "worker_main"]
