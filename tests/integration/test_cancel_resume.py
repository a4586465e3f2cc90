"""Cancel and resume: in process on SQLite and PostgreSQL, and kill -9 of the real CLI."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from bench.generate import write_file

from bulkops.config import Settings
from bulkops.engine import (
    Context,
    OperationConfig,
    create_operation,
    execute,
    get_operation,
    request_cancel,
    resume,
    rollback_operation,
)
from bulkops.engine.scheduling import try_start
from bulkops.errors import Conflict
from bulkops.model import EntityType, Operation, OperationStatus, OperationType
from bulkops.store import LedgerEntry, Store
from tests.helpers import checksum, queue, run, table, write_csv

ROOT = Path(__file__).resolve().parents[2]
BULKOPS = ROOT / ".venv" / "bin" / "bulkops"
HEADER = "sku,name,description,category,price\n"


def _products(count: int, start: int = 0, price: str = "1.00") -> str:
    return HEADER + "".join(f"P-{i:04d},Product {i},,cat,{price}\n" for i in range(start, count))


def _queue(ctx: Context, org_id: int, path: Path, **config: Any) -> dict[str, Any]:
    return create_operation(ctx, org_id, operation_type=OperationType.IMPORT,
                            entity_type=EntityType.PRODUCTS, config=OperationConfig(**config),
                            source=path)


def _audit_count(ctx: Context, org_id: int, op_id: str, status: str | None = None) -> int:
    with ctx.store.transaction(org_id) as tx:
        return len(tx.audit.page(op_id, newest_first=False, limit=10_000_000, status=status))


@pytest.fixture
def elsewhere(ctx: Context) -> Iterator[Context]:
    """A second engine on the same database: what another process would do."""
    store = Store(ctx.store.url)
    yield Context(store, ctx.settings)
    store.dispose()


class Crash(BaseException):
    """Stands for the process dying right after a chunk committed (like Ctrl-C or a kill,
    it is no ``Exception``: the engine does not get to end the operation as failed)."""


# -- 4. cancel -------------------------------------------------------------------------------------


def test_a_chunk_committed_twice_is_refused_and_its_counters_are_not_added_again(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    # A chunk's counter update writes its ledger row (in the same statement on PostgreSQL):
    # a second commit of the chunk (another worker got there first) must not land.
    path = write_csv(tmp_path / "p.csv", "sku,name\nA-1,Rake\nA-2,Hoe\n")
    op_id = queue(ctx, org_id, "import", "products", path)
    entry = LedgerEntry("apply", 0, 2, 3, 2, "worker-1")
    with ctx.store.transaction(org_id, write=True) as tx:
        op = tx.operations.advance(op_id, None, {"processed_records": 2}, ledger=entry)
    assert op is not None and op.processed_records == 2
    with (
        pytest.raises(Conflict, match=r"Chunk 0 of operation .* was already committed"),
        ctx.store.transaction(org_id, write=True) as tx,
    ):
        tx.operations.advance(op_id, None, {"processed_records": 2}, ledger=entry)
    with ctx.store.transaction(org_id) as tx:
        assert tx.ledger.committed(op_id, "apply") == {0: 2}
        assert tx.ledger.workers(op_id, "apply") == {0: "worker-1"}
        assert tx.operations.require(op_id).processed_records == 2


def test_cancel_stops_within_one_chunk_with_exact_counters(
    ctx: Context, elsewhere: Context, org_id: int, tmp_path: Path
) -> None:
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(100)), chunk_size=10)
    events: list[int] = []

    def cancel_at_20(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying":
            events.append(event["processed_records"])
            if event["processed_records"] == 20:
                request_cancel(elsewhere, org_id, op.id, user_id=None, rollback=False)

    final = execute(ctx, org_id, op.id, on_progress=cancel_at_20)
    assert final.status == "cancelled"
    assert events == [10, 20]  # not one chunk more
    counters = (final.processed_records, final.successful_records, final.created_records,
                final.failed_records, final.total_records)
    assert counters == (20, 20, 20, 0, 100)  # the total stays the file's: 20 % done
    assert final.cancelled_at is not None and final.lease_owner is None
    assert [r[1] for r in table(ctx, org_id, "products")] == [f"P-{i:04d}" for i in range(20)]
    assert _audit_count(ctx, org_id, op.id) == 20
    with pytest.raises(Conflict):
        request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)

    # What was applied stays applied, and can be rolled back later.
    undone = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert (undone.status, undone.rolled_back_records) == ("rolled_back", 20)
    assert table(ctx, org_id, "products") == []


def test_a_cancel_asked_in_the_same_thread_between_chunks_of_new_rows_stops_the_import(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    # On PostgreSQL chunks of new rows go one round trip each on the run's pinned connection;
    # a progress callback of the same thread (a worker's) still has the store to itself.
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(100)), chunk_size=10)

    def cancel_at_30(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] == 30:
            request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)

    final = execute(ctx, org_id, op.id, on_progress=cancel_at_30)
    assert (final.status, final.created_records) == ("cancelled", 30)
    # In file order, and the ids the audit batches name are those rows'.
    rows = table(ctx, org_id, "products")
    assert [r[1] for r in rows] == [f"P-{i:04d}" for i in range(30)]
    with ctx.store.transaction(org_id) as tx:
        assert tx.ledger.committed(op.id, "apply") == {0: 10, 1: 10, 2: 10}
        audited = tx.audit.page(op.id, newest_first=False, limit=100)
    assert [(a["entity_id"], orjson.loads(a["after_data"])["sku"]) for a in audited] == [
        (r[0], r[1]) for r in rows
    ]


def test_a_run_that_lost_its_lease_stops_and_its_chunk_does_not_land(
    ctx: Context, elsewhere: Context, org_id: int, tmp_path: Path
) -> None:
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(100)), chunk_size=10)

    def taken_at_20(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] == 20:
            with elsewhere.store.transaction(org_id, write=True) as tx:
                tx.operations.update(op.id, {"lease_owner": "another-worker"})

    with pytest.raises(Conflict, match="taken over by another-worker"):
        execute(ctx, org_id, op.id, on_progress=taken_at_20)
    with ctx.store.transaction(org_id) as tx:
        held = tx.operations.require(op.id)
        assert tx.ledger.committed(op.id, "apply") == {0: 10, 1: 10}
    assert (held.created_records, held.lease_owner) == (20, "another-worker")
    assert len(table(ctx, org_id, "products")) == 20 == _audit_count(ctx, org_id, op.id)


def test_cancel_with_rollback_undoes_what_was_applied(
    ctx: Context, elsewhere: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "base.csv", _products(30)))
    before = checksum(ctx, org_id)
    # Updates the 30 existing rows (chunks 1-3), then creates 70 new ones.
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(100, price="2.00")),
                chunk_size=10)

    def cancel_at_50(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] == 50:
            request_cancel(elsewhere, org_id, op.id, user_id=None, rollback=True)

    final = execute(ctx, org_id, op.id, on_progress=cancel_at_50)
    assert final.status == "rolled_back"
    assert (final.processed_records, final.updated_records, final.created_records) == (
        50, 30, 20)
    assert (final.rolled_back_records, final.conflict_records) == (50, 0)
    assert final.cancelled_at is not None
    assert checksum(ctx, org_id) == before
    with pytest.raises(Conflict):
        rollback_operation(ctx, org_id, op.id, user_id=None)


@pytest.mark.parametrize("option", ["rollback_on_error", "validate_only"])
def test_cancel_stops_the_validation_pass_within_one_chunk(
    ctx: Context, elsewhere: Context, org_id: int, tmp_path: Path, option: str
) -> None:
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(100)), chunk_size=10,
                **{option: True})
    after_cancel: list[dict[str, Any]] = []

    def cancel_at_first(event: dict[str, Any]) -> None:
        if event.get("phase") == "validating":
            if event["processed_records"] == 10:
                request_cancel(elsewhere, org_id, op.id, user_id=None, rollback=False)
            else:
                after_cancel.append(event)

    final = execute(ctx, org_id, op.id, on_progress=cancel_at_first)
    assert final.status == "cancelled"
    assert table(ctx, org_id, "products") == []
    assert len(after_cancel) <= 1, f"{len(after_cancel)} more chunks validated after the cancel"


def test_a_cancel_with_rollback_during_the_last_chunk_is_not_dropped(
    ctx: Context, elsewhere: Context, org_id: int, tmp_path: Path
) -> None:
    before = checksum(ctx, org_id)
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(20)), chunk_size=10)

    def cancel_at_end(event: dict[str, Any]) -> None:
        if event.get("phase") == "applying" and event["processed_records"] == 20:
            accepted = request_cancel(elsewhere, org_id, op.id, user_id=None, rollback=True)
            assert accepted.cancel_requested_at is not None

    final = execute(ctx, org_id, op.id, on_progress=cancel_at_end)
    assert final.status == "rolled_back"
    assert checksum(ctx, org_id) == before


def test_cancel_of_a_queued_operation_is_immediate(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(5)))
    cancelled = request_cancel(ctx, org_id, op.id, user_id=None, rollback=False)
    assert cancelled.status == "cancelled"
    final = execute(ctx, org_id, op.id)
    assert (final.status, final.processed_records) == ("cancelled", 0)
    assert table(ctx, org_id, "products") == []
    with pytest.raises(Conflict) as caught:
        resume(ctx, org_id, op.id)
    assert "nothing to resume" in str(caught.value)


def test_an_ended_operation_cannot_be_cancelled(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "p.csv", _products(5)))
    with pytest.raises(Conflict) as caught:
        request_cancel(ctx, org_id, op.id, user_id=None, rollback=True)
    assert "completed" in str(caught.value)
    assert get_operation(ctx, org_id, op.id).status == "completed"
    assert len(table(ctx, org_id, "products")) == 5


# -- 5a. resume after a crash, in process (both databases) ----------------------------------------


def _crash_after(processed: int, phase: str = "applying") -> Any:
    def on_progress(event: dict[str, Any]) -> None:
        if event.get("phase") == phase and event["processed_records"] >= processed:
            raise Crash

    return on_progress


def test_resume_after_a_crash_neither_loses_nor_duplicates(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "base.csv", _products(25)))
    text = _products(120, price="3.00") + "P-0007,Duplicate,,cat,1.00\nBAD,,,cat,1\n"
    path = write_csv(tmp_path / "p.csv", text)
    op = _queue(ctx, org_id, path, chunk_size=10)
    with pytest.raises(Crash):
        execute(ctx, org_id, op.id, on_progress=_crash_after(40))
    crashed = get_operation(ctx, org_id, op.id)
    assert (crashed.status, crashed.processed_records) == ("processing", 40)

    final = resume(ctx, org_id, op.id)
    assert final.status == "completed"
    counters = (final.processed_records, final.created_records, final.updated_records,
                final.failed_records, final.total_records)
    assert counters == (122, 95, 25, 2, 122)
    assert _audit_count(ctx, org_id, op.id) == 120
    rows = table(ctx, org_id, "products")
    assert len(rows) == 120 and {r[5] for r in rows} == {"3.00"}
    # The duplicate after the crash point still names its earlier row (row 9, before the crash).
    assert "row 9" in str(final.results)
    with pytest.raises(Conflict):
        resume(ctx, org_id, op.id)


def test_resume_of_an_interrupted_rollback(ctx: Context, org_id: int, tmp_path: Path) -> None:
    before = checksum(ctx, org_id)
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "p.csv", _products(95)),
             chunk_size=2)
    assert ctx.settings.rollback_batches == 10
    with pytest.raises(Crash):
        rollback_operation(ctx, org_id, op.id, user_id=None,
                           on_progress=_crash_after(30, "rolling_back"))
    crashed = get_operation(ctx, org_id, op.id)
    # A rollback restores whole audit batches (one per applied chunk), newest first, ten in a
    # transaction: the last chunk held 1 record, then 2 each, so the first group restored 19
    # and the first progress past 30 says 39. On PostgreSQL (max_concurrent 2) a third group
    # may have been in flight beside the second, and committed too: groups commit in any
    # order, so the first count shown may already be 39.
    gone = crashed.rolled_back_records
    assert gone in ((39, 59) if ctx.store.dialect.concurrent_writers else (39,))
    assert crashed.status == "rolling_back"
    assert len(table(ctx, org_id, "products")) == 95 - gone  # the newest are gone
    assert _audit_count(ctx, org_id, op.id, "applied") == 95 - gone

    final = resume(ctx, org_id, op.id)
    assert (final.status, final.rolled_back_records, final.conflict_records) == (
        "rolled_back", 95, 0)
    assert checksum(ctx, org_id) == before
    assert _audit_count(ctx, org_id, op.id, "rolled_back") == 95
    assert _audit_count(ctx, org_id, op.id) == 95


def test_resume_of_an_interrupted_forced_rollback_restores_the_conflicts(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    before = checksum(ctx, org_id)
    op = run(ctx, org_id, "import", "products", write_csv(tmp_path / "p.csv", _products(6)),
             chunk_size=1)
    run(ctx, org_id, "update", "products",
        write_csv(tmp_path / "u.csv", "sku,price\nP-0001,9.00\nP-0003,9.00\nP-0005,9.00\n"))
    first = rollback_operation(ctx, org_id, op.id, user_id=None)
    assert (first.rolled_back_records, first.conflict_records) == (3, 3)
    ctx.settings.rollback_batches = 1  # one batch a transaction: the crash comes between two
    with pytest.raises(Crash):
        rollback_operation(ctx, org_id, op.id, user_id=None, force=True,
                           on_progress=_crash_after(0, "rolling_back"))
    crashed = get_operation(ctx, org_id, op.id)
    # One conflict restored, and on PostgreSQL a second one in flight beside it.
    restored = 5 if ctx.store.dialect.concurrent_writers else 4
    assert (crashed.status, crashed.rolled_back_records, crashed.conflict_records) == (
        "rolling_back", restored, 6 - restored)
    final = resume(ctx, org_id, op.id)
    assert (final.status, final.rolled_back_records, final.conflict_records) == (
        "rolled_back", 6, 0)
    assert checksum(ctx, org_id) == before


def test_resume_refuses_an_operation_another_live_process_runs(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = _queue(ctx, org_id, write_csv(tmp_path / "p.csv", _products(5)))
    assert try_start(
        ctx.store, org_id, op.id, "other-host:123", 30, status=OperationStatus.PROCESSING
    )
    with pytest.raises(Conflict) as caught:
        resume(ctx, org_id, op.id)
    assert "other-host:123" in str(caught.value) and "lease" in str(caught.value)
    assert table(ctx, org_id, "products") == []


# -- 5b. kill -9 of the real command line (SQLite) -------------------------------------------------

ROWS = 100_000
CHUNK = 500


class Cli:
    """The real ``bulkops`` executable on one SQLite file, with a short lease."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.db = folder / "bulkops.db"
        self.url = f"sqlite:///{self.db}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BULKOPS_")}
        self.env.update(BULKOPS_DATA_DIR=str(folder / "data"), BULKOPS_LEASE_SECONDS="2")

    def argv(self, *args: str) -> list[str]:
        return [str(BULKOPS), "--database-url", self.url, *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              timeout=120, check=False)

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(*args), env=self.env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return conn.execute(sql, params).fetchall()

    def operation(self) -> Operation:
        conn = sqlite3.connect(self.db, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM operations ORDER BY created_at").fetchall()
        finally:
            conn.close()
        assert len(rows) == 1
        return Operation.from_row(dict(rows[0]))

    def kill_when(
        self, proc: subprocess.Popen[bytes], column: str, threshold: int
    ) -> Operation:
        """kill -9 the process as soon as the operation's ``column`` passes ``threshold``."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.db.exists():
                rows = self.query(f"SELECT {column} FROM operations")
                if rows and rows[0][0] >= threshold:
                    break
            assert proc.poll() is None, "the process ended before it could be killed"
            time.sleep(0.005)
        proc.kill()
        assert proc.wait(timeout=30) == -9
        return self.operation()

    def wait_for_lease(self) -> None:
        expires = self.operation().lease_expires_at
        time.sleep(max(0.0, expires - time.time()) + 0.2)

    def products(self) -> dict[str, tuple[Any, ...]]:
        rows = self.query("SELECT sku, name, description, category, price FROM products")
        return {r[0]: r[1:] for r in rows}

    def audit_records(self, op_id: str, status: str | None = None) -> int:
        """Audit records of the operation (each data row at most once), counted through its
        per-chunk batches with SQLite's JSON functions; a record's status is its batch's
        while applied, else its outcome (a plain rolled_back unless listed)."""
        per_record = (
            "SELECT r.value, CASE WHEN c.status = 'applied' THEN 'applied' ELSE coalesce("
            "json_extract(c.outcomes, '$.\"' || r.key || '\"[0]'), 'rolled_back') END AS status "
            "FROM operation_changes c, json_each(c.data, '$.rows') r WHERE c.operation_id = ?"
        )
        sql = f"SELECT count(*), count(DISTINCT value) FROM ({per_record})"
        params: tuple[Any, ...] = (op_id,)
        if status is not None:
            sql += " WHERE status = ?"
            params += (status,)
        total, distinct = self.query(sql, *params)[0]
        assert total == distinct
        if status is None:
            counted = self.query("SELECT coalesce(sum(record_count), 0) FROM operation_changes "
                                 "WHERE operation_id = ?", op_id)[0][0]
            assert counted == total
        return int(total)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("source") / "products.csv"
    write_file("products", path, ROWS)
    return path


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    cli = Cli(tmp_path_factory.mktemp("empty"))
    done = cli.run("init")
    assert done.returncode == 0, done.stderr
    return cli


def _fresh(empty_db: Cli, folder: Path) -> Cli:
    cli = Cli(folder)
    shutil.copyfile(empty_db.db, cli.db)
    return cli


@pytest.fixture(scope="module")
def reference(empty_db: Cli, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """An uninterrupted import of the same file."""
    cli = _fresh(empty_db, tmp_path_factory.mktemp("reference"))
    done = cli.run("import", "products", str(source), "--chunk-size", str(CHUNK))
    assert done.returncode == 0, done.stderr
    assert cli.operation().created_records == ROWS
    return cli


def _assert_like_reference(cli: Cli, reference: Cli) -> None:
    op = cli.operation()
    assert op.status == "completed"
    counters = (op.processed_records, op.created_records, op.successful_records,
                op.failed_records, op.updated_records, op.total_records)
    assert counters == (ROWS, ROWS, ROWS, 0, 0, ROWS)
    assert cli.audit_records(op.id) == ROWS
    assert cli.query("SELECT count(*) FROM operation_chunks WHERE operation_id = ? "
                     "AND phase = 'apply'", op.id)[0][0] == ROWS // CHUNK
    assert cli.products() == reference.products()


@pytest.mark.slow
@pytest.mark.parametrize("kills", [(20_000,), (50_000,), (35_000, 80_000)],
                         ids=["20k", "50k", "35k-then-80k-during-the-resume"])
def test_kill_9_during_import_then_resume_equals_an_uninterrupted_run(
    empty_db: Cli, reference: Cli, source: Path, tmp_path: Path, kills: tuple[int, ...]
) -> None:
    cli = _fresh(empty_db, tmp_path)
    proc = cli.start("import", "products", str(source), "--chunk-size", str(CHUNK))
    op_id = ""
    for threshold in kills:
        op = cli.kill_when(proc, "processed_records", threshold)
        op_id = op.id
        assert op.status == "processing"
        assert threshold <= op.processed_records < ROWS
        assert op.processed_records % CHUNK == 0
        assert cli.audit_records(op_id) == op.created_records == op.processed_records
        assert len(cli.products()) == op.processed_records
        cli.wait_for_lease()
        proc = cli.start("resume", op_id)  # killed again at the next threshold, if any
    assert proc.wait(timeout=120) == 0
    _assert_like_reference(cli, reference)


# The kill -9 of a rollback runs on a 20k-row import to keep this file fast.
ROLLBACK_ROWS = 20_000


@pytest.fixture(scope="module")
def imported_20k(empty_db: Cli, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    folder = tmp_path_factory.mktemp("imported_20k")
    path = folder / "products.csv"
    write_file("products", path, ROLLBACK_ROWS)
    cli = _fresh(empty_db, folder)
    done = cli.run("import", "products", str(path), "--chunk-size", str(CHUNK))
    assert done.returncode == 0, done.stderr
    return cli


@pytest.mark.slow
def test_kill_9_during_rollback_then_resume_restores_everything(
    imported_20k: Cli, tmp_path: Path
) -> None:
    cli = Cli(tmp_path)
    shutil.copyfile(imported_20k.db, cli.db)  # a completed import, not rolled back yet
    op_id = cli.operation().id
    assert len(cli.products()) == ROLLBACK_ROWS
    # Two batches (1,000 records) a transaction: the kill comes between two of them.
    cli.env["BULKOPS_ROLLBACK_BATCHES"] = "2"
    proc = cli.start("rollback", op_id)
    op = cli.kill_when(proc, "rolled_back_records", ROLLBACK_ROWS // 2)
    assert op.status == "rolling_back"
    assert ROLLBACK_ROWS // 2 <= op.rolled_back_records < ROLLBACK_ROWS
    assert len(cli.products()) == ROLLBACK_ROWS - op.rolled_back_records
    assert cli.audit_records(op_id, "rolled_back") == op.rolled_back_records
    cli.wait_for_lease()

    done = cli.run("resume", op_id)
    assert done.returncode == 1, done.stderr  # CONTRACT 4: rolled back exits 1
    assert "rolled back" in done.stdout
    op = cli.operation()
    assert (op.status, op.rolled_back_records, op.conflict_records) == (
        "rolled_back", ROLLBACK_ROWS, 0)
    assert cli.products() == {}
    assert cli.audit_records(op_id) == ROLLBACK_ROWS
    assert cli.audit_records(op_id, "rolled_back") == ROLLBACK_ROWS
    # One ledger row and one progress event a transaction, across the kill.
    transactions = ROLLBACK_ROWS // CHUNK // 2
    assert cli.query("SELECT count(*) FROM operation_chunks WHERE operation_id = ? "
                     "AND phase = 'rollback'", op_id)[0][0] == transactions
    progress = cli.query("SELECT count(*) FROM operation_events WHERE operation_id = ? "
                         "AND event = 'rollback-progress'", op_id)[0][0]
    assert progress == transactions


@pytest.mark.slow
def test_a_rollback_page_does_not_scan_the_whole_audit(reference: Cli) -> None:
    store = Store(reference.url)
    try:
        op = reference.operation()
        timings = []
        for _ in range(3):
            with store.transaction(op.organization_id) as tx:
                started = time.perf_counter()
                page = tx.audit.page(op.id, newest_first=True, status="applied", limit=CHUNK)
                timings.append(time.perf_counter() - started)
            assert len(page) == CHUNK
    finally:
        store.dispose()
    # One page of 500 out of 100k: a few ms with an index; ~0.3 s when every record is read.
    assert min(timings) < 0.05


def test_settings_read_the_lease_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BULKOPS_LEASE_SECONDS", "2")
    assert Settings().lease_seconds == 2.0
