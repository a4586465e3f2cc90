"""Operations left behind by a dead process are found by their expired lease and resumed."""

from __future__ import annotations

import time
from pathlib import Path

from bulkops.engine import Context, OperationConfig, create_operation, resume_orphaned
from bulkops.engine.scheduling import try_start
from bulkops.model import EntityType, OperationStatus, OperationType
from tests.helpers import queue, table, write_csv


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
    assert try_start(
        ctx.store, org_id, op.id, "dead-host:1", 1.0, status=OperationStatus.PROCESSING
    )
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.orphaned() == []  # the lease is still live
    time.sleep(1.1)
    finals = resume_orphaned(ctx, org_id)
    assert [f.id for f in finals] == [op.id]
    assert finals[0].status == "completed" and finals[0].created_records == 25
    assert len(table(ctx, org_id, "products")) == 25
    assert resume_orphaned(ctx, org_id) == []  # nothing left behind


def test_an_operation_whose_process_dies_every_time_is_given_up_as_failed(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    from bulkops.engine import get_operation

    path = write_csv(tmp_path / "p.csv", "sku,name,description,category,price\nA-1,N,,x,1.00\n")
    op_id = queue(ctx, org_id, "import", "products", path, chunk_size=10)
    # Taken up max_attempts times by processes that died before committing a chunk.
    for attempt in range(ctx.settings.max_attempts):
        assert try_start(ctx.store, org_id, op_id, f"dead-host:{attempt}", -1.0,
                                   status=OperationStatus.PROCESSING)
    assert get_operation(ctx, org_id, op_id).attempts == ctx.settings.max_attempts
    [final] = resume_orphaned(ctx, org_id)
    assert final.status == "failed" and final.lease_owner is None
    assert "Given up after 5 attempts" in str(final.results) and "dead-host:4" in str(final.results)
    assert table(ctx, org_id, "products") == []
    assert resume_orphaned(ctx, org_id) == []  # not taken up again


def test_a_committed_chunk_resets_the_attempts(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(
        tmp_path / "p.csv",
        "sku,name,description,category,price\n"
        + "".join(f"R-{i},N{i},,x,1.00\n" for i in range(25)),
    )
    op_id = queue(ctx, org_id, "import", "products", path, chunk_size=10)
    for attempt in range(ctx.settings.max_attempts - 1):  # one short of giving up
        assert try_start(ctx.store, org_id, op_id, f"dead-host:{attempt}", -1.0,
                                   status=OperationStatus.PROCESSING)
    [final] = resume_orphaned(ctx, org_id)
    assert final.status == "completed" and final.created_records == 25
    assert final.attempts == 0


def test_a_long_re_read_after_a_crash_keeps_the_lease(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    """Resuming re-reads the committed part of the file; meanwhile the lease is renewed, so
    no second process takes the operation over (and a process that lost it stops)."""
    import pytest

    from bulkops.engine import get_operation
    from bulkops.engine.lifecycle import LeaseKeeper
    from bulkops.errors import Conflict

    path = write_csv(tmp_path / "p.csv", "sku,name,description,category,price\nL-1,N,,x,1.00\n")
    op_id = queue(ctx, org_id, "import", "products", path, chunk_size=10)
    assert try_start(ctx.store, org_id, op_id, "me:1", 0.4, status=OperationStatus.PROCESSING)
    keeper = LeaseKeeper(ctx, org_id, op_id, "me:1", 0.4)
    keeper.keep()  # too soon: nothing to do
    first = get_operation(ctx, org_id, op_id).lease_expires_at
    time.sleep(0.15)
    keeper.keep()
    renewed = get_operation(ctx, org_id, op_id).lease_expires_at
    assert renewed > first + 0.1
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.orphaned() == []
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.operations.renew_lease(op_id, "someone-else:2", 30)
    time.sleep(0.15)
    with pytest.raises(Conflict):
        keeper.keep()


def test_a_chunk_of_a_process_that_lost_its_lease_does_not_count(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    """The counter update of a chunk lands only for the lease holder, and says so."""
    path = write_csv(tmp_path / "p.csv", "sku,name,description,category,price\nA-1,One,,c,1\n")
    op_id = queue(ctx, org_id, "import", "products", path)
    with ctx.store.transaction(org_id, write=True) as tx:
        tx.operations.update(op_id, {"status": "processing", "lease_owner": "host:1"})
    with ctx.store.transaction(org_id, write=True) as tx:
        assert tx.operations.advance(op_id, "host:2", {"processed_records": 7}) is None
        held = tx.operations.advance(op_id, "host:1", {"processed_records": 5})
        assert held is not None and held.processed_records == 5
        unguarded = tx.operations.advance(op_id, None, {"processed_records": 1})
        assert unguarded is not None and unguarded.processed_records == 6
    with ctx.store.transaction(org_id) as tx:
        final = tx.operations.get(op_id)
    assert final is not None and final.processed_records == 6
