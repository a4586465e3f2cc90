"""The dispatcher's rule: which operations to enqueue for Celery workers, and when again.

It reads the database only (through the engine) and hands each operation to ``send``; the
dispatcher process of ``bulkops worker`` (:mod:`bulkops.workers.service`) and the
``bulkops.reconcile`` task both run it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bulkops import engine

__all__ = ["Dispatcher"]

log = logging.getLogger("bulkops.worker")


@dataclass
class Dispatcher:
    """Finds runnable operations in the database and enqueues each one once.

    "Once" per state: an operation is enqueued again when its state (status, lease) changed
    since, or after ``redispatch_seconds`` (a pending operation that waited for another of
    its entity; a message lost with its broker).
    """

    ctx: engine.Context
    send: Callable[[int, str], None]
    redispatch_seconds: float | None = None
    _sent: dict[str, tuple[tuple[Any, ...], float]] = field(default_factory=dict)

    def reconcile_once(self) -> int:
        now = time.monotonic()
        again = self.redispatch_seconds or max(self.ctx.settings.lease_seconds, 5.0)
        seen: set[str] = set()
        sent = 0
        for org in engine.list_organizations(self.ctx):
            engine.expire_dead_leases(self.ctx, org["id"])
            runnable = engine.runnable_operations(self.ctx, org["id"])
            for op in [*runnable.pending, *runnable.orphaned]:
                seen.add(op.id)
                state = (op.status, op.lease_owner, op.lease_expires_at)
                previous = self._sent.get(op.id)
                if previous is not None and previous[0] == state and now - previous[1] < again:
                    continue
                self.send(org["id"], op.id)
                self._sent[op.id] = (state, now)
                sent += 1
                log.info(
                    "operation enqueued",
                    extra={"operation_id": op.id, "org_id": org["id"], "status": op.status},
                )
        for op_id in set(self._sent) - seen:
            del self._sent[op_id]
        return sent
