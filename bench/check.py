"""Benchmark of a check that keeps its plan (CONTRACT section 7).

For each size: a fresh SQLite database (or PostgreSQL with ``--database postgresql``) gets the
products imported (not measured); then a ``validate_only`` import of a file of updates of
every row (the rows exist) runs as the real CLI, alternately keeping its plan (the default)
and not keeping it (``BULKOPS_KEEP_CHECK_PLAN=false``), ``--repeat`` times each; the best
wall time of each is compared (target: keeping the plan <= 1.3x). Peak RSS is the whole
process tree's (bench.run.measure). Then the first and the last page of the planned changes
are read through the engine (``engine.planned_changes``, 100 items), each several times.

    .venv/bin/python -m bench.check                       # 100k and 1M rows, SQLite
    .venv/bin/python -m bench.check --rows 20000          # quick
    .venv/bin/python -m bench.check --database postgresql
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run import ensure_file, fresh_database, log, measure
from bulkops import engine
from bulkops.config import Settings

TARGET_RATIO = 1.3
TARGET_RSS_GROWTH = 1.25
CHUNK_SIZE = 1000


def _cli(url: str, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "bulkops"), "--database-url", url, *args]


def _run(
    cmd: list[str], rundir: Path, env: dict[str, str]
) -> tuple[float, float, dict[str, Any]]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        run = measure(cmd, cwd=rundir, scratch=rundir)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if run.returncode != 0:
        raise SystemExit(f"failed ({run.returncode}): {' '.join(cmd)}\n{run.stderr[-2000:]}")
    view = json.loads(run.stdout) if "--json" in cmd else {}
    return run.wall_s, run.peak_rss_mb, view


def _page_seconds(ctx: engine.Context, org_id: int, op_id: str, after: object) -> float:
    times = []
    for _ in range(7):
        began = time.perf_counter()
        page = engine.planned_changes(ctx, org_id, op_id, limit=100, after=after)  # type: ignore[arg-type]
        times.append(time.perf_counter() - began)
        assert len(page) == 100, len(page)
    return statistics.median(times)


def bench_size(
    rows: int, workdir: Path, database: str, pg_base: str, repeat: int
) -> dict[str, Any]:
    imports = ensure_file(workdir, "products", rows, "import")
    updates = ensure_file(workdir, "products", rows, "update")
    rundir = Path(tempfile.mkdtemp(prefix=f"check-{rows}-", dir=workdir))
    with fresh_database(database, rundir, f"check{rows}", pg_base) as db:
        env = {"BULKOPS_DATA_DIR": str(rundir / "data")}
        _run(_cli(db.cli_url, "init"), rundir, env)
        log(f"{rows:,}: importing the rows (not measured) ...")
        _run(_cli(db.cli_url, "import", "products", str(imports), "--json"), rundir, env)
        check = _cli(
            db.cli_url, "import", "products", str(updates), "--validate-only", "--json",
            "--chunk-size", str(CHUNK_SIZE),
        )
        kept: list[tuple[float, float, dict[str, Any]]] = []
        plain: list[tuple[float, float, dict[str, Any]]] = []
        for attempt in range(repeat):
            log(f"{rows:,}: check without plan ({attempt + 1}/{repeat}) ...")
            plain.append(_run(check, rundir, {**env, "BULKOPS_KEEP_CHECK_PLAN": "false"}))
            log(f"{rows:,}: check keeping its plan ({attempt + 1}/{repeat}) ...")
            kept.append(_run(check, rundir, env))
        view = kept[-1][2]
        assert view["updated_records"] == rows, view
        settings = Settings(database_url=db.cli_url, data_dir=rundir / "data")
        ctx = engine.open_context(settings)
        try:
            org_id = engine.resolve_organization(ctx.store, None)["id"]
            last_chunk = (rows - 1) // CHUNK_SIZE
            first = _page_seconds(ctx, org_id, view["id"], None)
            last = _page_seconds(ctx, org_id, view["id"], (last_chunk, CHUNK_SIZE - 101))
        finally:
            engine.close_context(ctx)
    best_kept = min(k[0] for k in kept)
    best_plain = min(p[0] for p in plain)
    return {
        "rows": rows,
        "check_s": best_kept,
        "check_without_plan_s": best_plain,
        "ratio": best_kept / best_plain,
        "peak_rss_mb": max(k[1] for k in kept),
        "peak_rss_without_plan_mb": max(p[1] for p in plain),
        "first_page_ms": first * 1000,
        "last_page_ms": last * 1000,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432"),
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.keep or Path(tempfile.gettempdir()) / "bulkops-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    results = [
        bench_size(int(n), workdir, args.database, args.pg_url, args.repeat)
        for n in args.rows.split(",")
    ]
    print(f"check (validate_only import of updates), {args.database}, best of {args.repeat}")
    print(f"{'rows':>9} {'plan s':>8} {'no plan s':>10} {'ratio':>6} {'RSS MB':>7} "
          f"{'RSS no plan':>11} {'1st page ms':>12} {'last page ms':>13}")
    for r in results:
        print(f"{r['rows']:>9,} {r['check_s']:>8.1f} {r['check_without_plan_s']:>10.1f} "
              f"{r['ratio']:>6.2f} {r['peak_rss_mb']:>7.0f} {r['peak_rss_without_plan_mb']:>11.0f} "
              f"{r['first_page_ms']:>12.1f} {r['last_page_ms']:>13.1f}")
    ok = all(r["ratio"] <= TARGET_RATIO for r in results)
    print(f"plan kept within {TARGET_RATIO}x: {'yes' if ok else 'NO'}")
    if len(results) >= 2:
        growth = results[-1]["peak_rss_mb"] / results[0]["peak_rss_mb"]
        print(f"peak RSS {results[-1]['rows']:,} / {results[0]['rows']:,}: {growth:.2f} "
              f"(target <= {TARGET_RSS_GROWTH})")
        ok = ok and growth <= TARGET_RSS_GROWTH
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
