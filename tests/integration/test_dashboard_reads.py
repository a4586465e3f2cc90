"""What the dashboard reads, on both databases: the day's totals and the audit by key.

The totals are summed by the database for one organization; the audit is searched by its
natural key and paged both ways with a cursor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bulkops.engine import Context, audit_records, create_organization, operation_totals
from tests.helpers import run, write_csv

HEADER = "sku,name,price\n"


def _products(start: int, stop: int, price: str = "1.00") -> str:
    return "".join(f"KEY-{i:04d},Product {i},{price}\n" for i in range(start, stop))


def test_totals_count_the_day_s_operations_changes_and_failures_of_one_organization(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    midnight = datetime.now(UTC) - timedelta(hours=1)
    assert operation_totals(ctx, org_id, midnight) == (0, 0, 0)
    run(ctx, org_id, "import", "products",
        write_csv(tmp_path / "a.csv", HEADER + _products(0, 30) + "BAD-1,Bad,abc\n"))
    # A check changes nothing and its failures are predictions: it counts as an operation.
    run(ctx, org_id, "import", "products",
        write_csv(tmp_path / "b.csv", HEADER + _products(30, 40) + "BAD-2,Bad,abc\n"),
        validate_only=True)
    run(ctx, org_id, "update", "products",
        write_csv(tmp_path / "c.csv", HEADER + _products(0, 5, "2.00")))
    totals = operation_totals(ctx, org_id, midnight)
    assert (totals.operations, totals.changed_records, totals.failed_records) == (3, 35, 1)
    # Nothing was started after now, and another organization sees none of it.
    assert operation_totals(ctx, org_id, datetime.now(UTC) + timedelta(minutes=1)) == (0, 0, 0)
    other = create_organization(ctx.store, "other", "Other")
    assert operation_totals(ctx, other, midnight) == (0, 0, 0)


def test_audit_records_are_searched_by_key_and_paged_both_ways(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    body = HEADER + _products(0, 60) + '"WEIRD_%""\\1",Odd key,3.00\n'
    op_id = run(ctx, org_id, "import", "products", write_csv(tmp_path / "a.csv", body),
                chunk_size=7).id

    def keys(records: list[dict[str, object]]) -> list[str]:
        return [str(r["key"]["sku"]) for r in records]  # type: ignore[index]

    first = audit_records(ctx, org_id, op_id, limit=20)
    assert keys(first) == [f"KEY-{i:04d}" for i in range(20)]
    second = audit_records(ctx, org_id, op_id, limit=20, after_id=first[-1]["id"])
    assert keys(second) == [f"KEY-{i:04d}" for i in range(20, 40)]
    back = audit_records(ctx, org_id, op_id, limit=20, before_id=second[0]["id"])
    assert keys(back) == keys(first)

    # Any part of the key, in any letter case, across batches; other columns do not match.
    found = audit_records(ctx, org_id, op_id, limit=20, key_contains="key-005")
    assert keys(found) == [f"KEY-{i:04d}" for i in range(50, 60)]
    assert audit_records(ctx, org_id, op_id, limit=20, key_contains="Product 1") == []
    more = audit_records(ctx, org_id, op_id, limit=3, key_contains="-00",
                         after_id=audit_records(ctx, org_id, op_id, limit=3,
                                                key_contains="-00")[-1]["id"])
    assert keys(more) == ["KEY-0003", "KEY-0004", "KEY-0005"]
    # LIKE's wildcards and JSON's escapes are taken literally.
    assert keys(audit_records(ctx, org_id, op_id, limit=20, key_contains='_%"\\')) == [
        'WEIRD_%"\\1'
    ]
    assert audit_records(ctx, org_id, op_id, limit=20, key_contains="%") != []
    assert audit_records(ctx, org_id, op_id, limit=20, key_contains="EY_0") == []
