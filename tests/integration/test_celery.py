"""Celery workers (real ``bulkops worker`` processes) on real Redis and PostgreSQL.

The workers share only the database, the broker and the data folder with the test, as they
would on other machines. Each test has its own database and its own queue, so tests running
side by side never take each other's messages.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulkops import engine
from bulkops.config import Settings
from bulkops.engine import OperationConfig, create_operation
from bulkops.engine.scheduling import try_start
from bulkops.model import EntityType, OperationStatus, OperationType
from bulkops.store import Store
from tests.conftest import cloned_database
from tests.helpers import queue, table

BULKOPS = Path(sys.executable).with_name("bulkops")
REDIS = "redis://127.0.0.1:6379/0"
RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


@dataclass
class Cluster:
    """A database, a queue on a broker, and the worker processes started on them."""

    settings: Settings
    env: dict[str, str]
    logs: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @cached_property
    def ctx(self) -> engine.Context:
        return engine.Context(Store(self.settings.database_url), self.settings)

    def start_worker(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen(
            [str(BULKOPS), "--database-url", self.settings.database_url, "worker", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the whole worker
        )
        self.workers.append(proc)
        return proc

    def start_server(self) -> str:
        """The real ``bulkops serve`` (with the broker set); returns its base URL."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = (self.logs / "serve.log").open("wb")
        proc = subprocess.Popen(
            [str(BULKOPS), "--database-url", self.settings.database_url, "serve",
             "--port", str(port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers.append(proc)  # stopped with them
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("bulkops serve did not start")

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.workers:  # with any pool and dispatcher process left behind
            self.kill(proc)
        if "ctx" in self.__dict__:
            self.ctx.store.dispose()


def _database(pg_template: str | None) -> Iterator[str]:
    return cloned_database(pg_template, "bulkops_c")


def _make_cluster(
    pg_template: str | None, tmp_path: Path, broker: str, port: int
) -> Iterator[Cluster]:
    if not _reachable(port):
        if os.environ.get("BULKOPS_REQUIRE_PG") == "1":
            pytest.fail(f"broker not reachable at {broker}")  # CI starts both (.ci/run)
        pytest.skip(f"broker not reachable at {broker}")
    for url in _database(pg_template):
        queue = f"bulkops-test-{uuid.uuid4().hex[:10]}"
        settings = Settings(
            database_url=url,
            data_dir=tmp_path / "data",
            broker_url=broker,
            queue=queue,
            lease_seconds=2.0,
            reconcile_seconds=0.2,
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("BULKOPS_")}
        env.update(
            BULKOPS_DATA_DIR=str(settings.data_dir),
            BULKOPS_BROKER_URL=broker,
            BULKOPS_QUEUE=queue,
            BULKOPS_LEASE_SECONDS="2",
            BULKOPS_RECONCILE_SECONDS="0.2",
        )
        logs = tmp_path / "logs"
        logs.mkdir()
        cluster = Cluster(settings, env, logs)
        try:
            yield cluster
        finally:
            cluster.stop()
            if broker.startswith("redis"):
                keys = [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
                subprocess.run(["redis-cli", "DEL", *keys], capture_output=True, check=False)
            else:
                from kombu import Connection

                with Connection(broker) as conn:
                    conn.default_channel.queue_delete(queue)
                    conn.default_channel.exchange_delete(queue)


@pytest.fixture
def cluster(pg_template: str | None, tmp_path: Path) -> Iterator[Cluster]:
    yield from _make_cluster(pg_template, tmp_path, REDIS, 6379)


def products_csv(path: Path, rows: int, *, prefix: str = "P") -> Path:
    with path.open("w", encoding="utf-8") as out:
        out.write("sku,name,description,category,price\n")
        for i in range(rows):
            out.write(f"{prefix}-{i:07d},Name {i},,cat{i % 7},{i % 1000}.25\n")
    return path


def queue_import(ctx: engine.Context, org_id: int, path: Path, **config: Any) -> str:
    """An import of products queued for the workers."""
    return queue(ctx, org_id, "import", "products", path, executor="worker", **config)


def wait_for(
    ctx: engine.Context,
    org_id: int,
    op_id: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = engine.get_operation(ctx, org_id, op_id)
        if done(op):
            return op
        time.sleep(0.05)
    raise AssertionError(f"timed out; operation is {op.status} ({op.processed_records})")


def ended(op: dict[str, Any]) -> bool:
    return op.status in ("completed", "failed", "cancelled", "rolled_back")


def audit_counts(ctx: engine.Context, org_id: int, op_id: str) -> tuple[int, int]:
    """(audit records, distinct entity rows among them) of the operation."""
    with ctx.store.transaction(org_id) as tx:
        records = list(tx.audit.page(op_id, newest_first=False, limit=10_000_000))
    return len(records), len({r["entity_id"] for r in records})


def ledger(ctx: engine.Context, org_id: int, op_id: str) -> dict[int, int]:
    with ctx.store.transaction(org_id) as tx:
        return tx.ledger.committed(op_id, "apply")


def without_ids(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(row[1:] for row in rows)


COUNTERS = (
    "status",
    "processed_records",
    "successful_records",
    "failed_records",
    "created_records",
    "updated_records",
    "unchanged_records",
    "total_records",
)


@pytest.mark.slow
def test_two_workers_give_the_single_process_result(cluster: Cluster, tmp_path: Path) -> None:
    ctx = cluster.ctx
    org_id = engine.create_organization(ctx.store, "acme", "Acme")
    reference_org = engine.create_organization(ctx.store, "ref", "Reference")
    path = products_csv(tmp_path / "p.csv", 100_000)
    # A duplicate key far from its first row and a bad price: found across chunks.
    with path.open("a", encoding="utf-8") as out:
        out.write("P-0000010,Again,,x,1.00\nP-BAD,Bad,,x,notaprice\n")
    expected = engine.execute(
        ctx, reference_org, create_operation(
            ctx, reference_org, operation_type=OperationType.IMPORT,
            entity_type=EntityType.PRODUCTS, config=OperationConfig(chunk_size=2000),
            source=path,
        ).id
    )
    cluster.start_worker("--concurrency", "1")
    cluster.start_worker("--concurrency", "1")
    op_id = queue_import(ctx, org_id, path, chunk_size=2000)
    final = wait_for(ctx, org_id, op_id, ended, timeout=120)
    assert {k: getattr(final, k) for k in COUNTERS} == {k: getattr(expected, k) for k in COUNTERS}
    assert final.created_records == 100_000 and final.failed_records == 2
    assert without_ids(table(ctx, org_id, "products")) == without_ids(
        table(ctx, reference_org, "products")
    )
    assert audit_counts(ctx, org_id, op_id) == (100_000, 100_000)
    assert ledger(ctx, org_id, op_id) == ledger(ctx, reference_org, expected.id)
    with ctx.store.transaction(org_id) as tx:
        errors = tx.audit.iter_errors(op_id)
    with ctx.store.transaction(reference_org) as tx:
        assert errors == tx.audit.iter_errors(expected.id)
    assert [e["row"] for e in errors] == [100_002, 100_003]  # row 1 is the header
    # The chunks of the one operation were applied by both workers.
    with ctx.store.transaction(org_id) as tx:
        appliers = {w.rsplit(":", 1)[1] for w in tx.ledger.workers(op_id, "apply").values() if w}
    pools = {int(pid) for pid in appliers}
    assert len(pools) == 2, appliers
    assert {os.getpgid(pid) for pid in pools} == {w.pid for w in cluster.workers}


@pytest.mark.slow
def test_killing_workers_mid_operation_loses_and_duplicates_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    ctx = cluster.ctx
    org_id = engine.create_organization(ctx.store, "acme", "Acme")
    rows = 40_000
    op_id = queue_import(ctx, org_id, products_csv(tmp_path / "p.csv", rows), chunk_size=500)
    workers = [cluster.start_worker("--concurrency", "1") for _ in range(2)]
    kills = 0
    threshold = 0
    for round_ in range(4):
        threshold += rows // 6
        op = wait_for(
            ctx, org_id, op_id, lambda o, at=threshold: ended(o) or o.processed_records >= at
        )
        if ended(op):
            break
        # Kill the coordinating worker (it holds the operation's lease) and, in turn, the
        # other one (it applies the chunks handed out).
        owner_pid = int(str(op.lease_owner).rsplit(":", 1)[1])
        coordinator = next(w for w in workers if _in_group(owner_pid, w.pid))
        others = [w for w in workers if w is not coordinator]
        victim = coordinator if round_ % 2 == 0 else others[0]
        cluster.kill(victim)  # kill -9 of the whole worker (its pool process too)
        kills += 1
        workers.remove(victim)
        workers.append(cluster.start_worker("--concurrency", "1"))
    final = wait_for(ctx, org_id, op_id, ended, timeout=90)
    assert kills >= 3
    assert final.status == "completed"
    assert final.processed_records == final.created_records == rows
    products = table(ctx, org_id, "products")
    assert len(products) == rows
    assert audit_counts(ctx, org_id, op_id) == (rows, rows)  # one audit record per row
    chunks = ledger(ctx, org_id, op_id)
    assert sorted(chunks) == list(range(rows // 500)) and sum(chunks.values()) == rows


def _in_group(pid: int, group: int) -> bool:
    try:
        return os.getpgid(pid) == group
    except ProcessLookupError:
        return False


@pytest.mark.slow
def test_serve_hands_operations_to_workers_cancel_and_rollback_through_the_api(
    cluster: Cluster, tmp_path: Path
) -> None:
    from bulkops.model import Role

    ctx = cluster.ctx
    org_id = engine.create_organization(ctx.store, "acme", "Acme")
    user = engine.create_user(ctx.store, org_id, "ed@acme.example", Role.EDITOR, None)
    token = engine.create_token(ctx.store, org_id, user, "t")
    client = httpx.Client(
        base_url=cluster.start_server(), headers={"Authorization": f"Bearer {token}"}, timeout=30
    )

    def upload(path: Path) -> str:
        response = client.post(
            "/api/v1/operations",
            data={"operation_type": "import", "entity_type": "products", "chunk_size": "500"},
            files={"file": (path.name, path.read_bytes())},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    with client:
        first = upload(products_csv(tmp_path / "small.csv", 3_000, prefix="S"))
        time.sleep(1.5)  # with a broker set, serve runs no embedded worker: nothing happens
        assert engine.get_operation(ctx, org_id, first).status == "pending"
        cluster.start_worker("--concurrency", "2")
        cluster.start_worker("--concurrency", "1")
        done = wait_for(ctx, org_id, first, ended)
        assert done.status == "completed" and done.created_records == 3_000
        # Cancel a running operation from the API process.
        second = upload(products_csv(tmp_path / "big.csv", 60_000, prefix="B"))
        wait_for(ctx, org_id, second, lambda o: o.processed_records >= 2_000)
        response = client.post(f"/api/v1/operations/{second}/cancel")
        assert response.status_code == 202, response.text
        cancelled = wait_for(ctx, org_id, second, ended)
        assert cancelled.status == "cancelled"
        assert 2_000 <= cancelled.created_records < 60_000
        applied = cancelled.created_records
        assert len(table(ctx, org_id, "products")) == 3_000 + applied
        assert audit_counts(ctx, org_id, second) == (applied, applied)
        # Roll both back, newest first, on the workers.
        for op_id in (second, first):
            response = client.post(f"/api/v1/operations/{op_id}/rollback")
            assert response.status_code == 202, response.text
            rolled = wait_for(ctx, org_id, op_id, ended)
            assert rolled.status == "rolled_back", rolled
        assert table(ctx, org_id, "products") == []


@pytest.fixture
def rabbit_cluster(pg_template: str | None, tmp_path: Path) -> Iterator[Cluster]:
    yield from _make_cluster(pg_template, tmp_path, RABBITMQ, 5672)


def test_a_rabbitmq_broker_works_too(rabbit_cluster: Cluster, tmp_path: Path) -> None:
    ctx = rabbit_cluster.ctx
    org_id = engine.create_organization(ctx.store, "acme", "Acme")
    rabbit_cluster.start_worker("--concurrency", "1", "--pool", "solo")
    op_id = queue_import(ctx, org_id, products_csv(tmp_path / "p.csv", 2_000), chunk_size=500)
    final = wait_for(ctx, org_id, op_id, ended)
    assert final.status == "completed" and final.created_records == 2_000


def test_worker_without_broker_says_what_to_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKOPS_")}
    result = subprocess.run(
        [str(BULKOPS), "--database-url", f"sqlite:///{tmp_path / 'b.db'}", "worker"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "BULKOPS_BROKER_URL" in result.stderr


def test_the_dispatcher_enqueues_each_state_once(ctx: engine.Context, org_id: int,
                                                  tmp_path: Path) -> None:
    from bulkops.workers.dispatcher import Dispatcher

    sent: list[tuple[int, str]] = []
    dispatcher = Dispatcher(ctx, lambda org, op: sent.append((org, op)), redispatch_seconds=0.3)
    inline = create_operation(
        ctx, org_id, operation_type=OperationType.IMPORT, entity_type=EntityType.PRODUCTS,
        config=OperationConfig(), source=products_csv(tmp_path / "a.csv", 3),
    )
    op_id = queue_import(ctx, org_id, products_csv(tmp_path / "b.csv", 3))
    assert dispatcher.reconcile_once() == 1 and sent == [(org_id, op_id)]  # not the CLI's one
    assert dispatcher.reconcile_once() == 0  # already enqueued in this state
    engine.request_cancel(ctx, org_id, inline.id, user_id=None, rollback=False)
    # A worker takes it and dies: its expired lease is a new state, enqueued at once.
    assert try_start(
        ctx.store, org_id, op_id, "dead-host:1", -1.0, status=OperationStatus.PROCESSING
    )
    assert dispatcher.reconcile_once() == 1 and sent[-1] == (org_id, op_id)
    assert dispatcher.reconcile_once() == 0
    time.sleep(0.35)
    assert dispatcher.reconcile_once() == 1  # still not taken: enqueued again
    engine.resume(ctx, org_id, op_id)
    assert dispatcher.reconcile_once() == 0
    assert inline.id not in {op for _, op in sent}
