"""What the PostgreSQL write path costs by itself, beside a server-side COPY of the same file.

This measures the database's part of an import alone (no validation, no audit, no ledger;
rows parsed by ``csv.reader``, parse time not counted) on a fresh bulkops database, as the
application role (row-level security), one transaction per chunk, next to:

* ``copy``: server-side ``COPY … FROM 'file'`` into an unindexed table;
* ``copy, same keys``: the same into a table with bulkops' primary and unique keys (the
  baseline ``bench.run`` measures an import against);
* ``arrays``: bulkops' write path: one ``INSERT … SELECT unnest(…), …`` per chunk, the
  statement ``bulkops.store.postgres`` builds;
* ``staged``: the path bulkops had before: ``COPY`` into a temporary staging table, then
  ``INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING`` (``ORDER BY`` the file position);
* ``staged, no ON CONFLICT``: the same without ``ON CONFLICT DO NOTHING``.

Usage::

    python -m bench.floor [--rows 1000000] [--chunk 1000] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from bench.generate import COLUMNS, write_file

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS floor_stage (n bigint, sku varchar(64), name varchar(255), "
    "description text, category varchar(100), price numeric(12,2)) ON COMMIT DELETE ROWS"
)
INSERT = (
    "WITH s AS (DELETE FROM floor_stage RETURNING *) "
    "INSERT INTO products (organization_id, sku, name, description, category, price) "
    "SELECT %s, sku, name, description, category, price FROM s ORDER BY n{conflict} "
    "RETURNING id, sku"
)


def chunks(path: Path, size: int) -> Iterator[list[tuple[object, ...]]]:
    """Rows as bulkops stores them: prices with a decimal point, invalid ones left out."""
    seen: set[str] = set()
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        batch: list[tuple[object, ...]] = []
        for sku, name, description, category, price in reader:
            amount = price.replace(",", ".") if price else None
            if sku in seen or (amount and not amount.replace(".", "", 1).isdigit()):
                continue
            seen.add(sku)
            batch.append((sku, name, description or None, category or None, amount))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


def staged(url: str, org_id: int, path: Path, size: int, *, on_conflict: bool) -> float:
    """Seconds spent in the database for the whole file (parsing not counted)."""
    statement = INSERT.format(
        conflict=" ON CONFLICT (organization_id, sku) DO NOTHING" if on_conflict else ""
    )
    spent = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE bulkops_app")
        conn.execute(STAGE)
        for batch in chunks(path, size):
            began = time.perf_counter()
            with conn.transaction():
                conn.execute("SELECT set_config('app.current_org', %s, true)", (str(org_id),))
                conn.execute("SET LOCAL synchronous_commit = off")
                with conn.cursor() as cur:
                    with cur.copy(
                        "COPY floor_stage (n, sku, name, description, category, price) FROM STDIN"
                    ) as copy:
                        for n, row in enumerate(batch):
                            copy.write_row((n, *row))
                    cur.execute(statement, (org_id,), prepare=False)
                    cur.fetchall()
            spent += time.perf_counter() - began
    return spent


def arrays(url: str, org_id: int, path: Path, size: int) -> float:
    """Seconds spent in the database for the whole file on bulkops' own write path."""
    from bulkops.store import postgres

    fields = COLUMNS["products"]
    statement = postgres.insert_statement("products", fields)
    spent = 0.0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET ROLE bulkops_app")
        for batch in chunks(path, size):
            values = postgres.columns(batch, len(fields))
            began = time.perf_counter()
            with conn.transaction():
                conn.execute("SELECT set_config('app.current_org', %s, true)", (str(org_id),))
                conn.execute("SET LOCAL synchronous_commit = off")
                with conn.cursor() as cur:
                    cur.execute(statement, (org_id, *values), prepare=False)
                    cur.fetchall()
            spent += time.perf_counter() - began
    return spent


def server_copy(url: str, path: Path, *, keys: bool) -> float:
    """Server-side COPY into a new table: unindexed, or (``keys``) with bulkops' primary and
    unique keys."""
    cols = COLUMNS["products"]
    table = "floor_keys" if keys else "floor_copy"
    columns = ", ".join(f"{c} text" for c in cols)
    ddl = (
        f"CREATE TABLE {table} (id bigserial PRIMARY KEY, organization_id bigint NOT NULL "
        f"DEFAULT 1, {columns}, UNIQUE (organization_id, sku))"
        if keys
        else f"CREATE TABLE {table} (organization_id bigint NOT NULL DEFAULT 1, {columns})"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(ddl)
        began = time.perf_counter()
        conn.execute(
            sql.SQL("COPY {} ({}) FROM {} (FORMAT csv, HEADER true)").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.Literal(str(path)),
            )
        )
        return time.perf_counter() - began


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    args = parser.parse_args(argv)
    work = Path(tempfile.gettempdir()) / "bulkops-bench"
    work.mkdir(exist_ok=True)
    path = work / f"products-{args.rows}-floor.csv"
    if not path.exists():
        write_file("products", path, args.rows)
    name = f"bulkops_floor_{os.getpid()}"
    base = args.pg_url.rstrip("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"{base}/{name}"
    try:
        env = {**os.environ, "BULKOPS_DATABASE_URL": url.replace("postgresql://",
                                                                 "postgresql+psycopg://", 1)}
        bulkops = Path(sys.executable).with_name("bulkops")
        subprocess.run([str(bulkops), "init"], env=env, check=True, capture_output=True)
        with psycopg.connect(url, autocommit=True) as conn:
            org = conn.execute("SELECT min(id) FROM organizations").fetchone()
        org_id = int(org[0]) if org and org[0] is not None else 1
        figures = {
            "copy": server_copy(url, path, keys=False),
            "copy, same keys": server_copy(url, path, keys=True),
        }
        for label in ("arrays", "staged", "staged, no ON CONFLICT"):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("TRUNCATE products CASCADE")
                conn.execute("CHECKPOINT")
            if label == "arrays":
                figures[label] = arrays(url, org_id, path, args.chunk)
            else:
                figures[label] = staged(
                    url, org_id, path, args.chunk, on_conflict=label == "staged"
                )
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
    print(f"PostgreSQL write path, {args.rows:,} products, chunks of {args.chunk}")
    keyed = figures["copy, same keys"]
    for label, seconds in figures.items():
        print(f"  {label:<24} {seconds:7.2f} s  {seconds / figures['copy']:5.1f}x copy  "
              f"{seconds / keyed:5.1f}x copy with the same keys")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
