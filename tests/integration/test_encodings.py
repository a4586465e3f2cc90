"""Files from European spreadsheets, on SQLite and PostgreSQL: a Windows-1252 CSV is
diagnosed before anything changes, and decimal commas import as they are."""

from __future__ import annotations

from pathlib import Path

import pytest

from bulkops.engine import Context
from bulkops.errors import FileRejected
from tests.helpers import run, table, write_csv
from tests.integration.test_api import Api, api, upload

__all__ = ["api"]  # the fixture, shared with test_api

FRENCH = (
    "sku,name,description,category,price\n"
    "W-1,Chaise,,meubles,3.00\n"
    "W-2,Crème brûlée à la française,,dessert,4.50\n"
    "W-3,Pâté de campagne,,épicerie,5.00\n"
)


def test_a_cp1252_csv_without_encoding_is_rejected_with_the_diagnosis(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "excel.csv", FRENCH, encoding="windows-1252")
    with pytest.raises(FileRejected) as info:
        run(ctx, org_id, "import", "products", path)
    [problem] = info.value.problems
    assert problem.code == "undecodable"
    assert "looks like Windows-1252: byte 0xE8 at row 3" in problem.message
    assert problem.line == 3
    assert (problem.hint_field, problem.hint_value) == ("encoding", "windows-1252")
    assert table(ctx, org_id, "products") == []  # nothing changed
    with ctx.store.transaction(org_id) as tx:
        assert tx.operations.list() == []


def test_the_same_file_with_its_encoding_imports(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "excel.csv", FRENCH, encoding="windows-1252")
    op = run(ctx, org_id, "import", "products", path, encoding="windows-1252")
    assert (op.created_records, op.failed_records) == (3, 0)
    names = {row[1]: row[2] for row in table(ctx, org_id, "products")}
    assert names["W-2"] == "Crème brûlée à la française"


def test_decimal_commas_import_and_thousands_separators_say_why(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    text = (
        "sku;name;price\n"
        "E-1;Un;149,00\n"
        "E-2;Deux;0,5\n"
        "E-3;Trois;1.234,00\n"
        "E-4;Quatre;1,234.00\n"
        "E-5;Cinq;149.00\n"
    )
    op = run(
        ctx, org_id, "import", "products", write_csv(tmp_path / "eu.csv", text),
        decimal_separator=",",
    )
    assert (op.created_records, op.failed_records) == (2, 3)
    prices = {row[1]: row[5] for row in table(ctx, org_id, "products")}
    assert prices == {"E-1": "149.00", "E-2": "0.50"}
    with ctx.store.transaction(org_id) as tx:
        errors = {e["row"]: e["errors"][0]["message"] for e in tx.audit.iter_errors(op.id)}
    assert "thousands separator" in errors[4] and "thousands separator" in errors[5]
    assert "decimal separator is a comma" in errors[6]


def test_with_the_point_decimal_commas_stay_errors(
    ctx: Context, org_id: int, tmp_path: Path
) -> None:
    op = run(
        ctx, org_id, "import", "products",
        write_csv(tmp_path / "eu.csv", "sku;name;price\nE-1;Un;149,00\n"),
    )
    assert op.failed_records == 1


def test_the_api_names_its_encoding_field(api: Api) -> None:
    with api.client() as client:
        answer = upload(client, FRENCH.encode("windows-1252"))
        assert answer.status_code == 422
        body = answer.json()
        assert "looks like Windows-1252" in body["detail"]
        assert "`encoding=windows-1252`" in body["detail"]
        assert "--encoding" not in body["detail"]
        [error] = body["errors"]
        assert (error["hint_field"], error["hint_value"]) == ("encoding", "windows-1252")
        again = upload(client, FRENCH.encode("windows-1252"), encoding="windows-1252")
        assert again.status_code == 202
