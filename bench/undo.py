"""Benchmark of undo: rollback of an import beside the import itself, and the cancel delay.

    python -m bench.undo [--rows 1000000] [--chunk-size 1000]
        [--database sqlite|postgresql] [--pg-url URL]

1. imports ROWS products into a fresh database (SQLite, or a new PostgreSQL database on the
   server of ``--pg-url``, dropped at the end) with the real CLI, measuring wall
   seconds and peak RSS (``/usr/bin/time``); 2. rolls that import back the same way and
   prints the ratio (target: at most 1.2x the import); 3. starts a second import of the same
   file, asks for a cancel from another process once it is running, and reports how long
   the operation took to stop (from ``cancel_requested_at`` to the last committed chunk) and
   how many chunks committed after the request (target: at most one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.generate import write_file
from bench.installed import compile_packages

BIN = Path(sys.executable).with_name("bulkops")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"

Query = Callable[[str, tuple[Any, ...]], tuple[Any, ...] | None]
"""One row of a query, with ``?`` marks (the PostgreSQL form is derived)."""


@contextlib.contextmanager
def fresh_database(kind: str, work: Path, pg_url: str) -> Iterator[tuple[str, Query]]:
    """A new database for bulkops (its URL) and a way to read it directly."""
    if kind == "sqlite":
        path = work / "bench.db"
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:

            def sqlite_query(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
                row = conn.execute(sql, params).fetchone()
                return tuple(row) if row is not None else None

            yield f"sqlite:///{path}", sqlite_query
        return
    import psycopg

    base = pg_url.rstrip("/")
    libpq = base.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"bulkops_undo_{os.getpid()}"
    with psycopg.connect(f"{libpq}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            # The server's superuser reads past row-level security: enough for a benchmark.
            with psycopg.connect(f"{libpq}/{name}", autocommit=True) as conn:

                def pg_query(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
                    return conn.execute(sql.replace("?", "%s"), params).fetchone()

                yield f"{base}/{name}", pg_query
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one command."""
    stats = cwd / "time.txt"
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-o", str(stats), "-f", "%M", *cmd],
        cwd=cwd, capture_output=True, text=True, check=False,
    )
    wall = time.monotonic() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr}")
    return wall, int(stats.read_text().split()[-1]) / 1024, done.stdout


def delete_floors(url: str, data: Path, chunk: int) -> tuple[float, float]:
    """Seconds of deleting every row of the file from a table like bench.run's baseline (the
    same primary and unique keys, and the empty tables whose foreign keys point at it), loaded
    by a server-side COPY: (one set-based DELETE, DELETEs of ``chunk`` ids each committed on
    its own). What deleting those rows costs at the least, at once and in resumable steps, one
    transaction per batch, one after the other (a rollback groups ten batches a transaction
    and runs two such transactions side by side).

    A rollback of an import deletes what it created, and PostgreSQL checks each deleted row
    against every foreign key that points at it (one look-up per row and key, inventory and
    pricing), however the rows are deleted.
    """
    import psycopg

    from bench.generate import COLUMNS
    from bench.run import _server_side_copy

    libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(libpq, autocommit=True) as conn:

        def load() -> None:
            for (name,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE tablename LIKE 'raw\\_products%'"
            ).fetchall():
                conn.execute(f'DROP TABLE IF EXISTS "{name}" CASCADE')
            if _server_side_copy(conn, "raw_products", COLUMNS["products"], data) is None:
                raise SystemExit("The floor needs a server-side COPY (a superuser here).")
            conn.execute("CHECKPOINT")

        load()
        began = time.perf_counter()
        conn.execute("DELETE FROM raw_products")
        at_once = time.perf_counter() - began
        load()
        ids = [r[0] for r in conn.execute("SELECT id FROM raw_products ORDER BY id DESC")]
        began = time.perf_counter()
        for start in range(0, len(ids), chunk):
            conn.execute("DELETE FROM raw_products WHERE id = ANY(%s)", (ids[start:start + chunk],))
        return at_once, time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG,
                        help=f"PostgreSQL server (a superuser) [default: {DEFAULT_PG}]")
    args = parser.parse_args()
    compile_packages()
    with (
        tempfile.TemporaryDirectory(prefix="bulkops-undo-") as folder,
        fresh_database(args.database, Path(folder), args.pg_url) as (url, query),
    ):
        work = Path(folder)
        work.chmod(0o755)  # the PostgreSQL server reads the file itself for the floor
        data = work / "products.csv"
        write_file("products", data, args.rows)
        data.chmod(0o644)
        base = [str(BIN), "--database-url", url]
        subprocess.run([*base, "init"], cwd=work, capture_output=True, check=True)
        chunk = ["--chunk-size", str(args.chunk_size)]
        imp_s, imp_mb, out = timed([*base, "import", "products", str(data), *chunk, "--json"], work)
        op = json.loads(out)
        assert op["created_records"] == args.rows, op
        rb_s, rb_mb, out = timed([*base, "rollback", op["id"], "--json"], work)
        rolled = json.loads(out)
        assert rolled["status"] == "rolled_back" and rolled["rolled_back_records"] == args.rows
        print(f"{args.database}  rows {args.rows:,}  chunk {args.chunk_size}")
        print(f"import    {imp_s:7.2f} s  {args.rows / imp_s:9,.0f} rows/s  RSS {imp_mb:6.1f} MB")
        print(f"rollback  {rb_s:7.2f} s  {args.rows / rb_s:9,.0f} rows/s  RSS {rb_mb:6.1f} MB")
        ratio = rb_s / imp_s
        print(f"{'PASS' if ratio <= 1.2 else 'FAIL'}  rollback / import = {ratio:.2f} (<= 1.2)")
        if args.database == "postgresql":
            at_once, chunked = delete_floors(url, data, args.chunk_size)
            print("floors: deleting the same rows from a table with the same keys and foreign "
                  "keys (no audit, no row-level security)")
            print(f"  one DELETE {at_once:7.2f} s  {at_once / imp_s:.2f}x the import")
            print(f"  by {args.chunk_size} ids {chunked:7.2f} s  {chunked / imp_s:.2f}x the import "
                  "(one transaction per batch, one after the other)")

        running = subprocess.Popen(
            [*base, "import", "products", str(data), *chunk, "--json"],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        op_id = None
        while op_id is None:
            time.sleep(0.2)
            row = query(
                "SELECT id FROM operations WHERE status = 'processing' AND processed_records > 0",
                (),
            )
            op_id = row[0] if row else None
        time.sleep(1.0)
        asked = subprocess.run([*base, "cancel", op_id], cwd=work, capture_output=True, text=True)
        running.wait()
        if asked.returncode != 0:  # the import ended first: too few rows to cancel one
            print(f"SKIP  cancel: {asked.stderr.strip() or asked.stdout.strip()}")
            return 0
        stopped = query(
            "SELECT cancel_requested_at, cancelled_at FROM operations WHERE id = ?", (op_id,)
        )
        assert stopped is not None
        requested, cancelled = stopped
        chunks = query(
            "SELECT max(committed_at), sum(CASE WHEN committed_at > ? THEN 1 ELSE 0 END) "
            "FROM operation_chunks WHERE operation_id = ? AND phase = 'apply'",
            (requested, op_id),
        )
        assert chunks is not None
        last_chunk, after = chunks
        delay = (datetime.fromisoformat(str(cancelled)) - datetime.fromisoformat(str(requested)))
        print(f"cancel: stopped {delay.total_seconds() * 1000:.0f} ms after the request; "
              f"{after or 0} chunk(s) committed after it (last chunk at {last_chunk})")
        print(f"{'PASS' if (after or 0) <= 1 else 'FAIL'}  cancel honoured within one chunk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
