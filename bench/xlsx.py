"""Spreadsheet benchmark: a products import from XLSX against the CSV of the same rows, and
an XLSX export, through the real CLI.

    .venv/bin/python -m bench.xlsx                         # 100k and 1M rows, SQLite
    .venv/bin/python -m bench.xlsx --rows 20000            # quick check
    .venv/bin/python -m bench.xlsx --database postgresql

For each size it takes the CSV of ``bench.run`` (generated once, reused), writes the same
rows as a workbook (prices as number cells, everything else as text cells, as an export
does), then in fresh databases runs ``bulkops import products FILE --json`` on the CSV and
on the workbook, and ``bulkops export products -o FILE.xlsx --json``. Wall time and peak RSS
(whole process tree, reader process included) are measured as ``bench.run`` measures them.

Targets: XLSX import time <= 3x the CSV import's in the same run; its peak RSS < 250 MB and
(1M over 100k) <= 1.25. Exit status 1 when a target is missed, 2 when a command fails.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import xlsxwriter

from bench.run import DEFAULT_PG, Bench, BenchError, ensure_file, fresh_database, log

TARGET_RATIO = 3.0
TARGET_RSS_MB = 250.0
TARGET_RSS_GROWTH = 1.25


def csv_to_xlsx(source: Path, target: Path) -> None:
    if target.exists() and target.stat().st_mtime > source.stat().st_mtime:
        return
    log(f"writing {target.name} ...")
    began = time.perf_counter()
    book = xlsxwriter.Workbook(str(target), {"constant_memory": True})
    sheet = book.add_worksheet("products")
    with source.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        price = header.index("price")
        sheet.write_row(0, 0, header)
        for r, row in enumerate(reader, start=1):
            for c, value in enumerate(row):
                if c == price and value:
                    sheet.write_number(r, c, float(value))
                elif value:
                    sheet.write_string(r, c, value)
    book.close()
    log(f"  {target.stat().st_size / 2**20:.1f} MB in {time.perf_counter() - began:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.xlsx", description=__doc__)
    parser.add_argument("--rows", default="100000,1000000")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", DEFAULT_PG))
    parser.add_argument("--keep", type=Path, metavar="DIR")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    args.entity = "products"
    workdir = args.keep or Path(tempfile.gettempdir()) / "bulkops-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    results: list[dict[str, Any]] = []
    try:
        for rows in [int(n) for n in args.rows.split(",")]:
            source = ensure_file(workdir, "products", rows, "import")
            workbook = workdir / f"products-{rows}-import.xlsx"
            csv_to_xlsx(source, workbook)
            rundir = Path(tempfile.mkdtemp(prefix=f"xlsx-{rows}-", dir=workdir))
            figures: dict[str, Any] = {"rows": rows}
            for label, path in (("csv", source), ("xlsx", workbook)):
                with fresh_database(args.database, rundir, f"{label}{rows}", args.pg_url) as db:
                    bench.init(db, rundir)
                    log(f"{rows:,} rows: import {label}")
                    run, _ = bench.cli_op(db, rundir, "import", "products", path, rows)
                    figures[f"import_{label}_s"] = round(run.wall_s, 1)
                    figures[f"import_{label}_rss_mb"] = round(run.peak_rss_mb)
                    if label == "xlsx":
                        out = rundir / "export.xlsx"
                        log(f"{rows:,} rows: export xlsx")
                        export = bench.cli(
                            db, rundir, "export", "products", "-o", str(out), "--json"
                        )
                        if export.returncode != 0:
                            raise BenchError(f"export failed:\n{export.stderr[-2000:]}")
                        exported = json.loads(export.stdout)["processed_records"]
                        if exported != rows:
                            raise BenchError(f"export wrote {exported} rows, expected {rows}")
                        figures["export_xlsx_s"] = round(export.wall_s, 1)
                        figures["export_xlsx_rss_mb"] = round(export.peak_rss_mb)
                        figures["export_xlsx_mb"] = round(out.stat().st_size / 2**20, 1)
            figures["xlsx_over_csv"] = round(figures["import_xlsx_s"] / figures["import_csv_s"], 2)
            results.append(figures)
    except BenchError as exc:
        log(f"FAILED: {exc}")
        return 2
    failed = False
    for figures in results:
        ok_ratio = figures["xlsx_over_csv"] <= TARGET_RATIO
        ok_rss = figures["import_xlsx_rss_mb"] < TARGET_RSS_MB
        figures["checks"] = {"ratio<=3": ok_ratio, "rss<250MB": ok_rss}
        failed |= not (ok_ratio and ok_rss)
    if len(results) >= 2:
        growth = results[-1]["import_xlsx_rss_mb"] / results[0]["import_xlsx_rss_mb"]
        results[-1]["checks"]["rss_growth<=1.25"] = growth <= TARGET_RSS_GROWTH
        results[-1]["rss_growth"] = round(growth, 2)
        failed |= growth > TARGET_RSS_GROWTH
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"{'rows':>9} {'csv s':>7} {'csv MB':>7} {'xlsx s':>7} {'xlsx MB':>8} "
              f"{'ratio':>6} {'export s':>9} {'export MB':>10}  checks")
        for f in results:
            checks = " ".join(f"{k}:{'ok' if v else 'MISSED'}" for k, v in f["checks"].items())
            print(f"{f['rows']:>9,} {f['import_csv_s']:>7} {f['import_csv_rss_mb']:>7} "
                  f"{f['import_xlsx_s']:>7} {f['import_xlsx_rss_mb']:>8} {f['xlsx_over_csv']:>6} "
                  f"{f['export_xlsx_s']:>9} {f['export_xlsx_rss_mb']:>10}  {checks}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
