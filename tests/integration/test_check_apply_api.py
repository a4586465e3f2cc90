"""Check, then apply through the HTTP API (a real server and worker), on both databases:
uploads and their preview, operations from an upload, remembered mappings, a check's planned
changes (JSON pages and CSV), apply, and what another organization or a viewer may do."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from bulkops.config import Settings

from .test_api import MAX_FILE_BYTES, Api, problem, start_api, upload, wait_for


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    yield from start_api(settings.model_copy(update={"max_file_bytes": MAX_FILE_BYTES}))


def _upload_file(
    client: httpx.Client, text: str | bytes, *, name: str = "p.csv", **fields: str
) -> httpx.Response:
    data = {"operation_type": "import", "entity_type": "products", **fields}
    return client.post("/api/v1/uploads", data=data, files={"file": (name, text)})


def _seed(client: httpx.Client) -> None:
    body = "sku,name,price\n" + "".join(f"SKU-{i},Product {i},{i}.00\n" for i in range(1, 8))
    op = upload(client, body).json()
    assert wait_for(client, op["id"], "completed")["created_records"] == 7


def _check(client: httpx.Client, text: str, **params: Any) -> dict[str, Any]:
    op = upload(client, text, validate_only=True, chunk_size=3, **params).json()
    return wait_for(client, op["id"], "completed")


def test_an_upload_answers_with_its_preview_and_suggestions(api: Api) -> None:
    client = api.client()
    resp = _upload_file(client, "Artikel;Name;Preis\nA1;Eins;1,50\n", name="de.csv")
    assert resp.status_code == 201, resp.text
    view = resp.json()
    assert resp.headers["location"] == f"/api/v1/uploads/{view['id']}"
    assert (view["format"], view["encoding"], view["delimiter"]) == ("csv", "utf-8", ";")
    assert view["preview"] == [
        {"row": 2, "line": 2, "cells": ["A1", "Eins", "1,50"], "error": None}
    ]
    assert [(m["field"], m["how"]) for m in view["mapping"]] == [
        (None, "none"),
        ("name", "case_or_space"),
        ("price", "similar"),
    ]
    assert view["missing_required"] == ["sku"]
    assert view["other_entity"] is None  # no other entity has these columns either
    stock = _upload_file(client, "sku,warehouse_code,quantity\nA1,W1,2\n", name="stock.csv")
    assert stock.json()["other_entity"] == "inventory"  # a stock file given as products
    again = client.post(
        f"/api/v1/uploads/{view['id']}/preview",
        json={"decimal_separator": ",", "mapping": {"Artikel": "sku"}},
    )
    assert again.status_code == 200, again.text
    assert again.json()["missing_required"] == []
    assert again.json()["mapping"][0] == {
        "header": "Artikel",
        "field": "sku",
        "how": "given",
        "score": None,
    }
    assert client.get(f"/api/v1/uploads/{view['id']}").json()["decimal_separator"] == ","
    # An operation from the upload: the file is not sent again; its options are kept.
    op = client.post(
        "/api/v1/operations",
        data={
            "operation_type": "import",
            "entity_type": "products",
            "upload_id": view["id"],
            "mapping": '{"Artikel": "sku", "Preis": "price"}',
        },
    )
    assert op.status_code == 202, op.text
    done = wait_for(client, op.json()["id"], "completed")
    assert done["created_records"] == 1 and done["file_name"] == "de.csv"
    assert done["config"]["decimal_separator"] == ","
    rows = client.get("/api/v1/entities/products").json()["items"]
    assert rows[0]["price"] == "1.50"
    # The mapping is remembered for that header, and suggested on the next upload.
    mappings = client.get("/api/v1/mappings").json()["items"]
    assert [m["mapping"] for m in mappings] == [{"Artikel": "sku", "Preis": "price"}]
    next_view = _upload_file(client, "artikel;NAME;preis\nA2;Zwei;2.00\n").json()
    assert [m["how"] for m in next_view["mapping"]] == ["saved", "case_or_space", "saved"]
    assert client.delete(f"/api/v1/mappings/{mappings[0]['id']}").status_code == 204
    assert client.get("/api/v1/mappings").json()["items"] == []
    problem(client.delete(f"/api/v1/mappings/{mappings[0]['id']}"), 404)


def test_an_upload_is_refused_as_an_operation_would_be(api: Api) -> None:
    client = api.client()
    problem(_upload_file(client, b"%PDF-1.4\x00\x00binary"), 415)
    problem(_upload_file(client, "x" * (MAX_FILE_BYTES + 10)), 413)
    body = problem(_upload_file(client, "sku,name\n", entity_type="nothing"), 422)
    assert body["errors"][0]["field"] == "entity_type"
    problem(_upload_file(client, ""), 422)
    resp = client.post(
        "/api/v1/operations",
        data={"operation_type": "import", "entity_type": "products"},
        files={"file": ("a.csv", "sku,name\nA,B\n")},
    )
    assert resp.status_code == 202
    both = client.post(
        "/api/v1/operations",
        data={
            "operation_type": "import",
            "entity_type": "products",
            "upload_id": "00000000-0000-0000-0000-000000000000",
        },
        files={"file": ("a.csv", "sku,name\nA,B\n")},
    )
    assert problem(both, 422)["errors"][0]["field"] == "upload_id"
    missing = client.post(
        "/api/v1/operations",
        data={
            "operation_type": "import",
            "entity_type": "products",
            "upload_id": "00000000-0000-0000-0000-000000000000",
        },
    )
    problem(missing, 404)


def test_planned_changes_page_to_the_end_and_apply_once(api: Api) -> None:
    client = api.client()
    _seed(client)
    text = (
        "sku,name,price\n"
        + "".join(f"SKU-{i},Product {i}{'x' if i % 2 else ''},{i}.00\n" for i in range(1, 8))
        + "SKU-8,New,=8\n"
        + "SKU-9,Nine,9.00\n"
    )
    check = _check(client, text)
    assert check["outcome"] == "checked"
    assert (check["updated_records"], check["created_records"]) == (4, 1)
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/api/v1/operations/{check['id']}/changes", params=params).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [(i["row"], i["action"]) for i in items] == [
        (2, "update"),
        (4, "update"),
        (6, "update"),
        (8, "update"),
        (10, "create"),
    ]
    assert items[0]["key"] == {"sku": "SKU-1"}
    assert items[0]["changes"] == [{"field": "name", "current": "Product 1", "new": "Product 1x"}]
    creates = client.get(
        f"/api/v1/operations/{check['id']}/changes", params={"action": "create"}
    ).json()
    assert [i["key"]["sku"] for i in creates["items"]] == ["SKU-9"]
    as_csv = client.get(f"/api/v1/operations/{check['id']}/changes", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(as_csv.text)))
    assert lines[0] == ["_row", "_action", "sku", "field", "current", "new"]
    assert lines[1] == ["2", "update", "SKU-1", "name", "Product 1", "Product 1x"]
    # A check cannot be rolled back: it changed nothing.
    rollback = client.post(f"/api/v1/operations/{check['id']}/rollback", json={})
    assert "changed nothing" in problem(rollback, 409)["detail"]
    # Someone changes SKU-3 as the file would, before the check is applied.
    fix = upload(client, "sku,name\nSKU-3,Product 3x\n", operation="update").json()
    wait_for(client, fix["id"], "completed")
    applied = client.post(f"/api/v1/operations/{check['id']}/apply")
    assert applied.status_code == 202, applied.text
    assert applied.headers["location"] == f"/api/v1/operations/{applied.json()['id']}"
    assert applied.json()["config"]["checked_by"] == check["id"]
    done = wait_for(client, applied.json()["id"], "completed")
    assert (done["updated_records"], done["created_records"]) == (3, 1)
    assert done["results"]["differs_from_check"] == 1
    again = client.post(f"/api/v1/operations/{check['id']}/apply")
    assert applied.json()["id"] in problem(again, 409)["detail"]
    not_a_check = client.post(f"/api/v1/operations/{done['id']}/apply")
    problem(not_a_check, 409)
    problem(client.get(f"/api/v1/operations/{done['id']}/changes"), 409)


def test_a_check_of_a_delete_lists_its_deletes(api: Api) -> None:
    client = api.client()
    _seed(client)
    check = _check(client, "sku\nSKU-2\nSKU-5\n", operation="delete")
    page = client.get(f"/api/v1/operations/{check['id']}/changes").json()
    assert [(i["row"], i["action"], i["key"], i["changes"]) for i in page["items"]] == [
        (2, "delete", {"sku": "SKU-2"}, []),
        (3, "delete", {"sku": "SKU-5"}, []),
    ]


def test_another_organization_and_a_viewer(api: Api) -> None:
    client = api.client()
    _seed(client)
    view = _upload_file(client, "sku,name\nA,B\n").json()
    check = _check(client, "Artikel,name\nA9,Nine\n", mapping='{"Artikel": "sku"}')
    mapping_id = client.get("/api/v1/mappings").json()["items"][0]["id"]
    other = api.client("other")
    problem(other.get(f"/api/v1/uploads/{view['id']}"), 404)
    problem(other.post(f"/api/v1/uploads/{view['id']}/preview", json={}), 404)
    problem(other.get(f"/api/v1/operations/{check['id']}/changes"), 404)
    problem(
        other.get(f"/api/v1/operations/{check['id']}/changes", headers={"Accept": "text/csv"}),
        404,
    )
    problem(other.post(f"/api/v1/operations/{check['id']}/apply"), 404)
    assert other.get("/api/v1/mappings").json()["items"] == []
    problem(other.delete(f"/api/v1/mappings/{mapping_id}"), 404)
    from_upload = other.post(
        "/api/v1/operations",
        data={"operation_type": "import", "entity_type": "products", "upload_id": view["id"]},
    )
    problem(from_upload, 404)
    viewer = api.client("viewer")
    assert viewer.get(f"/api/v1/uploads/{view['id']}").status_code == 200
    assert viewer.get(f"/api/v1/operations/{check['id']}/changes").status_code == 200
    problem(_upload_file(viewer, "sku,name\nA,B\n"), 403)
    problem(viewer.post(f"/api/v1/operations/{check['id']}/apply"), 403)
    problem(viewer.delete(f"/api/v1/mappings/{mapping_id}"), 403)
