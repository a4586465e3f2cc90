"""Leases of dead processes: ended at once when the process is known to be gone.

A lease names its holder as ``host:pid`` (:func:`bulkops.engine.lifecycle.process_owner`). A
worker on another machine can only wait for the lease to run out (``lease_seconds``); a
worker on the *same* host can see that the holder no longer exists and end the lease now,
so the work resumes without waiting. A holder that exited but is not yet reaped (a zombie)
counts as gone; a process id that was reused since is at worst treated as alive, and the
lease then runs out as usual.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from bulkops.engine.operations import Context

__all__ = ["expire_dead_leases", "holder_is_dead"]


def holder_is_dead(owner: str) -> bool:
    """True only if ``owner`` is a process of this host that has exited."""
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # exited but not yet reaped by its parent
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def expire_dead_leases(ctx: Context, org_id: int) -> int:
    """End the leases that dead processes of this host hold in the organization."""
    if not ctx.settings.reclaim_local_leases:
        return 0
    with ctx.store.transaction(org_id) as tx:
        owners = tx.operations.lease_owners()
    dead = [owner for owner in owners if holder_is_dead(owner)]
    if not dead:
        return 0
    with ctx.store.transaction(org_id, write=True) as tx:
        return tx.operations.expire_leases(dead)
