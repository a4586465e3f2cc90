"""Celery workers on PostgreSQL: 1 versus 2 worker processes, and the cost of losing one.

    .venv/bin/python -m bench.workers                      # 1M rows, Redis, local PostgreSQL
    .venv/bin/python -m bench.workers --rows 200000 --lease 5

Scenarios (each on a fresh database, real ``bulkops worker`` processes, concurrency 1 each):

- ``one-op``: one import of ROWS products. With 2 workers its chunks are spread over both:
  one coordinates (reads and checks the file, hands chunks out, applies chunks itself when
  ``max_concurrent`` are in flight), the other applies the chunks handed to it.
- ``two-ops``: two imports of ROWS/2 each, in two organizations.
- ``kill``: one import of ROWS with 2 workers; at half way one worker is killed (-9, its
  whole process group): first the coordinating one, then (a new run) the other one.
  Reported: the stall (from the kill until the next chunk commits) and the delay (the
  run's total time minus the same run without a kill), against the lease.

Figures go to stdout as a table; progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bulkops import engine
from bulkops.config import Settings
from bulkops.engine import OperationConfig, create_operation
from bulkops.model import EntityType, Operation, OperationType
from bulkops.store import Store

BULKOPS = Path(sys.executable).with_name("bulkops")
ENDED = ("completed", "failed", "cancelled", "rolled_back")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def write_products(path: Path, rows: int, prefix: str) -> Path:
    if path.exists():
        return path
    with path.open("w", encoding="utf-8") as out:
        out.write("sku,name,description,category,price\n")
        for i in range(rows):
            out.write(f"{prefix}-{i:08d},Product {i},Some text {i % 97},cat{i % 13},{i % 997}.50\n")
    return path


class Run:
    """A fresh database, a queue, and worker processes on them."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.name = f"bulkops_bw_{uuid.uuid4().hex[:8]}"
        self.admin = args.pg_server.replace("+psycopg", "") + "/postgres"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        url = f"{args.pg_server}/{self.name}"
        self.settings = Settings(
            database_url=url,
            data_dir=work / "data",
            broker_url=args.broker,
            queue=f"bulkops-bench-{uuid.uuid4().hex[:8]}",
            lease_seconds=args.lease,
            reconcile_seconds=args.reconcile,
        )
        self.store = Store(url)
        self.store.migrate()
        self.ctx = engine.Context(self.store, self.settings)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BULKOPS_")}
        self.env.update(
            BULKOPS_DATA_DIR=str(self.settings.data_dir),
            BULKOPS_BROKER_URL=args.broker,
            BULKOPS_QUEUE=self.settings.queue,
            BULKOPS_LEASE_SECONDS=str(args.lease),
            BULKOPS_RECONCILE_SECONDS=str(args.reconcile),
            BULKOPS_RECLAIM_LOCAL_LEASES="false" if args.no_reclaim else "true",
        )
        self.workers: list[subprocess.Popen[bytes]] = []
        self.work = work

    def start_workers(self, count: int) -> None:
        for _ in range(count):
            log = (self.work / f"worker-{len(self.workers)}.log").open("wb")
            self.workers.append(
                subprocess.Popen(
                    [str(BULKOPS), "--database-url", self.settings.database_url, "worker",
                     "--concurrency", "1"],
                    env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            )
        time.sleep(3)  # let them connect (not part of the figures)

    def queue(self, org_id: int, path: Path, chunk_size: int) -> str:
        op = create_operation(
            self.ctx, org_id, operation_type=OperationType.IMPORT,
            entity_type=EntityType.PRODUCTS, config=OperationConfig(chunk_size=chunk_size),
            source=path, file_name=path.name, executor="worker",
        )
        return str(op.id)

    def get(self, org_id: int, op_id: str) -> Operation:
        return engine.get_operation(self.ctx, org_id, op_id)

    def wait(self, ops: list[tuple[int, str]]) -> list[Operation]:
        while True:
            finals = [self.get(org, op) for org, op in ops]
            if all(f.status in ENDED for f in finals):
                return finals
            time.sleep(0.05)

    def close(self) -> None:
        for proc in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.store.dispose()
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if self.settings.broker_url and self.settings.broker_url.startswith("redis"):
            queue = self.settings.queue
            keys = [queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}"]
            subprocess.run(["redis-cli", "DEL", *keys], capture_output=True, check=False)


def scenario(args: argparse.Namespace, work: Path, files: dict[str, Path], name: str,
             workers: int) -> dict[str, Any]:
    run = Run(args, work)
    try:
        run.start_workers(workers)
        if name == "one-op":
            org = engine.create_organization(run.store, "a", "A")
            started = time.monotonic()
            finals = run.wait([(org, run.queue(org, files["all"], args.chunk_size))])
        else:
            orgs = [engine.create_organization(run.store, s, s) for s in ("a", "b")]
            started = time.monotonic()
            ops = [(org, run.queue(org, files[half], args.chunk_size))
                   for org, half in zip(orgs, ("half1", "half2"), strict=True)]
            finals = run.wait(ops)
        seconds = time.monotonic() - started
        rows = sum(f.created_records for f in finals)
        assert all(f.status == "completed" for f in finals), finals
        return {"scenario": name, "workers": workers, "rows": rows, "seconds": seconds,
                "rows_per_s": rows / seconds}
    finally:
        run.close()


def kill_scenario(args: argparse.Namespace, work: Path, path: Path, victim_role: str
                  ) -> dict[str, Any]:
    run = Run(args, work)
    try:
        run.start_workers(2)
        org = engine.create_organization(run.store, "a", "A")
        started = time.monotonic()
        op_id = run.queue(org, path, args.chunk_size)
        while (op := run.get(org, op_id)).processed_records < args.rows // 2:
            time.sleep(0.01)
        pid = int(str(op.lease_owner).rsplit(":", 1)[1])
        coordinator = next(w for w in run.workers if os.getpgid(pid) == w.pid)
        victim = coordinator if victim_role == "coordinator" else next(
            w for w in run.workers if w is not coordinator
        )
        os.killpg(victim.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        before = run.get(org, op_id).processed_records
        while run.get(org, op_id).processed_records <= before:
            time.sleep(0.02)
        stall = time.monotonic() - killed_at
        final = run.wait([(org, op_id)])[0]
        seconds = time.monotonic() - started
        assert final.status == "completed" and final.created_records == args.rows, final
        return {"scenario": "kill", "victim": victim_role, "workers": 2, "rows": args.rows,
                "stall_seconds": stall, "seconds": seconds, "lease_seconds": args.lease}
    finally:
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg-server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--reconcile", type=float, default=1.0)
    parser.add_argument("--scenarios", default="one-op,two-ops,kill")
    parser.add_argument("--no-reclaim", action="store_true",
                        help="workers wait for a dead worker's lease to run out, as across "
                        "machines (BULKOPS_RECLAIM_LOCAL_LEASES=false)")
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir()) / "bulkops-bench-workers"
    folder.mkdir(exist_ok=True)
    files = {
        "all": write_products(folder / f"all-{args.rows}.csv", args.rows, "A"),
        "half1": write_products(folder / f"h1-{args.rows}.csv", args.rows // 2, "H"),
        "half2": write_products(folder / f"h2-{args.rows}.csv", args.rows // 2, "H"),
    }
    results: list[dict[str, Any]] = []
    wanted = args.scenarios.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("one-op", "two-ops"):
            if name not in wanted:
                continue
            for workers in (1, 2):
                say(f"{name} with {workers} worker(s), {args.rows} rows ...")
                results.append(scenario(args, Path(tmp) / f"{name}-{workers}", files, name,
                                        workers))
                say(f"  {results[-1]['seconds']:.1f} s")
        if "kill" in wanted:
            for role in ("coordinator", "applier"):
                say(f"kill -9 of the {role} at half way, lease {args.lease} s ...")
                results.append(kill_scenario(args, Path(tmp) / f"kill-{role}", files["all"],
                                             role))
                say(f"  {results[-1]['seconds']:.1f} s")
    print(f"{'scenario':<10} {'workers':>7} {'rows':>9} {'seconds':>8} {'rows/s':>9} speed-up")
    base: dict[str, float] = {}
    unkilled = next((r["seconds"] for r in results
                     if r["scenario"] == "one-op" and r["workers"] == 2), None)
    for r in results:
        if r["scenario"] == "kill":
            delay = f"delay {r['seconds'] - unkilled:.1f} s, " if unkilled else ""
            print(f"kill {r['victim']:<11} {2:>1} {r['rows']:>9} {r['seconds']:>8.1f}  "
                  f"stall {r['stall_seconds']:.1f} s, {delay}lease {r['lease_seconds']:.0f} s, "
                  f"dispatch every {args.reconcile} s")
            continue
        base.setdefault(r["scenario"], r["seconds"])
        print(f"{r['scenario']:<10} {r['workers']:>7} {r['rows']:>9} {r['seconds']:>8.1f} "
              f"{r['rows_per_s']:>9.0f} {base[r['scenario']] / r['seconds']:>7.2f}x")


if __name__ == "__main__":
    main()
