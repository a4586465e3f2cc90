"""On PostgreSQL, event streams wake on LISTEN/NOTIFY instead of waiting for their next poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bulkops import engine
from bulkops.asgi import create_app
from bulkops.config import Settings
from bulkops.model import EntityType, OperationType, Role
from bulkops.store import Store
from tests.conftest import cloned_database
from tests.integration.test_api import ServerThread


@pytest.fixture
def pg_url(pg_template: str | None) -> Iterator[str]:
    yield from cloned_database(pg_template, "bulkops_w")


def test_a_stream_wakes_as_soon_as_another_process_commits_an_event(
    pg_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=pg_url, data_dir=tmp_path / "data")
    store = Store(pg_url)
    org_id = engine.create_organization(store, "acme", "Acme")
    user_id = engine.create_user(store, org_id, "ann@acme.example", Role.VIEWER, None)
    token = engine.create_token(store, org_id, user_id, "t")
    path = tmp_path / "p.csv"
    path.write_text("sku,name\nA,B\n")
    op = engine.create_operation(
        engine.Context(store, settings),
        org_id,
        operation_type=OperationType.IMPORT,
        entity_type=EntityType.PRODUCTS,
        config=engine.OperationConfig(),
        source=path,
    )
    # Polling alone would take 30 s: only a notification can deliver within a second or two.
    app = create_app(
        settings, sse_poll_seconds=30, sse_heartbeat_seconds=60, sse_wake_timeout_seconds=30
    )
    server = ServerThread(app)
    base = server.start()
    received: list[tuple[float, str]] = []

    def listen() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with (
            httpx.Client(base_url=base, headers=headers, timeout=60) as client,
            client.stream("GET", f"/api/v1/operations/{op.id}/events") as resp,
        ):
            for line in resp.iter_lines():
                if line.startswith("event: "):
                    received.append((time.monotonic(), line.removeprefix("event: ")))

    reader = threading.Thread(target=listen, daemon=True)
    try:
        reader.start()
        time.sleep(1.5)  # the stream has sent where the operation stands and now waits
        before = len(received)
        sent = time.monotonic()
        other = Store(pg_url)  # another process's connection writes the event
        with other.transaction(org_id, write=True) as tx:
            tx.events.add(op.id, "progress", {"processed_records": 1})
        deadline = time.monotonic() + 5
        while len(received) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(received) > before, "the stream did not wake"
        arrived, name = received[before]
        assert name == "progress" and arrived - sent < 3
        with other.transaction(org_id, write=True) as tx:
            tx.events.add(op.id, "done", {"status": "cancelled"})
        reader.join(10)
        assert not reader.is_alive() and received[-1][1] == "done"
        other.dispose()
    finally:
        server.stop()
        store.dispose()
