"""The HTTP API against a real server (uvicorn in a thread) and a real worker, on both databases.

The server and the worker share nothing but the database, as in production; the worker runs
in a thread here (the same loop ``bulkops serve`` runs in its spawned process) to keep the
suite fast. ``tests/e2e/test_api_serve.py`` runs the real ``bulkops serve`` with its process.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from bulkops import engine
from bulkops.asgi import create_app
from bulkops.config import Settings
from bulkops.model import EntityType, OperationType, Role
from bulkops.store import Store
from bulkops.workers import worker_main

MAX_FILE_BYTES = 200_000


@dataclass
class Api:
    """A running server and worker with two organizations and a user of each role."""

    url: str
    settings: Settings
    store: Store
    org_id: int
    other_org_id: int
    tokens: dict[str, str] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, who: str = "editor", **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}
        client = httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=30)
        self.clients.append(client)
        return client

    @property
    def ctx(self) -> engine.Context:
        return engine.Context(self.store, self.settings)


class ServerThread:
    """uvicorn on a free port, in a thread (signals stay with the test runner)."""

    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_api(settings: Settings, *, worker: bool = True) -> Iterator[Api]:
    store = Store(settings.database_url)
    org_id = engine.create_organization(store, "acme", "Acme")
    other_org_id = engine.create_organization(store, "globex", "Globex")
    app = create_app(
        settings, sse_poll_seconds=0.05, sse_heartbeat_seconds=0.5, token_touch_seconds=0
    )
    server = ServerThread(app)
    api = Api(server.start(), settings, store, org_id, other_org_id)
    for role in Role:
        user_id = engine.create_user(store, org_id, f"{role.value}@acme.example", role, None)
        api.users[role.value] = user_id
        api.tokens[role.value] = engine.create_token(store, org_id, user_id, role.value)
    other = engine.create_user(store, other_org_id, "admin@globex.example", Role.ADMIN, None)
    api.users["other"] = other
    api.tokens["other"] = engine.create_token(store, other_org_id, other, "other")
    stop = threading.Event()
    runner = threading.Thread(
        target=worker_main, args=(settings.model_dump(), stop, None, 0.05), daemon=True
    )
    if worker:
        runner.start()
    try:
        yield api
    finally:
        for client in api.clients:
            client.close()
        stop.set()
        server.stop()
        if worker:
            runner.join(30)
        store.dispose()


@pytest.fixture
def api(settings: Settings) -> Iterator[Api]:
    yield from start_api(settings.model_copy(update={"max_file_bytes": MAX_FILE_BYTES}))


@pytest.fixture
def chatty_api(settings: Settings) -> Iterator[Api]:
    """A service that stores a progress event for every chunk (not a few a second)."""
    yield from start_api(settings.model_copy(update={"progress_event_seconds": 0}))


# -- helpers ---------------------------------------------------------------------------------------


def upload(
    client: httpx.Client,
    text: str | bytes,
    *,
    operation: str = "import",
    entity: str = "products",
    name: str = "products.csv",
    headers: dict[str, str] | None = None,
    **params: Any,
) -> httpx.Response:
    data = {"operation_type": operation, "entity_type": entity}
    data.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()})
    return client.post(
        "/api/v1/operations", data=data, files={"file": (name, text)}, headers=headers or {}
    )


def read_events(
    client: httpx.Client, op_id: str, *, last_event_id: str | None = None, stop_after: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """The stream's events (id, event, data) and its comment lines, until it ends."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    events: list[dict[str, Any]] = []
    comments: list[str] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"/api/v1/operations/{op_id}/events", headers=headers) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        deadline = time.monotonic() + 30
        for line in resp.iter_lines():
            assert time.monotonic() < deadline, f"the stream did not end: {events[-3:]}"
            if line.startswith((":", "retry:")):
                comments.append(line)
            elif line == "":
                if current:
                    events.append(current)
                    current = {}
                    if stop_after and len(events) >= stop_after:
                        break
            else:
                name, _, value = line.partition(": ")
                current[name] = orjson.loads(value) if name == "data" else value
    return events, comments


def wait_for(
    client: httpx.Client, op_id: str, *statuses: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op = client.get(f"/api/v1/operations/{op_id}").json()
        if op["status"] in statuses:
            return op
        assert time.monotonic() < deadline, f"still {op['status']}"
        time.sleep(0.05)


def products_csv(count: int, *, start: int = 0, bad_every: int = 0) -> str:
    lines = ["sku,name,price"]
    for i in range(start, start + count):
        price = "abc" if bad_every and i % bad_every == bad_every - 1 else f"{i % 97 + 1}.50"
        lines.append(f"SKU-{i:06d},Product {i},{price}")
    return "\n".join(lines) + "\n"


def stored_files(settings: Settings) -> list[Path]:
    root = settings.data_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def problem(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = resp.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


# -- the whole path --------------------------------------------------------------------------------


def test_upload_follow_events_to_done_then_errors_and_records(api: Api) -> None:
    client = api.client("editor")
    resp = upload(client, "sku,name,price\nA-1,Rake,12.50\nA-2,Hoe,abc\nA-3,,1.00\n")
    assert resp.status_code == 202
    op = resp.json()
    assert resp.headers["location"] == f"/api/v1/operations/{op['id']}"
    assert op["created_by"] == api.users["editor"]
    assert op["file_name"] == "products.csv" and op["file_size_bytes"] > 0

    events, comments = read_events(client, op["id"], last_event_id="0")
    assert comments[0].startswith("retry:")
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress, events
    for name in ("processed_records", "failed_records", "percentage", "rate"):
        assert name in progress[0]["data"]
    assert "estimated_time_remaining" in progress[0]["data"]
    assert events[-1]["event"] == "done"
    final = events[-1]["data"]
    assert final["status"] == "completed"
    assert (final["created_records"], final["failed_records"]) == (1, 2)

    report = client.get(f"/api/v1/operations/{op['id']}/errors")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = report.text.splitlines()
    assert lines[0] == "_row,_line,_errors,sku,name,price"
    assert lines[1].startswith("3,3,") and "price" in lines[1] and lines[1].endswith(",A-2,Hoe,abc")
    assert lines[2].startswith("4,4,") and "name" in lines[2]

    page = client.get(
        f"/api/v1/operations/{op['id']}/errors",
        params={"limit": 1},
        headers={"Accept": "application/json"},
    ).json()
    assert page["header"] == ["sku", "name", "price"]
    assert [e["row"] for e in page["items"]] == [3] and page["next_cursor"]
    page2 = client.get(
        f"/api/v1/operations/{op['id']}/errors",
        params={"limit": 1, "cursor": page["next_cursor"]},
        headers={"Accept": "application/json"},
    ).json()
    assert [e["row"] for e in page2["items"]] == [4] and page2["next_cursor"] is None

    records = client.get(f"/api/v1/operations/{op['id']}/records").json()["items"]
    assert [(r["record_index"], r["action"], r["status"]) for r in records] == [
        (2, "create", "applied")
    ]
    assert records[0]["before_data"] is None and records[0]["after_data"]["sku"] == "A-1"
    assert records[0]["key"] == {"sku": "A-1"}  # the natural key, not only the row id

    rows = client.get("/api/v1/entities/products", params={"sku": "A-1"}).json()
    assert [r["name"] for r in rows["items"]] == ["Rake"]


def test_events_resume_after_last_event_id_without_gap_or_repeat(chatty_api: Api) -> None:
    api = chatty_api
    client = api.client("editor")
    op = upload(client, products_csv(400), chunk_size=10).json()
    first, _ = read_events(client, op["id"], last_event_id="0", stop_after=5)
    assert len(first) == 5
    rest, comments = read_events(client, op["id"], last_event_id=first[-1]["id"])
    assert comments[0].startswith("retry:")
    assert rest[-1]["event"] == "done" and rest[-1]["data"]["status"] == "completed"
    with api.store.transaction(api.org_id) as tx:
        logged = [e["id"] for e in tx.events.after(op["id"], 0, 100_000)]
    received = [int(e["id"]) for e in first + rest]
    assert received == logged  # every event once, in order, across the reconnect
    # Any server process serves it: a second server on the same database sees the same log.
    assert rest[-1]["data"]["processed_records"] == 400


def test_finished_operation_streams_final_state_at_once(api: Api) -> None:
    client = api.client("viewer")
    op = upload(api.client("editor"), "sku,name\nA-1,Rake\n").json()
    wait_for(client, op["id"], "completed")
    started = time.monotonic()
    events, _ = read_events(client, op["id"])
    assert time.monotonic() - started < 2
    assert [e["event"] for e in events] == ["done"]
    assert events[0]["data"]["id"] == op["id"] and events[0]["data"]["status"] == "completed"
    # A reconnect after the final event gets the final state again instead of hanging.
    again, _ = read_events(client, op["id"], last_event_id=events[0]["id"])
    assert [e["event"] for e in again] == ["done"]


def test_heartbeat_while_queued_and_cancel_of_a_pending_operation(api: Api) -> None:
    # Created outside the API (no created_by): the embedded worker leaves it to its creator,
    # so it stays pending and the stream has nothing to say but heartbeats.
    path = api.settings.data_dir / "queued.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("sku,name\nA-1,Rake\n")
    op = engine.create_operation(
        api.ctx,
        api.org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(),
        source=path,
    )
    client = api.client("editor")
    comments: list[str] = []
    with client.stream("GET", f"/api/v1/operations/{op.id}/events") as resp:
        lines = resp.iter_lines()
        while len(comments) < 2:
            line = next(lines)
            if line.startswith(": ping"):
                comments.append(line)
        cancel = api.client("editor").post(f"/api/v1/operations/{op.id}/cancel", json={})
        assert cancel.status_code == 202 and cancel.json()["status"] == "cancelled"
        assert cancel.json()["cancelled_by"] == api.users["editor"]
        rest = [line for line in lines]
    assert "event: done" in rest
    again = client.post(f"/api/v1/operations/{op.id}/cancel", json={"rollback": False})
    problem(again, 409)


def test_cancel_running_then_rollback(api: Api) -> None:
    client = api.client("editor")
    op = upload(client, products_csv(6000), chunk_size=1).json()
    deadline = time.monotonic() + 30
    while client.get(f"/api/v1/operations/{op['id']}").json()["processed_records"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    resp = client.post(f"/api/v1/operations/{op['id']}/cancel", json={"rollback": False})
    assert resp.status_code == 202
    events, _ = read_events(client, op["id"], last_event_id="0")
    final = events[-1]["data"]
    assert final["status"] == "cancelled" and final["cancelled_by"] == api.users["editor"]
    assert 0 < final["processed_records"] < 6000

    resp = api.client("admin").post(f"/api/v1/operations/{op['id']}/rollback", json={})
    assert resp.status_code == 202 and resp.json()["status"] == "rolling_back"
    events, _ = read_events(client, op["id"], last_event_id=events[-1]["id"])
    assert "rollback-progress" in [e["event"] for e in events]
    done = events[-1]["data"]
    assert done["status"] == "rolled_back"
    assert done["results"]["rollback"]["rolled_back_by"] == api.users["admin"]
    assert client.get("/api/v1/entities/products").json()["items"] == []
    problem(client.post(f"/api/v1/operations/{op['id']}/rollback", json={}), 409)


def test_cancel_with_rollback_undoes_at_once(api: Api) -> None:
    client = api.client("editor")
    op = upload(client, products_csv(6000), chunk_size=1).json()
    wait_for(client, op["id"], "processing")
    assert client.post(f"/api/v1/operations/{op['id']}/cancel", json={"rollback": True}).is_success
    final = wait_for(client, op["id"], "rolled_back", "completed")
    assert final["status"] == "rolled_back"
    assert client.get("/api/v1/entities/products").json()["items"] == []


def test_rollback_of_completed_and_cancel_of_ended(api: Api) -> None:
    client = api.client("editor")
    op = upload(client, "sku,name\nA-1,Rake\nA-2,Hoe\n").json()
    wait_for(client, op["id"], "completed")
    problem(client.post(f"/api/v1/operations/{op['id']}/cancel", json={}), 409)
    assert client.post(f"/api/v1/operations/{op['id']}/rollback").status_code == 202
    done = wait_for(client, op["id"], "rolled_back")
    assert done["rolled_back_records"] == 2
    assert client.get("/api/v1/entities/products").json()["items"] == []


def test_idempotency_key_returns_the_first_operation(api: Api) -> None:
    client = api.client("editor")
    headers = {"Idempotency-Key": "nightly-2024-06-01"}
    first = upload(client, "sku,name\nA-1,Rake\n", headers=headers)
    second = upload(client, "sku,name\nA-1,Rake\n", headers=headers)  # the same request
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.headers["location"] == first.headers["location"]
    listed = client.get("/api/v1/operations").json()["items"]
    assert [o["id"] for o in listed] == [first.json()["id"]]
    # Another organization's key space is its own.
    other = upload(api.client("other"), "sku,name\nA-1,Rake\n", headers=headers)
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]


def test_the_same_idempotency_key_sent_at_once_makes_one_operation(api: Api) -> None:
    # Four clients send the same request with the same key at the same moment: one
    # operation, each told of it, and no stored file left behind by the others.
    key = {"Idempotency-Key": "burst-2024-06-01"}
    clients = [api.client("editor") for _ in range(4)]
    start = threading.Barrier(len(clients))
    answers: list[httpx.Response] = []

    def send(client: httpx.Client) -> None:
        start.wait()
        answers.append(upload(client, "sku,name\nB-1,Rake\n", headers=key))

    threads = [threading.Thread(target=send, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # 202 for the request that made it, and for one that began before it was made (its
    # start is all the answer goes by); 200 for the others.
    assert {a.status_code for a in answers} <= {200, 202}, [a.text for a in answers]
    assert 202 in {a.status_code for a in answers}
    assert len({a.json()["id"] for a in answers}) == 1
    wait_for(clients[0], answers[0].json()["id"], "completed")
    assert len(stored_files(api.settings)) == 1
    assert len(clients[0].get("/api/v1/operations").json()["items"]) == 1


def test_export_and_download(api: Api) -> None:
    client = api.client("editor")
    op = upload(client, "sku,name,price\nA-1,=cmd,12.50\nA-2,Hoe,\n").json()
    wait_for(client, op["id"], "completed")
    export = client.post(
        "/api/v1/operations", data={"operation_type": "export", "entity_type": "products"}
    )
    assert export.status_code == 202
    problem_or_file = client.get(f"/api/v1/operations/{op['id']}/download")
    problem(problem_or_file, 409)  # an import has no download
    wait_for(client, export.json()["id"], "completed")
    csv = client.get(f"/api/v1/operations/{export.json()['id']}/download")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines() == [
        "sku,name,description,category,price",
        "A-1,'=cmd,,,12.50",
        "A-2,Hoe,,,",
    ]


def test_list_filters_and_cursor_pages(api: Api) -> None:
    client = api.client("editor")
    ids = []
    for i in range(5):
        resp = upload(client, f"sku,name\nA-{i},Rake\n", name=f"batch-{i}.csv")
        ids.append(resp.json()["id"])
        wait_for(client, ids[-1], "completed")
    export = client.post(
        "/api/v1/operations", data={"operation_type": "export", "entity_type": "products"}
    ).json()
    wait_for(client, export["id"], "completed")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "operation_type": "import"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/operations", params=params).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert [
        o["id"] for o in client.get("/api/v1/operations", params={"q": "batch-3"}).json()["items"]
    ] == [ids[3]]
    by_type = client.get("/api/v1/operations", params={"operation_type": "export"}).json()
    assert [o["id"] for o in by_type["items"]] == [export["id"]]
    mine = client.get("/api/v1/operations", params={"created_by": api.users["editor"]}).json()
    assert len(mine["items"]) == 6
    assert (
        client.get("/api/v1/operations", params={"created_by": api.users["admin"]}).json()["items"]
        == []
    )
    after = client.get("/api/v1/operations", params={"created_after": "2999-01-01T00:00:00Z"})
    assert after.json()["items"] == []
    statuses = client.get("/api/v1/operations", params={"status": ["failed", "cancelled"]})
    assert statuses.json()["items"] == []
    problem(client.get("/api/v1/operations", params={"status": "finished"}), 422)
    problem(client.get("/api/v1/operations", params={"cursor": "%%%"}), 422)
    problem(client.get("/api/v1/operations", params={"limit": 0}), 422)



def test_every_operation_names_its_actor_and_lists_filter_by_outcome(api: Api) -> None:
    editor, admin = api.client("editor"), api.client("admin")
    ok = upload(editor, "sku,name\nA-1,Rake\n").json()
    wait_for(editor, ok["id"], "completed")
    failing = upload(admin, "sku,name,price\nB-1,Hoe,1.00\nB-2,Saw,abc\n").json()
    wait_for(editor, failing["id"], "completed")
    checked = upload(editor, "sku,name\nC-1,Fork\n", validate_only=True).json()
    wait_for(editor, checked["id"], "completed")
    assert ok["actor"] == "editor@acme.example"
    assert editor.get(f"/api/v1/operations/{failing['id']}").json()["actor"] == "admin@acme.example"

    def listed(*outcomes: str) -> list[str]:
        page = editor.get("/api/v1/operations", params={"outcome": list(outcomes)}).json()
        return [o["id"] for o in page["items"]]

    assert listed("succeeded") == [ok["id"]]
    assert listed("completed_with_errors") == [failing["id"]]
    assert listed("checked") == [checked["id"]]
    assert listed("checked", "succeeded") == [checked["id"], ok["id"]]
    assert listed("failed", "cancelled", "rolled_back") == []
    wrong = problem(editor.get("/api/v1/operations", params={"outcome": "done"}), 422)
    assert "outcome" in str(wrong)


# -- refusals ------------------------------------------------------------------------------------


def test_authentication_is_required(api: Api) -> None:
    anonymous = api.client("nobody")
    for method, path in (
        ("GET", "/api/v1/operations"),
        ("POST", "/api/v1/operations"),
        ("GET", "/api/v1/templates/products"),
        ("GET", "/api/v1/users"),
    ):
        body = problem(anonymous.request(method, path), 401)
        assert "token" in body["detail"].lower()
    bad = api.client("nobody", Authorization="Bearer bo_not-a-real-token")
    problem(bad.get("/api/v1/operations"), 401)
    problem(api.client("nobody", Authorization="Basic abc").get("/api/v1/operations"), 401)


def test_too_large_is_413_and_leaves_nothing(api: Api) -> None:
    client = api.client("editor")
    big = products_csv(20_000)
    assert len(big) > MAX_FILE_BYTES + 4 * 65536
    body = problem(upload(client, big), 413)
    assert f"{MAX_FILE_BYTES:,}" in body["detail"]
    # Content-Length says so: answered before a byte of the body is sent.
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(
            b"POST /api/v1/operations HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {api.tokens['editor']}\r\n".encode()
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + b"Content-Length: 10000000000\r\n\r\n"
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 413")
    # Just over the limit: refused while streaming (Content-Length is within the allowance).
    body = problem(upload(client, "sku,name\n" + "A," + "x" * MAX_FILE_BYTES + "\n"), 413)
    # No Content-Length at all (chunked): refused while streaming, too.

    def chunked() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="operation_type"\r\n\r\nimport\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="entity_type"\r\n\r\nproducts\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
        yield b"sku,name\n"
        for _ in range(30):
            yield b"A,B\n" * 2000
        yield b"\r\n--b--\r\n"

    resp = client.post(
        "/api/v1/operations",
        content=chunked(),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    problem(resp, 413)
    assert stored_files(api.settings) == []
    assert client.get("/api/v1/operations").json()["items"] == []


def test_a_file_of_another_entity_is_named_with_the_field_that_fixes_it(api: Api) -> None:
    body = problem(upload(api.client("editor"), "sku,warehouse_code,quantity\nA,W,1\n"), 422)
    first = body["errors"][0]
    assert (first["code"], first["hint_field"], first["hint_value"]) == (
        "other_entity", "entity_type", "inventory"
    )
    assert first["message"].endswith(
        "Give it in the `entity_type` field (`entity_type=inventory`)."
    )
    assert stored_files(api.settings) == []


@pytest.mark.parametrize(
    ("content", "looks_like"),
    [
        (b"PK\x03\x04" + b"\x00" * 200, "ZIP"),
        (b"%PDF-1.7\n" + b"x" * 200, "PDF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "PNG"),
        (b"sku,name\nA\x00,B\n", ""),
    ],
)
def test_binary_content_is_415(api: Api, content: bytes, looks_like: str) -> None:
    body = problem(upload(api.client("editor"), content, name="catalogue.csv"), 415)
    assert looks_like.lower() in body["detail"].lower()
    assert stored_files(api.settings) == []


def test_bad_header_is_422_with_every_problem(api: Api) -> None:
    client = api.client("editor")
    body = problem(upload(client, "skux,name,name,,prce\nA,B,C,D,E\n"), 422)
    codes = [e["code"] for e in body["errors"]]
    assert "unknown_column" in codes and "duplicate_column" in codes
    assert "missing_columns" in codes and any("empty" in c for c in codes), codes
    suggestions = {e["column"]: e["suggestion"] for e in body["errors"] if e["suggestion"]}
    assert suggestions.get("skux") == "sku" and suggestions.get("prce") == "price"
    # The detail reads as sentences, each problem after the other.
    assert "no name. Name it, or delete the column if it holds nothing. Unknown column 'skux'" in (
        body["detail"]
    )
    assert ".;" not in body["detail"] and "; " not in body["detail"]
    assert stored_files(api.settings) == []
    assert client.get("/api/v1/operations").json()["items"] == []


def test_the_api_words_a_file_problem_s_remedy_with_its_fields(api: Api) -> None:
    client = api.client("editor")
    body = problem(upload(client, "sku,name,prce\nA,B,1.00\n"), 422)
    [error] = body["errors"]
    assert error["what"] == "Unknown column 'prce' (column 3). Did you mean 'price'?"
    assert error["hint_field"] == "mapping" and error["suggestion"] == "price"
    assert 'map it in the `mapping` field: {"prce": "price"}' in error["message"]
    assert "--map" not in str(body)
    tie = problem(upload(client, "sku;name,price\nA;B,1\n"), 422)
    assert "Give it in the `delimiter` field." in tie["errors"][0]["message"]
    assert "--delimiter" not in str(tie)


def test_a_bad_query_parameter_is_named_as_sent_with_the_value_given(api: Api) -> None:
    client = api.client("editor")
    resp = client.get("/api/v1/operations", params={"status": ["completed", "done"], "limit": "x"})
    errors = {e["field"]: e["message"] for e in problem(resp, 422)["errors"]}
    assert set(errors) == {"status", "limit"}  # not status.1, the second of a repeated one
    assert errors["status"].startswith("'done' is not valid: ")
    assert "'completed'" in errors["status"]  # the values it takes
    assert errors["limit"].startswith("'x' is not valid: ")


def test_bad_parameters_are_422_listing_each(api: Api) -> None:
    client = api.client("editor")
    resp = client.post(
        "/api/v1/operations",
        data={
            "operation_type": "merge",
            "entity_type": "widgets",
            "chunk_size": "many",
            "mapping": "not json",
            "colour": "red",
        },
        files={"file": ("a.csv", "sku,name\n")},
    )
    fields = {e["field"] for e in problem(resp, 422)["errors"]}
    assert {"operation_type", "entity_type", "chunk_size", "mapping", "colour"} <= fields
    # A near miss says what was meant.
    typos = client.post(
        "/api/v1/operations",
        data={"operation_type": "import", "entity_type": "Product", "chunk-size": "10"},
        files={"file": ("a.csv", "sku,name\n")},
    )
    said = {e["field"]: e["message"] for e in problem(typos, 422)["errors"]}
    assert said["entity_type"].endswith("Did you mean 'products'?"), said
    assert "Did you mean 'chunk_size'? The parameters are: " in said["chunk-size"], said
    no_file = client.post(
        "/api/v1/operations",
        data={"operation_type": "import", "entity_type": "products"},
        files={"other": ("", b"")},
    )
    assert "file" in {e["field"] for e in problem(no_file, 422)["errors"]}
    zero = upload(client, "sku,name\nA,B\n", chunk_size=0)
    assert "chunk_size" in {e["field"] for e in problem(zero, 422)["errors"]}
    # A count past 64 bits is a parameter error, not a server error (with a key too).
    for keyed in ({}, {"Idempotency-Key": "huge-1"}):
        huge = client.post(
            "/api/v1/operations",
            data={"operation_type": "export", "entity_type": "products",
                  "max_errors": str(2**64)},
            headers=keyed,
        )
        assert "max_errors" in {e["field"] for e in problem(huge, 422)["errors"]}
    problem(client.post("/api/v1/operations", json={"operation_type": "import"}), 415)
    for cursor in ("not-a-cursor", "WzFd"):  # WzFd is [1]: JSON, but no (created_at, id)
        problem(client.get("/api/v1/operations", params={"cursor": cursor}), 422)
    assert stored_files(api.settings) == []


def test_file_name_is_kept_as_uploaded_and_the_stored_file_has_its_own(api: Api) -> None:
    client = api.client("editor")
    op = upload(client, "sku,name\nA,B\n", name="../../etc/<script>passwd.csv").json()
    assert op["file_name"] == "../../etc/<script>passwd.csv"
    assert client.get(f"/api/v1/operations/{op['id']}").json()["file_name"] == op["file_name"]
    stored = [p for p in stored_files(api.settings) if p.parent.name == str(api.org_id)]
    assert stored and all("passwd" not in p.name for p in stored)


def test_mapping_and_options(api: Api) -> None:
    client = api.client("editor")
    op = upload(
        client,
        "Artikel;Bezeichnung;Farbe\nA-1;Rake;red\n",
        mapping='{"Artikel": "sku", "Bezeichnung": "name", "Farbe": ""}',
        delimiter=";",
        validate_only=True,
    ).json()
    assert op["config"]["validate_only"] is True and op["config"]["delimiter"] == ";"
    final = wait_for(client, op["id"], "completed")
    assert final["created_records"] == 1
    assert client.get("/api/v1/entities/products").json()["items"] == []


def test_templates_entities_health_and_docs(api: Api) -> None:
    client = api.client("viewer")
    template = client.get("/api/v1/templates/inventory")
    assert template.status_code == 200
    assert template.text.splitlines()[0] == "sku,warehouse_code,quantity,reason,notes"
    problem(client.get("/api/v1/templates/widgets"), 422)
    upload(
        api.client("editor"),
        "code,name\nWH-1,North\nWH-2,South\nWH-3,East\n",
        entity="warehouses",
        name="w.csv",
    )
    deadline = time.monotonic() + 30
    while len(client.get("/api/v1/entities/warehouses").json()["items"]) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    page = client.get("/api/v1/entities/warehouses", params={"limit": 2}).json()
    assert [r["code"] for r in page["items"]] == ["WH-1", "WH-2"]
    page = client.get(
        "/api/v1/entities/warehouses", params={"limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [r["code"] for r in page["items"]] == ["WH-3"] and page["next_cursor"] is None
    assert (
        client.get("/api/v1/entities/warehouses", params={"code": "WH-2"}).json()["items"][0][
            "name"
        ]
        == "South"
    )
    health = httpx.get(f"{api.url}/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok", "database": "ok"}
    assert httpx.get(f"{api.url}/").status_code in (302, 307)
    schema = httpx.get(f"{api.url}/openapi.json").json()
    assert "/api/v1/operations/{operation_id}/events" in schema["paths"]
    # The upload form is described from OperationConfig: its limits, not a second copy.
    body = schema["paths"]["/api/v1/operations"]["post"]["requestBody"]["content"]
    form, upload_form, export_form = body["multipart/form-data"]["schema"]["oneOf"]
    config = engine.OperationConfig.model_json_schema()["properties"]
    chunk_size = form["properties"]["chunk_size"]["anyOf"][0]
    assert chunk_size["maximum"] == config["chunk_size"]["maximum"]
    assert form["properties"]["file"]["format"] == "binary"
    assert form["properties"]["operation_type"]["enum"] == ["import", "update", "delete"]
    assert set(form["required"]) == {"operation_type", "entity_type", "file"}
    assert set(upload_form["required"]) == {"operation_type", "entity_type", "upload_id"}
    assert "file" not in upload_form["properties"]
    assert [upload_form, export_form] == body["application/x-www-form-urlencoded"]["schema"][
        "oneOf"
    ]
    assert "file" not in export_form["properties"]
    problem(client.get("/api/v1/no-such-thing"), 404)


def test_docs_pages_need_no_internet(api: Api) -> None:
    """/docs and /redoc load every script and style from bulkops itself."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(f"{api.url}{page}")
        assert html.status_code == 200 and "/openapi.json" in html.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
            fetched = httpx.get(f"{api.url}{asset}")
            assert fetched.status_code == 200 and len(fetched.content) > 1000, asset


def test_users_and_tokens(api: Api) -> None:
    admin = api.client("admin")
    resp = admin.post("/api/v1/users", json={"email": "Zoe@Acme.example", "role": "viewer"})
    assert resp.status_code == 201
    user = resp.json()
    assert user["email"] == "zoe@acme.example" and len(user["password"]) >= 10
    assert "password_hash" not in user
    problem(admin.post("/api/v1/users", json={"email": "zoe@acme.example"}), 409)
    problem(admin.post("/api/v1/users", json={"email": "x@acme.example", "password": "short"}), 422)
    emails = [u["email"] for u in admin.get("/api/v1/users").json()["items"]]
    assert "zoe@acme.example" in emails and "admin@globex.example" not in emails
    assert engine.authenticate_password(api.store, "zoe@acme.example", user["password"])

    created = admin.post("/api/v1/tokens", json={"name": "zoe-sync", "user_id": user["id"]})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("bo_")
    zoe = api.client("nobody", Authorization=f"Bearer {token}")
    assert zoe.get("/api/v1/me").json()["email"] == "zoe@acme.example"
    listed = {t["id"]: t for t in admin.get("/api/v1/tokens").json()["items"]}
    assert listed[created.json()["id"]]["last_used_at"] is not None
    assert all("token" not in t and "token_hash" not in t for t in listed.values())
    assert admin.delete(f"/api/v1/tokens/{created.json()['id']}").status_code == 204
    problem(zoe.get("/api/v1/me"), 401)
    revoked = {t["id"]: t for t in admin.get("/api/v1/tokens").json()["items"]}
    assert revoked[created.json()["id"]]["revoked_at"] is not None
    problem(admin.delete("/api/v1/tokens/999999"), 404)
    problem(admin.post("/api/v1/tokens", json={"user_id": api.users["other"]}), 404)
    for who in ("editor", "viewer"):
        client = api.client(who)
        problem(client.get("/api/v1/users"), 403)
        problem(client.post("/api/v1/users", json={"email": "a@acme.example"}), 403)
        problem(client.get("/api/v1/tokens"), 403)
        problem(client.post("/api/v1/tokens", json={}), 403)
        problem(client.delete(f"/api/v1/tokens/{created.json()['id']}"), 403)


def test_a_misspelt_repeated_or_unknown_parameter_is_refused_not_ignored(api: Api) -> None:
    client = api.client("viewer")
    misspelt = problem(client.get("/api/v1/operations", params={"stauts": "failed"}), 422)
    assert misspelt["errors"][0]["field"] == "stauts"
    assert "status" in misspelt["errors"][0]["message"]  # the parameters there are
    twice = problem(client.get("/api/v1/entities/products?sku=A-1&sku=A-2"), 422)
    assert twice["errors"] == [{"field": "sku", "message": "takes one value; it was given twice."}]
    # A list filter takes several values, and a key filter narrows the rows.
    assert client.get("/api/v1/operations?status=failed&status=cancelled").status_code == 200
    assert client.get("/api/v1/entities/products", params={"sku": "none"}).json()["items"] == []

    editor = api.client("editor")
    encoding = problem(upload(editor, "sku,name\nA,B\n", encoding="klingon"), 422)
    assert "Unknown encoding 'klingon'" in str(encoding["errors"])
