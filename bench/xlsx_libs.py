"""Which XLSX library to read and write with: time and peak memory on a 1M-row sheet.

    .venv/bin/python -m bench.xlsx_libs                 # 1,000,000 rows x 5 columns
    .venv/bin/python -m bench.xlsx_libs --rows 100000

``read:bulkops-open-table`` is what bulkops uses: openpyxl's row parser driven by the loop
of ``bulkops.formats.xlsx``. Each candidate runs in its own Python process
(``python -m bench.xlsx_libs _one NAME ...``) so that its peak RSS (``ru_maxrss``) is its
own. Writers write the same rows (four texts and a price); readers read the file XlsxWriter
wrote and touch every cell.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

CANDIDATES = (
    "write:xlsxwriter-constant-memory",
    "write:openpyxl-write-only",
    "read:python-calamine",
    "read:python-calamine-list",
    "read:openpyxl-read-only",
    "read:bulkops-open-table",
)


def _rows(count: int) -> Iterator[list[object]]:
    for i in range(count):
        yield [f"SKU-{i:07d}", f"Product {i}", "A description, with a comma", "tools",
               round(1 + (i % 10_000) / 100, 2)]


def _write_xlsxwriter(path: str, rows: int) -> None:
    import xlsxwriter

    book = xlsxwriter.Workbook(path, {"constant_memory": True})
    sheet = book.add_worksheet("products")
    sheet.write_row(0, 0, ["sku", "name", "description", "category", "price"])
    for r, row in enumerate(_rows(rows), start=1):
        sheet.write_row(r, 0, row)
    book.close()


def _write_openpyxl(path: str, rows: int) -> None:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("products")
    sheet.append(["sku", "name", "description", "category", "price"])
    for row in _rows(rows):
        sheet.append(row)
    book.save(path)


def _read_calamine(path: str, *, as_list: bool) -> int:
    """Cells read by python-calamine: row by row from the range it has loaded (``iter_rows``),
    or (``as_list``) as one Python list of the whole sheet (``to_python``)."""
    from python_calamine import CalamineWorkbook

    sheet = CalamineWorkbook.from_path(path).get_sheet_by_index(0)
    rows = sheet.to_python() if as_list else sheet.iter_rows()
    return sum(len(row) for row in rows)


def _read_openpyxl(path: str) -> int:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    sheet = book.worksheets[0]
    cells = 0
    for row in sheet.iter_rows(values_only=True):
        cells += len(row)
    book.close()
    return cells


def _read_bulkops(path: str) -> int:
    from bulkops.formats import open_table

    cells = 0
    with open_table(path) as table:
        for record in table.records():
            cells += len(record.values)
    return cells


def _one(name: str, path: str, rows: int) -> None:
    started = time.perf_counter()
    if name == "write:xlsxwriter-constant-memory":
        _write_xlsxwriter(path, rows)
    elif name == "write:openpyxl-write-only":
        _write_openpyxl(path, rows)
    elif name == "read:python-calamine":
        _read_calamine(path, as_list=False)
    elif name == "read:python-calamine-list":
        _read_calamine(path, as_list=True)
    elif name == "read:openpyxl-read-only":
        _read_openpyxl(path)
    elif name == "read:bulkops-open-table":
        _read_bulkops(path)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{seconds:.1f} {peak_mb:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args, rest = parser.parse_known_args()
    if rest[:1] == ["_one"]:
        _one(rest[1], rest[2], args.rows)
        return
    folder = Path(tempfile.mkdtemp(prefix="bulkops-xlsx-libs-"))
    print(f"{'candidate':36} {'rows':>9} {'seconds':>8} {'peak RSS MB':>12}")
    for name in CANDIDATES:
        target = folder / ("openpyxl.xlsx" if "openpyxl-write" in name else "sheet.xlsx")
        command = [sys.executable, "-m", "bench.xlsx_libs", "--rows", str(args.rows),
                   "_one", name, str(target)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        seconds, peak = out.split()
        print(f"{name:36} {args.rows:>9,} {seconds:>8} {peak:>12}", flush=True)
    size = os.path.getsize(folder / "sheet.xlsx")
    print(f"(file: {size / 1024**2:.1f} MB)")


if __name__ == "__main__":
    main()
