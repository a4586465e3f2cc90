"""One operation's chunks applied by several workers (engine level, SQLite and PostgreSQL).

The "other workers" here are threads calling :func:`bulkops.engine.apply_chunk` with their own
owner name, fed by the coordinator's ``send_chunk`` — what a Celery task does on another
machine (tests/integration/test_celery.py runs the real thing).
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bulkops import engine
from bulkops.config import Settings
from bulkops.engine import Context, execute, request_cancel
from bulkops.engine.scheduling import try_start
from bulkops.model import OperationStatus
from bulkops.store import Store
from tests.helpers import queue as queue_operation
from tests.helpers import run, table

COORDINATOR = "coordinator-host:101"
WORKER = "worker-host:202"
COUNTERS = (
    "status",
    "total_records",
    "processed_records",
    "successful_records",
    "failed_records",
    "unchanged_records",
    "created_records",
    "updated_records",
)


def products(path: Path, rows: int, *, extra: str = "") -> Path:
    lines = ["sku,name,description,category,price"]
    lines += [f"F-{i:06d},Name {i},,cat{i % 5},{i % 90 + 1}.50" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def queued(ctx: Context, org_id: int, path: Path, **config: Any) -> str:
    """An import of products queued for the workers."""
    return queue_operation(ctx, org_id, "import", "products", path, executor="worker", **config)


class Worker:
    """A thread that applies the chunks handed to it, like a Celery worker would."""

    def __init__(self, ctx: Context, owner: str = WORKER) -> None:
        self.ctx = ctx
        self.owner = owner
        self.inbox: queue.Queue[tuple[int, str, int] | None] = queue.Queue()
        self.outcomes: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def send(self, org_id: int, op_id: str, index: int) -> None:
        self.inbox.put((org_id, op_id, index))

    def _loop(self) -> None:
        while (item := self.inbox.get()) is not None:
            org_id, op_id, index = item
            self.outcomes.append(engine.apply_chunk(self.ctx, org_id, op_id, index,
                                                    owner=self.owner))

    def stop(self) -> None:
        self.inbox.put(None)
        self.thread.join(30)


@pytest.fixture
def worker(ctx: Context) -> Iterator[Worker]:
    w = Worker(ctx)
    yield w
    w.stop()


def ledger_workers(ctx: Context, org_id: int, op_id: str) -> dict[int, str | None]:
    with ctx.store.transaction(org_id) as tx:
        return tx.ledger.workers(op_id, "apply")


def event_names(ctx: Context, org_id: int, op_id: str) -> Counter[str]:
    with ctx.store.transaction(org_id) as tx:
        return Counter(e["event"] for e in tx.events.after(op_id, 0, limit=100_000))


def test_chunks_on_two_workers_give_the_single_process_result(
    ctx: Context, org_id: int, worker: Worker, tmp_path: Path
) -> None:
    # A duplicate of an early key far down the file, and a bad price: both found across chunks.
    path = products(tmp_path / "p.csv", 3_000, extra="F-000007,Again,,x,1.00\nF-BAD,Bad,,x,1,5\n")
    reference = engine.create_organization(ctx.store, "ref", "Reference")
    # Workers store a progress event for every chunk they commit; one process at most a few a
    # second (progress_event_seconds): compared chunk for chunk here.
    every = Context(ctx.store, ctx.settings.model_copy(update={"progress_event_seconds": 0}))
    expected = run(every, reference, "import", "products", path, chunk_size=200)
    op_id = queued(ctx, org_id, path, chunk_size=200, max_concurrent=3)

    def send_first_and_wait(org: int, op: str, index: int) -> None:
        # The coordinator applies the chunks nobody has claimed yet when it is done reading:
        # the worker must not lose every race, so its first chunk is applied before going on.
        worker.send(org, op, index)
        if index == 0:
            deadline = time.monotonic() + 30
            while not worker.outcomes and time.monotonic() < deadline:
                time.sleep(0.01)

    final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=send_first_and_wait)
    assert {k: getattr(final, k) for k in COUNTERS} == {k: getattr(expected, k) for k in COUNTERS}
    assert final.created_records == 3_000 and final.failed_records == 2
    # Chunks commit in any order, so ids differ; the rows are the same.
    assert sorted(row[1:] for row in table(ctx, org_id, "products")) == sorted(
        row[1:] for row in table(ctx, reference, "products")
    )
    with ctx.store.transaction(org_id) as tx:
        errors = tx.audit.iter_errors(op_id)
        chunks = tx.ledger.committed(op_id, "apply")
        assert tx.ledger.plans(op_id) == []  # nothing left handed out
    with ctx.store.transaction(reference) as tx:
        assert errors == tx.audit.iter_errors(expected.id)
        assert chunks == tx.ledger.committed(expected.id, "apply")
    assert [e["row"] for e in errors] == [3_002, 3_003]
    assert "already appears in row 9" in errors[0]["errors"][0]["message"]
    # Both applied chunks, one audit record per row, and the same events as one process.
    appliers = Counter(ledger_workers(ctx, org_id, op_id).values())
    assert set(appliers) == {COORDINATOR, WORKER} and sum(appliers.values()) == 16
    with ctx.store.transaction(org_id) as tx:
        audited = [r["record_index"] for r in tx.audit.page(op_id, newest_first=False,
                                                             limit=10_000_000)]
    assert sorted(audited) == list(range(2, 3_002))
    assert event_names(ctx, org_id, op_id) == event_names(ctx, reference, expected.id)


def test_after_a_validating_pass_the_workers_progress_counts_the_file_once(
    ctx: Context, org_id: int, worker: Worker, tmp_path: Path
) -> None:
    path = products(tmp_path / "p.csv", 3_000)
    op_id = queued(ctx, org_id, path, chunk_size=200, max_concurrent=3, rollback_on_error=True)
    applying: list[float] = []

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying":
            applying.append(event["percentage"])

    final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=worker.send,
                    on_progress=on_progress)
    assert (final.status, final.created_records) == ("completed", 3_000)
    # The bar starts over for the applying pass and grows with it, not stuck at 99.9 (the
    # coordinator reports the chunks it applied itself).
    assert applying and applying[0] < 99.0 and applying == sorted(applying), applying
    assert final.bytes_processed == final.file_size_bytes


def test_a_chunk_whose_worker_died_is_taken_over_after_its_lease(
    database_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=database_url, data_dir=tmp_path / "data", lease_seconds=1.0)
    store = Store(database_url)
    ctx = Context(store, settings)
    try:
        org_id = engine.create_organization(store, "acme", "Acme")
        claimed: list[int] = []

        def dead_worker(org: int, op_id: str, index: int) -> None:
            # A worker on another machine takes the chunk and dies before applying it.
            with store.transaction(org, write=True) as tx:
                assert tx.ledger.claim_plan(op_id, index, "gone-host:9", 1.0) is not None
            claimed.append(index)

        op_id = queued(ctx, org_id, products(tmp_path / "p.csv", 1_000), chunk_size=100,
                       max_concurrent=2)
        started = time.monotonic()
        final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=dead_worker)
        assert final.status == "completed" and final.created_records == 1_000
        assert claimed and time.monotonic() - started >= 1.0  # waited for the lease
        assert set(ledger_workers(ctx, org_id, op_id).values()) == {COORDINATOR}
        assert len(table(ctx, org_id, "products")) == 1_000
    finally:
        store.dispose()


def test_cancel_stops_every_worker_within_a_chunk(
    ctx: Context, org_id: int, worker: Worker, tmp_path: Path
) -> None:
    op_id = queued(ctx, org_id, products(tmp_path / "p.csv", 4_000), chunk_size=100,
                   max_concurrent=3)

    def cancel_at_1000(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] >= 1_000:
            request_cancel(ctx, org_id, op_id, user_id=None, rollback=False)

    final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=worker.send,
                    on_progress=cancel_at_1000)
    worker.stop()
    assert final.status == "cancelled"
    rows = len(table(ctx, org_id, "products"))
    assert 1_000 <= rows < 4_000
    assert final.created_records == final.processed_records == rows
    with ctx.store.transaction(org_id) as tx:
        assert sum(tx.ledger.committed(op_id, "apply").values()) == rows
        assert tx.ledger.plans(op_id) == []  # what was handed out and not applied is dropped


def test_cancel_with_rollback_leaves_nothing_behind(
    ctx: Context, org_id: int, worker: Worker, tmp_path: Path
) -> None:
    op_id = queued(ctx, org_id, products(tmp_path / "p.csv", 3_000), chunk_size=100,
                   max_concurrent=3)

    def cancel_at_500(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] >= 500:
            request_cancel(ctx, org_id, op_id, user_id=None, rollback=True)

    final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=worker.send,
                    on_progress=cancel_at_500)
    worker.stop()
    assert final.status == "rolled_back"
    assert table(ctx, org_id, "products") == []
    assert final.rolled_back_records == final.created_records >= 500


def test_too_many_errors_stop_the_workers_as_failed(
    ctx: Context, org_id: int, worker: Worker, tmp_path: Path
) -> None:
    bad = "".join(f"B-{i},Bad,,x,nope\n" for i in range(30))
    op_id = queued(ctx, org_id, products(tmp_path / "p.csv", 2_000, extra=bad), chunk_size=100,
                   max_concurrent=3, max_errors=10)
    final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=worker.send)
    assert final.status == "failed"
    assert final.failed_records > 10
    assert final.created_records == len(table(ctx, org_id, "products")) == 2_000


def test_a_lease_of_a_process_gone_from_this_host_ends_at_once(ctx: Context, org_id: int,
                                                             tmp_path: Path) -> None:
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                            capture_output=True, text=True, check=True)
    dead = f"{socket.gethostname()}:{int(exited.stdout)}"
    assert engine.leases.holder_is_dead(dead)
    assert not engine.leases.holder_is_dead(engine.process_owner())  # this process
    assert not engine.leases.holder_is_dead("another-host:1")  # cannot tell: wait for the lease
    op_id = queued(ctx, org_id, products(tmp_path / "p.csv", 10))
    assert try_start(ctx.store, org_id, op_id, dead, 3600, status=OperationStatus.PROCESSING)
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.orphaned() == []  # a live lease, for an hour
    assert engine.expire_dead_leases(ctx, org_id) == 1
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.orphaned() == [op_id]
    final = engine.resume(ctx, org_id, op_id)
    assert final.status == "completed" and final.created_records == 10


def test_chunks_that_could_not_be_handed_out_are_applied_by_the_coordinator(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    def broker_down(org: int, op_id: str, index: int) -> None:
        raise ConnectionError("broker unreachable")

    op_id = queued(ctx, org_id, products(tmp_path / "p.csv", 1_000), chunk_size=100,
                   max_concurrent=4)
    final = execute(ctx, org_id, op_id, owner=COORDINATOR, send_chunk=broker_down)
    assert final.status == "completed" and final.created_records == 1_000
    assert set(ledger_workers(ctx, org_id, op_id).values()) == {COORDINATOR}
    assert len(table(ctx, org_id, "products")) == 1_000
