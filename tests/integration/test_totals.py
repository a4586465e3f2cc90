"""total_records is the exact number of records, known before the first chunk is applied and
never changed afterwards: blank lines and line breaks inside quotes do not count."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bulkops.config import Settings
from bulkops.engine import Context, execute, get_operation
from bulkops.errors import FileRejected
from tests.helpers import queue, run, write_csv
from tests.integration.test_api import Api, read_events, start_api, upload, wait_for

RECORDS = 2_345


def awkward_products(records: int = RECORDS) -> str:
    """Records spread over more lines than records: quoted line breaks, blank lines and the
    rows of only delimiters that spreadsheets write for empty rows."""
    lines = ["sku,name,description,category,price"]
    for i in range(records):
        if i % 7 == 0:
            lines.append(
                f'T-{i},Tool {i},"first line\nsecond line\r\nthird, with a comma",Tools,1.00'
            )
        else:
            lines.append(f"T-{i},Tool {i},,Tools,2.00")
        if i % 11 == 0:
            lines.append("")
        if i % 13 == 0:
            lines.append(",,,,")
        if i % 17 == 0:
            lines.append("   ")
    return "\n".join(lines) + "\n"


def test_the_total_is_exact_before_the_first_chunk_and_never_changes(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = awkward_products()
    assert text.count("\n") > RECORDS * 1.3  # far more lines than records
    path = write_csv(tmp_path / "p.csv", text)
    op_id = queue(ctx, org_id, "import", "products", path, chunk_size=200)
    assert get_operation(ctx, org_id, op_id).total_records == RECORDS

    seen: list[dict[str, Any]] = []
    final = execute(ctx, org_id, op_id, on_progress=seen.append)

    assert final.created_records == RECORDS and final.failed_records == 0
    assert final.total_records == RECORDS
    totals = {event["total_records"] for event in seen if "total_records" in event}
    assert totals == {RECORDS}
    percentages = [event["percentage"] for event in seen if "percentage" in event]
    assert percentages == sorted(percentages) and percentages[-1] == 100.0


def test_the_total_of_a_check_is_the_file_s(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "p.csv", awkward_products(500))
    checked = run(ctx, org_id, "import", "products", path, validate_only=True)
    assert (checked.total_records, checked.created_records) == (500, 500)


def test_the_row_limit_counts_records_not_lines(
    settings: Settings, tmp_path: Path
) -> None:
    from bulkops.engine import close_context, create_organization, open_context

    limited = settings.model_copy(update={"max_rows": 300})
    ctx = open_context(limited)
    try:
        org_id = create_organization(ctx.store, "limits", "Limits")
        many_lines = write_csv(tmp_path / "ok.csv", awkward_products(300))
        assert many_lines.read_text().count("\n") > 400
        op = run(ctx, org_id, "import", "products", many_lines)
        assert (op.total_records, op.created_records) == (300, 300)

        with pytest.raises(FileRejected) as refused:
            queue(ctx, org_id, "import", "products", write_csv(tmp_path / "no.csv",
                                                              awkward_products(301)))
        problem = refused.value.problems[0]
        assert problem.code == "too_many_rows" and "300" in problem.message
        assert problem.line is not None and problem.line > 302  # the line, not the row
    finally:
        close_context(ctx)


def test_a_filtered_export_counts_what_it_writes(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    run(ctx, org_id, "import", "products", write_csv(tmp_path / "p.csv", awkward_products(100)))
    seen: list[dict[str, Any]] = []
    op_id = queue(ctx, org_id, "export", "products", filters={"category": "Tools", "price": "1.00"})
    final = execute(ctx, org_id, op_id, on_progress=seen.append)
    assert final.total_records == final.processed_records == 15  # rows 0, 7, …, 98
    assert {e["total_records"] for e in seen if "total_records" in e} == {15}


@pytest.fixture
def api(settings: Settings) -> Any:
    yield from start_api(settings)


def test_the_api_and_its_events_carry_the_exact_total(api: Api) -> None:
    client = api.client("editor")
    created = upload(client, awkward_products(), chunk_size=300).json()
    assert created["total_records"] == RECORDS  # in the 202 answer, before any chunk
    events, _ = read_events(client, created["id"])
    totals = {e["data"]["total_records"] for e in events if "total_records" in e["data"]}
    assert totals == {RECORDS}
    final = wait_for(client, created["id"], "completed")
    assert final["total_records"] == RECORDS


def test_the_cli_json_carries_the_exact_total(tmp_path: Path) -> None:
    from tests.e2e.test_cli import Cli

    cli = Cli(tmp_path)
    assert cli("init").exit_code == 0
    done = cli("import", "products", str(cli.file("p.csv", awkward_products())), "--json")
    view = json.loads(done.stdout)
    assert (view["total_records"], view["processed_records"]) == (RECORDS, RECORDS)
