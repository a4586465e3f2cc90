"""``bulkops serve`` for real: a subprocess with its embedded worker process, on SQLite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bulkops(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_exe(), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _exe() -> str:
    return str(Path(sys.executable).with_name("bulkops"))


def test_serve_runs_uploads_in_its_worker_process(tmp_path: Path) -> None:
    _bulkops(tmp_path, "init")
    token = _bulkops(tmp_path, "token", "create", "--user", "admin@example.com").stdout.strip()
    port = _free_port()
    server = subprocess.Popen(
        [_exe(), "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr
            time.sleep(0.1)
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        resp = client.post(
            "/api/v1/operations",
            data={"operation_type": "import", "entity_type": "warehouses"},
            files={"file": ("w.csv", "code,name\nWH-1,North\nWH-2,\n")},
        )
        assert resp.status_code == 202
        done = None
        with client.stream("GET", f"/api/v1/operations/{resp.json()['id']}/events") as events:
            for line in events.iter_lines():
                if line.startswith("event: done"):
                    done = line
                elif done and line.startswith("data: "):
                    final = orjson.loads(line.removeprefix("data: "))
                    break
        assert final["status"] == "completed" and final["failed_records"] == 1
        assert final["created_by"] == client.get("/api/v1/me").json()["user_id"]
    finally:
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode in (0, 130, -signal.SIGINT), stderr  # 130: stopped by Ctrl-C
    logged = [orjson.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(e["msg"] == "request" and e["path"] == "/api/v1/operations" for e in logged)
    assert any(e["msg"] == "operation ended" and e["status"] == "completed" for e in logged)
    assert any(e["msg"] == "worker started" and e["pid"] != server.pid for e in logged)
