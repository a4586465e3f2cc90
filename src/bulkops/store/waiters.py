"""Wake-ups for progress events written by any process (the events table is the truth)."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["EventWaiter", "SleepWaiter"]


class EventWaiter(Protocol):
    def wait(self, op_id: str | None, timeout: float) -> bool:
        """Block until an event of ``op_id`` (None: any) may have been written, or the timeout.

        True means "read the events table again"; False means the timeout passed quietly.
        """
        ...


class SleepWaiter:
    """SQLite has no notifications: wake up often and let the caller read the table."""

    def wait(self, op_id: str | None, timeout: float) -> bool:
        time.sleep(min(timeout, 0.25))
        return True
