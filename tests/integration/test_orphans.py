"""Operations left behind by a dead process are found by their expired lease and resumed."""

from __future__ import annotations

import time
from pathlib import Path

from bulkops.engine import Context, OperationConfig, create_operation, resume_orphaned
from bulkops.model import EntityType, OperationType
from tests.helpers import table, write_csv


def test_resume_orphaned_finishes_an_operation_whose_process_died(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "p.csv",
        "sku,name,description,category,price\n"
        + "".join(f"O-{i},N{i},,x,1.00\n" for i in range(25)),
    )
    op = create_operation(
        ctx,
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=OperationConfig(chunk_size=10),
        source=path,
    )
    # A process claims it and dies at once: its lease runs out without any chunk committed.
    assert ctx.store.try_start(org_id, op["id"], "dead-host:1", 1.0, status="processing")
    with ctx.store.transaction(org_id) as tx:
        assert tx.orphaned_operations() == []  # the lease is still live
    time.sleep(1.1)
    finals = resume_orphaned(ctx, org_id)
    assert [f["id"] for f in finals] == [op["id"]]
    assert finals[0]["status"] == "completed" and finals[0]["created_records"] == 25
    assert len(table(ctx, org_id, "products")) == 25
    assert resume_orphaned(ctx, org_id) == []  # nothing left behind
