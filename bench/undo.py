"""Benchmark of undo: rollback of an import beside the import itself, and the cancel delay.

    python -m bench.undo [--rows 1000000] [--chunk-size 1000] [--database-url URL]

1. imports ROWS products into a fresh SQLite database with the real CLI, measuring wall
   seconds and peak RSS (``/usr/bin/time``); 2. rolls that import back the same way and
   prints the ratio (target: at most 1.2x the import); 3. starts a second import of the same
   file, asks for a cancel from another process once it is running, and reports how long
   the operation took to stop (from ``cancel_requested_at`` to the last committed chunk) and
   how many chunks committed after the request (target: at most one).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.generate import write_file

BIN = Path(sys.executable).with_name("bulkops")


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bulkops-undo-") as folder:
        work = Path(folder)
        data = work / "products.csv"
        write_file("products", data, args.rows)
        db = work / "bench.db"
        base = [str(BIN), "--database-url", f"sqlite:///{db}"]
        subprocess.run([*base, "init"], cwd=work, capture_output=True, check=True)
        chunk = ["--chunk-size", str(args.chunk_size)]
        imp_s, imp_mb, out = timed([*base, "import", "products", str(data), *chunk, "--json"], work)
        op = json.loads(out)
        assert op["created_records"] == args.rows, op
        rb_s, rb_mb, out = timed([*base, "rollback", op["id"], "--json"], work)
        rolled = json.loads(out)
        assert rolled["status"] == "rolled_back" and rolled["rolled_back_records"] == args.rows
        print(f"rows {args.rows:,}  chunk {args.chunk_size}")
        print(f"import    {imp_s:7.2f} s  {args.rows / imp_s:9,.0f} rows/s  RSS {imp_mb:6.1f} MB")
        print(f"rollback  {rb_s:7.2f} s  {args.rows / rb_s:9,.0f} rows/s  RSS {rb_mb:6.1f} MB")
        ratio = rb_s / imp_s
        print(f"{'PASS' if ratio <= 1.2 else 'FAIL'}  rollback / import = {ratio:.2f} (<= 1.2)")

        running = subprocess.Popen(
            [*base, "import", "products", str(data), *chunk, "--json"],
            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        conn = sqlite3.connect(db)
        op_id = None
        while op_id is None:
            time.sleep(0.2)
            row = conn.execute(
                "SELECT id FROM operations WHERE status = 'processing' AND processed_records > 0"
            ).fetchone()
            op_id = row[0] if row else None
        time.sleep(1.0)
        subprocess.run([*base, "cancel", op_id], cwd=work, capture_output=True, check=True)
        running.wait()
        requested, cancelled = conn.execute(
            "SELECT cancel_requested_at, cancelled_at FROM operations WHERE id = ?", (op_id,)
        ).fetchone()
        last_chunk, after = conn.execute(
            "SELECT max(committed_at), sum(committed_at > ?) FROM operation_chunks "
            "WHERE operation_id = ? AND phase = 'apply'", (requested, op_id),
        ).fetchone()
        delay = (datetime.fromisoformat(str(cancelled)) - datetime.fromisoformat(str(requested)))
        print(f"cancel: stopped {delay.total_seconds() * 1000:.0f} ms after the request; "
              f"{after or 0} chunk(s) committed after it (last chunk at {last_chunk})")
        print(f"{'PASS' if (after or 0) <= 1 else 'FAIL'}  cancel honoured within one chunk")
    return 0


if __name__ == "__main__":
    sys.exit(main())
