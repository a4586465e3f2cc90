"""An export lives the same life as every operation: leased, cancellable, resumable.

On SQLite and PostgreSQL: a process killed (-9) in the middle of an export leaves the
operation to be resumed, and the resumed export's file equals an uninterrupted one; a cancel
during a long export ends it ``cancelled`` within one page, with no file to download.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.generate import write_file

from bulkops.engine import Context, execute, export_path, get_operation, request_cancel, resume
from bulkops.engine.export import PAGE_ROWS
from tests.helpers import queue, run

ROWS = 60_000

_EXPORT_IN_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from bulkops.config import Settings
from bulkops.engine import Context, execute
from bulkops.store import Store

url, data_dir, org_id, op_id = sys.argv[1:]
settings = Settings(database_url=url, data_dir=Path(data_dir), lease_seconds=2)
execute(Context(Store(url), settings), int(org_id), op_id)
"""


def _seed(ctx: Context, org_id: int, tmp_path: Path) -> None:
    source = tmp_path / "products.csv"
    write_file("products", source, ROWS)
    assert run(ctx, org_id, "import", "products", source).created_records == ROWS


def _export(ctx: Context, org_id: int) -> tuple[dict[str, Any], bytes]:
    final = execute(ctx, org_id, queue(ctx, org_id, "export", "products"))
    return final, export_path(ctx, org_id, final.id).read_bytes()


def test_an_export_killed_mid_way_is_resumed_and_writes_the_same_file(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    _seed(ctx, org_id, tmp_path)
    _, uninterrupted = _export(ctx, org_id)

    op_id = queue(ctx, org_id, "export", "products")
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXPORT_IN_ANOTHER_PROCESS, ctx.store.url,
         str(ctx.settings.data_dir), str(org_id), op_id],
    )
    deadline = time.monotonic() + 60
    while get_operation(ctx, org_id, op_id).processed_records < 2 * PAGE_ROWS:
        assert proc.poll() is None, "the export ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.kill()
    assert proc.wait(timeout=30) == -9

    killed = get_operation(ctx, org_id, op_id)
    assert killed.status == "processing"  # held by a process that no longer exists
    assert killed.lease_owner is not None
    assert 0 < killed.processed_records < ROWS
    assert not export_path(ctx, org_id, op_id).exists()
    time.sleep(max(0.0, killed.lease_expires_at - time.time()) + 0.2)

    final = resume(ctx, org_id, op_id)

    assert final.status == "completed"
    assert final.processed_records == final.total_records == ROWS
    assert export_path(ctx, org_id, op_id).read_bytes() == uninterrupted


def test_a_cancel_during_a_long_export_ends_it_cancelled(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    _seed(ctx, org_id, tmp_path)
    op_id = queue(ctx, org_id, "export", "products")
    pages: list[int] = []

    def cancel_after_the_first_page(event: dict[str, Any]) -> None:
        pages.append(event["processed_records"])
        if len(pages) == 1:
            request_cancel(ctx, org_id, op_id, user_id=None, rollback=False)

    final = execute(ctx, org_id, op_id, on_progress=cancel_after_the_first_page)

    assert final.status == "cancelled"
    assert final.cancelled_at is not None
    assert final.processed_records == 2 * PAGE_ROWS  # the page under way when asked
    assert final.processed_records < ROWS
    assert not export_path(ctx, org_id, op_id).exists()
    assert not export_path(ctx, org_id, op_id).with_suffix(".part").exists()
