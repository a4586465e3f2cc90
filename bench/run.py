"""Benchmark of the real ``bulkops`` CLI beside a raw baseline measured in the same run.

For every size (``--rows``) and operation (``--ops``) the real CLI runs as a subprocess on
a fresh database (``bulkops init`` first), in the order import (into an empty database),
update, export, delete; an import of a file with 1 % invalid rows runs on its own fresh
database and is reported on its own line. Each measured command is timed around the whole
process and its peak RSS is the largest sum over its process tree (the writer and its
forked reader) seen by polling every 10 ms. Its ``--json`` counters are checked; a wrong
counter aborts the run.

The raw baseline runs the same operation on the same file in a separate, equally measured
Python process, with no validation and no audit:

The baseline's table has bulkops' primary key and unique key, and the tables whose foreign
keys point at the entity (inventory and pricing at products; inventory at warehouses) exist,
empty, with their keys, so the database checks the same references (a fair baseline):

* SQLite: ``executemany`` of INSERT / UPDATE / DELETE, 1000 rows per transaction (WAL,
  ``synchronous=NORMAL``, ``foreign_keys=ON``, as the engine);
* PostgreSQL: a server-side ``COPY ... FROM 'file' (FORMAT csv, HEADER)`` into that table
  (where the server cannot read the file, ``COPY ... FROM STDIN`` fed by ``csv.reader``);
  update and delete copy the file into a temporary table and run one ``UPDATE ... FROM`` /
  ``DELETE ... USING``;
* export: ``SELECT`` + ``csv.writer``.

Targets, printed PASS / FAIL with the ratio: at 1M rows, a PostgreSQL import at most 3x its
baseline, every other operation at most 4x (other sizes print their ratio as ``info``);
peak RSS under 200 MB and flat (1M over 100k <= 1.25).
With ``pgloader`` installed, a PostgreSQL run also times ``pgloader`` loading the same file
into the same kind of table, as a peer (not a target).

Usage::

    python -m bench.run [--rows 100000,1000000] [--ops import,update,delete,export]
        [--database sqlite|postgresql] [--entity products] [--keep DIR] [--json]

Exit status: 0 all target checks pass (or were skipped), 1 a target check failed,
2 a command failed or printed wrong counters.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.generate import COLUMNS, ENTITIES, KEY_COLUMNS, keys_only, references_needed, write_file
from bench.installed import compile_packages

ROOT = Path(__file__).resolve().parent.parent
OPS = ("import", "update", "export", "delete")  # the order they run in
INVALID_OP = "import_invalid"
INVALID_EVERY = 100
CHUNK = 1000  # rows per transaction in the SQLite baseline
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432"

# Targets, checked at the end and printed as PASS / FAIL / SKIP: ratios to the fair baseline
# of the same run at 1M rows (a PostgreSQL import at most 3x a COPY into a table with the
# same keys; every other operation at most 4x), and memory.
TARGET_RSS_MB = 200.0
TARGET_RSS_GROWTH = 1.25
TARGET_BASELINE_RATIO = {("postgresql", "import"): 3.0}
TARGET_OTHER_RATIO = 4.0
TARGET_ROWS = 1_000_000
"""The size the time targets are set at; other sizes print their ratio as ``info``."""


def target_ratio(database: str, op: str) -> float:
    return TARGET_BASELINE_RATIO.get((database, op), TARGET_OTHER_RATIO)


class BenchError(RuntimeError):
    """A command failed or printed counters that do not match the file."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- measuring a child process ------------------------------------------------------------

@dataclass
class Run:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    #: CPU seconds: "process" (the command itself), "children" (the processes it started,
    #: an import's reader), "database" (the PostgreSQL server's processes meanwhile).
    cpu_s: dict[str, float] = field(default_factory=dict)


def _server_cpu() -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL server process on this machine."""
    import psutil

    seen = {}
    for p in psutil.process_iter(["name"]):
        if (p.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                times = p.cpu_times()
                seen[p.pid] = times.user + times.system
    return seen


def settle(server_url: str | None) -> None:
    """Let the writes of the runs before settle, so that the next run does not pay for them:
    the kernel's write-back of dirty pages (``sync``) and, with ``server_url`` (PostgreSQL),
    a checkpoint (see bench/README.md: the baseline, which runs right after bulkops, paid
    for the write-back of bulkops' pages)."""
    os.sync()
    if server_url:
        import psycopg

        libpq = server_url.replace("postgresql+psycopg://", "postgresql://", 1).rstrip("/")
        try:
            with psycopg.connect(f"{libpq}/postgres", autocommit=True) as admin:
                admin.execute("CHECKPOINT")
        except psycopg.Error as exc:  # not allowed to: the run goes on unsettled
            log(f"  (no CHECKPOINT before the run: {exc})")
        os.sync()


def measure(
    cmd: Sequence[str], *, cwd: Path, scratch: Path, server: bool = False,
    server_url: str | None = None,
) -> Run:
    """Run ``cmd``; return its wall seconds, the peak RSS of its whole process tree and the
    CPU seconds of its processes and of the database server. :func:`settle` first.

    An import runs as two processes (the writer and its forked reader), so the figure is
    the largest sum of their resident memory seen while polling every 10 ms (pages they
    share are counted twice: an upper bound). Wall time is measured here with
    ``perf_counter`` around the whole child process, interpreter start-up included. The
    command's own CPU time is exact (``wait4``); its children's and the server's are the
    last seen while polling (every 10 ms and, with ``server``, 200 ms).
    """
    import psutil

    settle(server_url)
    out_path, err_path = scratch / "child.out", scratch / "child.err"
    peak = 0
    children: dict[int, float] = {}
    server_before = _server_cpu() if server else {}
    seen = dict(server_before)
    polled = 0.0
    with out_path.open("w") as out, err_path.open("w") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err)
        ps = psutil.Process(proc.pid)
        while True:
            with contextlib.suppress(psutil.Error):
                tree = [ps, *ps.children(recursive=True)]
                total = 0
                for member in tree:
                    with contextlib.suppress(psutil.Error):
                        total += member.memory_info().rss
                        if member.pid != proc.pid:
                            times = member.cpu_times()
                            children[member.pid] = times.user + times.system
                peak = max(peak, total)
            if server and time.perf_counter() - polled > 0.2:
                seen.update(_server_cpu())
                polled = time.perf_counter()
            # Reaped here, so that its resource usage is the command's own (and that of the
            # children it waited for, which are polled above and taken off).
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.01)
        wall = time.perf_counter() - began
    child_cpu = sum(children.values())
    cpu = {
        "process": max(usage.ru_utime + usage.ru_stime - child_cpu, 0.0),
        "children": child_cpu,
    }
    if server:
        seen.update(_server_cpu())
        cpu["database"] = sum(v - server_before.get(k, 0.0) for k, v in seen.items())
    returncode = proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, peak / 2**20, returncode, out_path.read_text(), err_path.read_text(), cpu)


# --- input files --------------------------------------------------------------------------

def ensure_file(workdir: Path, entity: str, rows: int, kind: str) -> Path:
    """Generate (or reuse, if present with the recorded size) one input file.

    ``kind``: ``import`` (variant 0), ``update`` (variant 1, same keys), ``delete`` (keys
    only), ``invalid`` (variant 0 with every 100th row invalid).
    """
    path = workdir / f"{entity}-{rows}-{kind}.csv"
    index_path = workdir / "files.json"
    index: dict[str, int] = json.loads(index_path.read_text()) if index_path.exists() else {}
    if path.exists() and index.get(path.name) == path.stat().st_size:
        return path
    log(f"generating {path.name} ...")
    began = time.perf_counter()
    if kind == "delete":
        size = keys_only(entity, path, rows)
    else:
        size = write_file(
            entity, path, rows,
            variant=1 if kind == "update" else 0,
            invalid_every=INVALID_EVERY if kind == "invalid" else 0,
        )
    log(f"  {size / 2**20:.1f} MB in {time.perf_counter() - began:.1f} s")
    index[path.name] = size
    index_path.write_text(json.dumps(index, indent=1, sort_keys=True))
    return path


def ensure_references(workdir: Path, entity: str, rows: int) -> list[tuple[str, Path]]:
    """Files of the products / warehouses that ``rows`` rows of ``entity`` refer to."""
    out = []
    for ref in ("warehouses", "products"):
        count = references_needed(entity, rows).get(ref, 0)
        if count:
            out.append((ref, ensure_file(workdir, ref, count, "import")))
    return out


def count_csv_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


# --- databases ----------------------------------------------------------------------------

@dataclass
class Database:
    cli_url: str  # SQLAlchemy URL for bulkops
    raw_target: str  # what the raw worker connects to: a SQLite path or a libpq URL


@contextlib.contextmanager
def fresh_database(kind: str, rundir: Path, name: str, pg_base: str) -> Iterator[Database]:
    """A fresh, empty database for bulkops and a fresh, separate one for the baseline."""
    if kind == "sqlite":
        cli, raw = rundir / f"{name}.db", rundir / f"{name}-raw.db"
        for path in (cli, raw):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        yield Database(f"sqlite:///{cli}", str(raw))
        return
    import psycopg

    libpq_base = pg_base.replace("postgresql+psycopg://", "postgresql://", 1).rstrip("/")
    names = [f"bulkops_bench_{os.getpid()}_{name}", f"bulkops_bench_{os.getpid()}_{name}_raw"]
    with psycopg.connect(f"{libpq_base}/postgres", autocommit=True) as admin:
        for db in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{db}"')
        try:
            yield Database(f"{pg_base.rstrip('/')}/{names[0]}", f"{libpq_base}/{names[1]}")
        finally:
            for db in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# --- the raw baseline (runs in its own process: python -m bench.run _raw ...) ------------

def _raw_table(entity: str) -> str:
    return f"raw_{entity}"


# The tables that point at an entity, as bulkops' schema has them (tables.py): their unique
# key (whose leading columns serve the foreign key's look-ups) and the foreign key (ON DELETE
# RESTRICT on PostgreSQL, NO ACTION on SQLite, as migration 0010 left bulkops' own). A fair
# update or delete baseline keeps them (empty), so the database checks the same references.
_REFERENCING: dict[str, list[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]]] = {
    # entity: [(table suffix, its columns, its unique key, the referring columns)]
    "products": [
        ("inventory", ("sku", "warehouse_code"), ("sku", "warehouse_code"), ("sku",)),
        ("pricing", ("sku", "price_tier", "min_quantity"),
         ("sku", "price_tier", "min_quantity"), ("sku",)),
    ],
    "warehouses": [
        ("inventory", ("sku", "warehouse_code"), ("sku", "warehouse_code"),
         ("warehouse_code",)),
    ],
}


def _referencing_ddl(entity: str, *, postgres: bool) -> list[str]:
    """CREATE statements of the (empty) tables that point at the raw entity table."""
    keys = KEY_COLUMNS[entity]
    ident = "id bigserial PRIMARY KEY" if postgres else "id INTEGER PRIMARY KEY AUTOINCREMENT"
    org = "organization_id bigint NOT NULL" if postgres else "organization_id INTEGER NOT NULL"
    statements = []
    for suffix, cols, unique, refers in _REFERENCING.get(entity, []):
        table = f"{_raw_table(entity)}_ref_{suffix}"
        statements.append(
            f"CREATE TABLE {table} ({ident}, {org}, "
            f"{', '.join(f'{c} text NOT NULL' for c in cols)}, "
            f"UNIQUE (organization_id, {', '.join(unique)}), "
            f"FOREIGN KEY (organization_id, {', '.join(refers)}) "
            f"REFERENCES {_raw_table(entity)} (organization_id, {', '.join(keys)})"
            + (" ON DELETE RESTRICT)" if postgres else ")")
        )
        if refers != unique[: len(refers)]:
            statements.append(
                f"CREATE INDEX ix_{table} ON {table} (organization_id, {', '.join(refers)})"
            )
    return statements


def _sqlite_connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")  # as bulkops connects
    return conn


def _chunks(reader: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    batch: list[list[str]] = []
    for row in reader:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def raw_sqlite(op: str, entity: str, target: str, path: Path) -> int:
    cols, keys = COLUMNS[entity], KEY_COLUMNS[entity]
    values = [c for c in cols if c not in keys]
    table = _raw_table(entity)
    conn = _sqlite_connect(target)
    if op == "import":
        conn.execute(
            f"CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            f"organization_id INTEGER NOT NULL, {', '.join(f'{c} TEXT' for c in cols)})"
        )
        conn.execute(
            f"CREATE UNIQUE INDEX uq_{table} ON {table} (organization_id, {', '.join(keys)})"
        )
        for statement in _referencing_ddl(entity, postgres=False):
            conn.execute(statement)
        sql = (f"INSERT INTO {table} (organization_id, {', '.join(cols)}) "
               f"VALUES (1, {', '.join('?' * len(cols))})")
        order = list(range(len(cols)))
    elif op == "update":
        sql = (f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in values)} "
               f"WHERE organization_id = 1 AND {' AND '.join(f'{k} = ?' for k in keys)}")
        order = [cols.index(c) for c in values] + [cols.index(k) for k in keys]
    elif op == "delete":
        sql = (f"DELETE FROM {table} "
               f"WHERE organization_id = 1 AND {' AND '.join(f'{k} = ?' for k in keys)}")
        order = list(range(len(keys)))
    elif op == "export":
        count = 0
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\r\n")
            writer.writerow(cols)
            cur = conn.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE organization_id = 1")
            while rows := cur.fetchmany(10_000):
                writer.writerows(rows)
                count += len(rows)
        return count
    else:
        raise ValueError(op)
    changed = 0
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        identity = order == list(range(len(order))) and op != "delete"
        for batch in _chunks(reader, CHUNK):
            params = batch if identity else [[row[i] for i in order] for row in batch]
            conn.execute("BEGIN")
            cur = conn.executemany(sql, params)
            changed += cur.rowcount
            conn.execute("COMMIT")
    conn.close()
    return changed


def raw_postgresql(op: str, entity: str, target: str, path: Path) -> int:
    import psycopg

    cols, keys = COLUMNS[entity], KEY_COLUMNS[entity]
    values = [c for c in cols if c not in keys]
    table = _raw_table(entity)
    with psycopg.connect(target, autocommit=True) as conn:
        if op == "export":
            count = 0
            with conn.transaction(), conn.cursor(name="export") as cur, \
                    path.open("w", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh, lineterminator="\r\n")
                writer.writerow(cols)
                cur.itersize = 10_000
                cur.execute(f"SELECT {', '.join(cols)} FROM {table} WHERE organization_id = 1")
                while rows := cur.fetchmany(10_000):
                    writer.writerows(rows)
                    count += len(rows)
            return count
        file_cols = cols if op != "delete" else keys
        if op == "import":
            loaded = _server_side_copy(conn, table, cols, path)
            if loaded is not None:
                return loaded
        with conn.transaction():
            if op == "import":
                _create_pg_table(conn, entity)
                dest = f"{table} (organization_id, {', '.join(cols)})"
            else:
                typed = ", ".join(f"{c} text" for c in file_cols)
                conn.execute(f"CREATE TEMP TABLE stage ({typed})")
                dest = f"stage ({', '.join(file_cols)})"
            with conn.cursor() as cur, path.open(encoding="utf-8", newline="") as fh:
                reader = csv.reader(fh)
                next(reader)
                loaded = 0
                with cur.copy(f"COPY {dest} FROM STDIN") as copy:
                    if op == "import":
                        for row in reader:
                            copy.write_row([1, *row])
                            loaded += 1
                    else:
                        for row in reader:
                            copy.write_row(row)
                            loaded += 1
                if op == "import":
                    return loaded
                match = " AND ".join(f"t.{k} = s.{k}" for k in keys)
                if op == "update":
                    cur.execute(
                        f"UPDATE {table} t SET {', '.join(f'{c} = s.{c}' for c in values)} "
                        f"FROM stage s WHERE t.organization_id = 1 AND {match}"
                    )
                elif op == "delete":
                    cur.execute(
                        f"DELETE FROM {table} t USING stage s "
                        f"WHERE t.organization_id = 1 AND {match}"
                    )
                else:
                    raise ValueError(op)
                return cur.rowcount


def _create_pg_table(conn: Any, entity: str) -> None:
    """The baseline's table: the same primary key and unique key as bulkops' table, and
    the (empty) tables whose foreign keys point at it."""
    cols, keys = COLUMNS[entity], KEY_COLUMNS[entity]
    table = _raw_table(entity)
    conn.execute(
        f"CREATE TABLE {table} (id bigserial PRIMARY KEY, "
        "organization_id bigint NOT NULL DEFAULT 1, "
        f"{', '.join(f'{c} text' for c in cols)}, "
        f"UNIQUE (organization_id, {', '.join(keys)}))"
    )
    for statement in _referencing_ddl(entity, postgres=True):
        conn.execute(statement)


def _server_side_copy(conn: Any, table: str, cols: Sequence[str], path: Path) -> int | None:
    """The PostgreSQL load floor: the server itself reads the file (``COPY … FROM 'file'``).

    Needs a superuser (or ``pg_read_server_files``) and the file on the server's machine;
    None when that is not possible here (the caller then copies from this process).
    """
    import psycopg
    import psycopg.sql

    try:
        with conn.transaction():
            _create_pg_table(conn, table.removeprefix("raw_"))
            statement = psycopg.sql.SQL("COPY {} ({}) FROM {} (FORMAT csv, HEADER true)").format(
                psycopg.sql.Identifier(table),
                psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, cols)),
                psycopg.sql.Literal(str(path.resolve())),
            )
            cur = conn.execute(statement)
            return int(cur.rowcount)
    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.UndefinedFile,
            psycopg.errors.ObjectNotInPrerequisiteState):
        log("  (server-side COPY not possible here: the baseline copies from the client)")
        return None


def raw_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run _raw")
    parser.add_argument("database", choices=("sqlite", "postgresql"))
    parser.add_argument("op", choices=OPS)
    parser.add_argument("entity", choices=ENTITIES)
    parser.add_argument("target")
    parser.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    func = raw_sqlite if args.database == "sqlite" else raw_postgresql
    began = time.perf_counter()
    rows = func(args.op, args.entity, args.target, args.path)
    print(json.dumps({"rows": rows, "inner_s": time.perf_counter() - began}))
    return 0


# --- the benchmark ------------------------------------------------------------------------

@dataclass
class Result:
    rows: int
    op: str
    wall_s: float
    rows_per_s: float
    peak_rss_mb: float
    baseline_wall_s: float
    baseline_rows_per_s: float
    baseline_peak_rss_mb: float
    ratio: float  # op wall / baseline wall
    counters: dict[str, Any] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # see Run.cpu_s
    baseline_cpu_s: dict[str, float] = field(default_factory=dict)


@dataclass
class Check:
    name: str
    value: float | None
    limit: float
    status: str  # PASS, FAIL, SKIP or info


_EXPECT: dict[str, tuple[str, ...]] = {
    "import": ("created_records",),
    "update": ("updated_records",),
    "delete": ("deleted_records",),
    "export": ("total_records", "successful_records"),
}
_COUNTERS = ("total_records", "processed_records", "successful_records", "failed_records",
             "created_records", "updated_records", "unchanged_records", "deleted_records")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.entity: str = args.entity
        self.workdir = workdir
        self.bulkops = self._find_bulkops()
        self.peers: list[dict[str, Any]] = []

    @staticmethod
    def _find_bulkops() -> str:
        here = Path(sys.executable).parent / "bulkops"
        if here.exists():
            return str(here)
        found = shutil.which("bulkops")
        if not found:
            raise BenchError("bulkops CLI not found next to this Python nor on PATH")
        return found

    # CLI ----------------------------------------------------------------------------------

    def _server(self) -> dict[str, Any]:
        """What :func:`measure` needs to know of the database server."""
        if self.args.database != "postgresql":
            return {}
        return {"server": True, "server_url": self.args.pg_url}

    def cli(self, db: Database, rundir: Path, *argv: str) -> Run:
        return measure([self.bulkops, "--database-url", db.cli_url, *argv],
                       cwd=rundir, scratch=rundir, **self._server())

    def cli_op(self, db: Database, rundir: Path, op: str, entity: str, path: Path,
               rows: int, *, invalid: int = 0) -> tuple[Run, dict[str, Any]]:
        if op == "export":
            argv = ["export", entity, "-o", str(path), "--json"]
        else:
            argv = [op, entity, str(path), "--json", "--max-errors", str(rows + 1)]
        run = self.cli(db, rundir, *argv)
        try:
            result = json.loads(run.stdout)
        except json.JSONDecodeError as exc:
            raise BenchError(
                f"bulkops {' '.join(argv)} exited {run.returncode} without JSON:\n"
                f"{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
            ) from exc
        counters = {k: result.get(k) for k in _COUNTERS}
        counters["status"] = result.get("status")
        expected = {"status": "completed", "total_records": rows, "failed_records": invalid}
        for name in _EXPECT[op]:
            expected[name] = rows - invalid
        wrong = {k: (counters.get(k), v) for k, v in expected.items() if counters.get(k) != v}
        if op == "export":
            exported = count_csv_rows(path)
            if exported != rows:
                wrong["rows in exported file"] = (exported, rows)
        if wrong or (run.returncode != 0 and not invalid):
            raise BenchError(
                f"bulkops {' '.join(argv)} (exit {run.returncode}) printed wrong counters "
                f"(got, expected): {wrong}\n{run.stderr[-2000:]}"
            )
        return run, counters

    def raw_op(self, db: Database, rundir: Path, op: str, entity: str, path: Path,
               expected: int) -> Run:
        cmd = [sys.executable, "-m", "bench.run", "_raw", self.args.database, op, entity,
               db.raw_target, str(path)]
        run = measure(cmd, cwd=ROOT, scratch=rundir, **self._server())
        if run.returncode != 0:
            raise BenchError(f"baseline {op} failed (exit {run.returncode}):\n{run.stderr}")
        got = json.loads(run.stdout)["rows"]
        if got != expected:
            raise BenchError(f"baseline {op} changed {got} rows, expected {expected}")
        return run

    # scenarios ----------------------------------------------------------------------------

    def init(self, db: Database, rundir: Path) -> None:
        run = self.cli(db, rundir, "init")
        if run.returncode != 0:
            raise BenchError(f"bulkops init failed:\n{run.stdout}\n{run.stderr}")

    def setup_references(self, db: Database, rundir: Path, rows: int) -> None:
        """Import (unmeasured) the products and warehouses the entity's rows refer to."""
        for ref, path in ensure_references(self.workdir, self.entity, rows):
            count = references_needed(self.entity, rows)[ref]
            log(f"  setup: import {count} {ref}")
            self.cli_op(db, rundir, "import", ref, path, count)

    def run_size(self, rows: int, ops: list[str]) -> list[Result]:
        files = {kind: ensure_file(self.workdir, self.entity, rows, kind)
                 for kind in ("import", "update", "delete")
                 if kind in ops or kind == "import"}
        if INVALID_OP in ops:
            files["invalid"] = ensure_file(self.workdir, self.entity, rows, "invalid")
        rundir = self.workdir / f"run-{self.args.database}-{self.entity}-{rows}"
        rundir.mkdir(parents=True, exist_ok=True)
        results: list[Result] = []
        try:
            with fresh_database(self.args.database, rundir, "main", self.args.pg_url) as db:
                self.init(db, rundir)
                self.setup_references(db, rundir, rows)
                for op in OPS:
                    measured = op in ops
                    needed = op == "import" and any(o in ops for o in OPS[1:])
                    if not (measured or needed):
                        continue
                    if op == "export":
                        cli_path, raw_path = rundir / "export.csv", rundir / "export-raw.csv"
                    else:
                        cli_path = raw_path = files[op]
                    log(f"{rows:>9} {op:<14} bulkops ..." if measured
                        else f"{rows:>9} setup: {op} (unmeasured)")
                    run, counters = self.cli_op(db, rundir, op, self.entity, cli_path, rows)
                    raw = self.raw_op(db, rundir, op, self.entity, raw_path, rows)
                    if measured and op == "import" and self.args.repeat > 1:
                        run, raw = self.repeated_import(rundir, cli_path, rows, run, raw)
                    if measured:
                        results.append(self._result(rows, op, run, raw, counters))
                    if measured and op == "import" and self.args.database == "postgresql":
                        self.pgloader_peer(db, rundir, cli_path, rows, run.wall_s)
                    if op == "export" and not self.args.keep:
                        cli_path.unlink(missing_ok=True)
                        raw_path.unlink(missing_ok=True)
            if INVALID_OP in ops:
                invalid = rows // INVALID_EVERY
                with fresh_database(self.args.database, rundir, "invalid",
                                    self.args.pg_url) as db:
                    self.init(db, rundir)
                    self.setup_references(db, rundir, rows)
                    log(f"{rows:>9} {INVALID_OP:<14} bulkops ...")
                    run, counters = self.cli_op(db, rundir, "import", self.entity,
                                                files["invalid"], rows, invalid=invalid)
                    # No validation in the baseline: it loads the invalid rows too.
                    raw = self.raw_op(db, rundir, "import", self.entity, files["invalid"], rows)
                    results.append(self._result(rows, INVALID_OP, run, raw, counters))
        finally:
            if not self.args.keep:
                shutil.rmtree(rundir, ignore_errors=True)
        return results

    def repeated_import(
        self, rundir: Path, path: Path, rows: int, first: Run, first_raw: Run
    ) -> tuple[Run, Run]:
        """The import and its baseline measured ``--repeat`` times in all (``first`` is the
        first time), each into new, empty databases, bulkops and baseline in turn: their
        median wall times (this machine's speed drifts from minute to minute) and the
        largest peak memory."""
        runs, raws = [first], [first_raw]
        for n in range(2, self.args.repeat + 1):
            with fresh_database(self.args.database, rundir, f"repeat{n}",
                                self.args.pg_url) as db:
                self.init(db, rundir)
                self.setup_references(db, rundir, rows)
                log(f"{rows:>9} import         bulkops, time {n} of {self.args.repeat} ...")
                run, _ = self.cli_op(db, rundir, "import", self.entity, path, rows)
                runs.append(run)
                raws.append(self.raw_op(db, rundir, "import", self.entity, path, rows))
        log("          wall s: bulkops " + ", ".join(f"{r.wall_s:.2f}" for r in runs)
            + "; baseline " + ", ".join(f"{r.wall_s:.2f}" for r in raws))

        def median(measured: list[Run]) -> Run:
            cpu = {k: statistics.median(r.cpu_s.get(k, 0.0) for r in measured)
                   for k in measured[0].cpu_s}
            return Run(statistics.median(r.wall_s for r in measured),
                       max(r.peak_rss_mb for r in measured), 0, measured[0].stdout, "", cpu)

        return median(runs), median(raws)

    @staticmethod
    def _result(rows: int, op: str, run: Run, raw: Run, counters: dict[str, Any]) -> Result:
        r = Result(
            rows=rows, op=op, wall_s=run.wall_s, rows_per_s=rows / run.wall_s,
            peak_rss_mb=run.peak_rss_mb, baseline_wall_s=raw.wall_s,
            baseline_rows_per_s=rows / raw.wall_s, baseline_peak_rss_mb=raw.peak_rss_mb,
            ratio=run.wall_s / raw.wall_s, counters=counters,
            cpu_s=run.cpu_s, baseline_cpu_s=raw.cpu_s,
        )
        log(f"          {r.rows_per_s:,.0f} rows/s, {r.wall_s:.2f} s, "
            f"{r.peak_rss_mb:.0f} MB; baseline {r.baseline_rows_per_s:,.0f} rows/s, "
            f"ratio {r.ratio:.2f}")
        log("          CPU s: " + _cpu_text(run.cpu_s) + "; baseline " + _cpu_text(raw.cpu_s))
        return r

    def pgloader_peer(
        self, db: Database, rundir: Path, path: Path, rows: int, bulkops_s: float
    ) -> None:
        """pgloader loading the same file into a table like the baseline's, when installed:
        a peer tool's figure beside bulkops' (printed, not a target)."""
        if shutil.which("pgloader") is None:
            return
        import psycopg

        cols = COLUMNS[self.entity]
        table = f"peer_{self.entity}"
        with psycopg.connect(db.raw_target, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(
                f"CREATE TABLE {table} (id bigserial PRIMARY KEY, "
                "organization_id bigint NOT NULL DEFAULT 1, "
                f"{', '.join(f'{c} text' for c in cols)}, "
                f"UNIQUE (organization_id, {', '.join(KEY_COLUMNS[self.entity])}))"
            )
        command = rundir / "pgloader.load"
        command.write_text(
            f"LOAD CSV FROM '{path.resolve()}' ({', '.join(cols)})\n"
            f"  INTO {db.raw_target} TARGET TABLE {table} ({', '.join(cols)})\n"
            "  WITH skip header = 1, fields optionally enclosed by '\"',\n"
            "       fields escaped by double-quote, fields terminated by ','\n"
            "  SET work_mem to '64MB';\n",
            encoding="utf-8",
        )
        log(f"{rows:>9} import         pgloader (peer) ...")
        run = measure(["pgloader", "--quiet", str(command)], cwd=rundir, scratch=rundir)
        if run.returncode != 0:
            log(f"  pgloader failed (exit {run.returncode}): {run.stderr.strip()[:300]}")
            return
        self.peers.append({
            "rows": rows, "tool": "pgloader", "op": "import", "wall_s": run.wall_s,
            "peak_rss_mb": run.peak_rss_mb, "bulkops_over_peer": bulkops_s / run.wall_s,
        })

    def cli_startup(self) -> float:
        """Wall seconds of ``bulkops --help``: the interpreter + import floor of every op."""
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            subprocess.run([self.bulkops, "--help"], capture_output=True, check=False)
            best = min(best, time.perf_counter() - began)
        return best


def _cpu_text(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.2f}" for name, seconds in cpu.items() if seconds >= 0.005)


def checks(results: list[Result], database: str) -> list[Check]:
    out: list[Check] = []
    by = {(r.rows, r.op): r for r in results}
    worst = max(results, key=lambda r: r.peak_rss_mb, default=None)
    out.append(Check(
        f"peak RSS MB < 200 (largest: {worst.rows} {worst.op})" if worst
        else "peak RSS MB < 200", worst.peak_rss_mb if worst else None, TARGET_RSS_MB,
        _status(worst and worst.peak_rss_mb < TARGET_RSS_MB, worst)))
    sizes = sorted({r.rows for r in results})
    for op in (*OPS, INVALID_OP):
        small, large = by.get((100_000, op)), by.get((1_000_000, op))
        label = "1M/100k"
        if not (small and large) and len(sizes) > 1:
            small, large = by.get((sizes[0], op)), by.get((sizes[-1], op))
            label = f"{sizes[-1]}/{sizes[0]}"
        if not (small and large) or small is large:
            if op == "import":
                out.append(Check("import peak RSS 1M/100k <= 1.25", None,
                                 TARGET_RSS_GROWTH, "SKIP"))
            continue
        growth = large.peak_rss_mb / small.peak_rss_mb
        out.append(Check(f"{op} peak RSS {label} <= 1.25", growth, TARGET_RSS_GROWTH,
                         "PASS" if growth <= TARGET_RSS_GROWTH else "FAIL"))
    for r in results:
        if r.op == INVALID_OP:
            continue  # its baseline loads the invalid rows too: shown, not a target
        limit = target_ratio(database, r.op)
        if r.rows != TARGET_ROWS:  # start-up and other fixed costs weigh more: shown only
            out.append(Check(f"{r.op} {r.rows:,} time / baseline time (target at 1M: "
                             f"<= {limit:g})", r.ratio, limit, "info"))
            continue
        out.append(Check(f"{r.op} {r.rows:,} time / baseline time <= {limit:g}", r.ratio,
                         limit, "PASS" if r.ratio <= limit else "FAIL"))
    return out


def _status(ok: object, present: object) -> str:
    if not present:
        return "SKIP"
    return "PASS" if ok else "FAIL"


def print_table(results: list[Result], found: list[Check], meta: dict[str, Any]) -> None:
    print(f"bulkops benchmark: {meta['entity']} on {meta['database']}, "
          f"{meta['cpus']} CPUs, Python {meta['python']}; "
          f"CLI start-up floor {meta['cli_startup_s']:.2f} s")
    head = ("rows", "op", "rows/s", "wall s", "peak RSS MB", "baseline rows/s",
            "baseline s", "ratio")
    lines = [head] + [(
        f"{r.rows:,}", r.op, f"{r.rows_per_s:,.0f}", f"{r.wall_s:.2f}", f"{r.peak_rss_mb:.0f}",
        f"{r.baseline_rows_per_s:,.0f}", f"{r.baseline_wall_s:.2f}", f"{r.ratio:.2f}",
    ) for r in results]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for n, line in enumerate(lines):
        print("  ".join(c.ljust(w) if i == 1 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    for c in found:
        value = "-" if c.value is None else f"{c.value:.2f}"
        print(f"{c.status:<4}  {c.name}: {value}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the bulkops CLI against a raw baseline measured in the same run.",
    )
    parser.add_argument("--rows", default="100000,1000000",
                        help="comma-separated sizes (default: 100000,1000000)")
    parser.add_argument("--ops", default="import,update,delete,export",
                        help="comma-separated from import, update, export, delete; import also "
                             "measures an import with 1%% invalid rows (see --no-invalid)")
    parser.add_argument("--no-invalid", action="store_true",
                        help="skip the import of the file with invalid rows")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG),
                        help="server for --database postgresql; a fresh database is created "
                             f"there and dropped after (default: {DEFAULT_PG})")
    parser.add_argument("--entity", choices=ENTITIES, default="products")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep everything (files, SQLite databases, exports)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure each import N times, bulkops and its baseline in turn, "
                             "each into new databases, and report the medians (default: 1)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    try:
        args.sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--rows: not a list of integers: {args.rows!r}")
    if not args.sizes or min(args.sizes) < 1:
        parser.error("--rows: sizes must be positive")
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    unknown = set(ops) - set(OPS)
    if unknown or not ops:
        parser.error(f"--ops: unknown {sorted(unknown)}; choose from {', '.join(OPS)}")
    if "import" in ops and not args.no_invalid:
        ops.append(INVALID_OP)
    args.op_list = ops
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_raw"]:
        return raw_main(argv[1:])
    args = parse_args(argv)
    compile_packages()
    workdir = args.keep or Path(tempfile.gettempdir()) / "bulkops-bench"
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    results: list[Result] = []
    try:
        for rows in args.sizes:
            results.extend(bench.run_size(rows, args.op_list))
    except BenchError as exc:
        log(f"BENCHMARK FAILED: {exc}")
        return 2
    found = checks(results, args.database)
    meta = {
        "entity": args.entity, "database": args.database, "cpus": os.cpu_count(),
        "python": platform.python_version(), "cli_startup_s": bench.cli_startup(),
        "workdir": str(workdir),
    }
    if args.json:
        print(json.dumps({**meta, "results": [asdict(r) for r in results],
                          "checks": [asdict(c) for c in found], "peers": bench.peers},
                         indent=2))
    else:
        print_table(results, found, meta)
        for peer in bench.peers:
            print(f"peer  {peer['tool']} {peer['op']} {peer['rows']:,}: {peer['wall_s']:.2f} s, "
                  f"{peer['peak_rss_mb']:.0f} MB (bulkops takes {peer['bulkops_over_peer']:.2f}x)")
    return 1 if any(c.status == "FAIL" for c in found) else 0


if __name__ == "__main__":
    sys.exit(main())
