"""Tenant isolation and roles over HTTP: another organization's operation is a 404 everywhere."""

from __future__ import annotations

import pytest

from tests.integration.test_api import Api, api, problem, upload, wait_for

__all__ = ["api"]  # the fixture, shared with test_api.py

OPERATION_ENDPOINTS = [
    ("GET", "/api/v1/operations/{id}", None),
    ("GET", "/api/v1/operations/{id}/events", None),
    ("GET", "/api/v1/operations/{id}/errors", None),
    ("GET", "/api/v1/operations/{id}/errors?json", None),
    ("GET", "/api/v1/operations/{id}/records", None),
    ("GET", "/api/v1/operations/{id}/download", None),
    ("GET", "/api/v1/operations/{id}/conflicts", None),
    ("POST", "/api/v1/operations/{id}/cancel", {"rollback": True}),
    ("POST", "/api/v1/operations/{id}/rollback", {"force": True}),
]


def _ended_import_and_export(api: Api) -> list[str]:
    client = api.client("editor")
    imported = upload(client, "sku,name,price\nA-1,Rake,12.50\nA-2,Hoe,bad\n").json()
    wait_for(client, imported["id"], "completed")
    exported = client.post(
        "/api/v1/operations", data={"operation_type": "export", "entity_type": "products"}
    ).json()
    wait_for(client, exported["id"], "completed")
    return [imported["id"], exported["id"]]


def test_another_organization_gets_404_for_every_endpoint_and_verb(api: Api) -> None:
    ids = _ended_import_and_export(api)
    stranger = api.client("other")  # an admin, of Globex
    for op_id in ids:
        for method, template, body in OPERATION_ENDPOINTS:
            path = template.format(id=op_id)
            headers = {}
            if path.endswith("?json"):
                path = path.removesuffix("?json")
                headers["Accept"] = "application/json"
            resp = stranger.request(method, path, json=body, headers=headers)
            problem(resp, 404)
            assert op_id in resp.json()["detail"] or "No operation" in resp.json()["detail"]
    # ...and nothing of Acme shows in Globex's lists.
    assert stranger.get("/api/v1/operations").json()["items"] == []
    for q in ids:
        assert stranger.get("/api/v1/operations", params={"q": q}).json()["items"] == []
    assert stranger.get("/api/v1/entities/products").json()["items"] == []
    emails = [u["email"] for u in stranger.get("/api/v1/users").json()["items"]]
    assert emails == ["admin@globex.example"]
    acme_tokens = [t["id"] for t in api.client("admin").get("/api/v1/tokens").json()["items"]]
    for token_id in acme_tokens:
        problem(stranger.delete(f"/api/v1/tokens/{token_id}"), 404)
    # Nothing was changed by those attempts.
    owner = api.client("viewer")
    assert [owner.get(f"/api/v1/operations/{i}").json()["status"] for i in ids] == [
        "completed",
        "completed",
    ]
    assert owner.get("/api/v1/me").status_code == 200  # no Acme token was revoked


@pytest.mark.parametrize("who", ["viewer"])
def test_viewer_reads_but_cannot_start_cancel_or_roll_back(api: Api, who: str) -> None:
    ids = _ended_import_and_export(api)
    viewer = api.client(who)
    body = problem(upload(viewer, "sku,name\nB-1,Rake\n"), 403)
    assert "viewer" in body["detail"]
    problem(
        viewer.post(
            "/api/v1/operations", data={"operation_type": "export", "entity_type": "products"}
        ),
        403,
    )
    problem(viewer.post(f"/api/v1/operations/{ids[0]}/cancel", json={}), 403)
    problem(viewer.post(f"/api/v1/operations/{ids[0]}/rollback", json={}), 403)
    assert viewer.get(f"/api/v1/operations/{ids[0]}").json()["status"] == "completed"
    assert viewer.get(f"/api/v1/operations/{ids[0]}/errors").status_code == 200
    assert viewer.get(f"/api/v1/operations/{ids[1]}/download").status_code == 200
    assert len(viewer.get("/api/v1/operations").json()["items"]) == 2
    # Editors and admins may.
    assert api.client("editor").post(f"/api/v1/operations/{ids[0]}/rollback").status_code == 202
    wait_for(viewer, ids[0], "rolled_back")
