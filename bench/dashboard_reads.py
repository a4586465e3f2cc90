"""How long the dashboard's reads take on a large operation: the day's totals, the first and
a late page of audit records, and a search by key (the first match and one near the end).

    .venv/bin/python -m bench.dashboard_reads --rows 100000 [--database-url URL]

Imports ``--rows`` products once (SQLite file in a temporary folder unless a URL is given),
then times each read several times and prints the median in milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bulkops import engine
from bulkops.config import Settings
from bulkops.model import EntityType, OperationType


def _median_ms(work: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bulkops-reads-"))
    url = args.database_url or f"sqlite:///{folder / 'bench.db'}"
    settings = Settings(database_url=url, data_dir=folder / "data")
    ctx = engine.open_context(settings)
    engine.migrate_schema(ctx)
    org_id = engine.create_organization(ctx.store, f"bench{int(time.time())}", "Bench")
    source = folder / "products.csv"
    with source.open("w") as out:
        out.write("sku,name,price\n")
        for i in range(args.rows):
            out.write(f"SKU-{i:07d},Product {i},{i % 90 + 1}.50\n")
    op = engine.create_operation(
        ctx, org_id, operation_type=OperationType.IMPORT, entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(), source=source, file_name=source.name,
    )
    started = time.perf_counter()
    engine.execute(ctx, org_id, op.id)
    print(f"import of {args.rows:,} rows: {time.perf_counter() - started:.1f} s")
    since = datetime.now(UTC) - timedelta(days=1)
    late = engine.audit_records(ctx, org_id, op.id, limit=1, key_contains=f"{args.rows - 30:07d}")
    figures = {
        "totals of the day": lambda: engine.operation_totals(ctx, org_id, since),
        "audit, first page (21)": lambda: engine.audit_records(ctx, org_id, op.id, limit=21),
        "audit, page after a late record": lambda: engine.audit_records(
            ctx, org_id, op.id, limit=21, after_id=late[0]["id"]
        ),
        "audit, page before a late record": lambda: engine.audit_records(
            ctx, org_id, op.id, limit=21, before_id=late[0]["id"]
        ),
        "search by key, early match": lambda: engine.audit_records(
            ctx, org_id, op.id, limit=21, key_contains="SKU-0000012"
        ),
        "search by key, match near the end": lambda: engine.audit_records(
            ctx, org_id, op.id, limit=21, key_contains=f"{args.rows - 5:07d}"
        ),
        "search by key, no match": lambda: engine.audit_records(
            ctx, org_id, op.id, limit=21, key_contains="NO-SUCH-KEY"
        ),
    }
    for name, work in figures.items():
        print(f"{name:<36} {_median_ms(work):8.1f} ms")
    engine.close_context(ctx)


if __name__ == "__main__":
    main()
