"""Benchmark of the service: is the API responsive while a large import runs?

Starts the real ``bulkops serve`` (embedded default: SQLite, worker process) in a fresh folder,
uploads a generated products file, and while the worker imports it measures:

1. GET /api/v1/operations latency (p50 / p95 / max) from a steady client;
2. the longest gap between two SSE messages (events or heartbeats) on one stream;
3. then 200 (``--clients``) concurrent SSE clients following a second import to ``done``:
   errors, and the longest gap any client saw.

Targets (issue): p95 < 100 ms, an SSE message at least every second, 200 clients without errors.

    .venv/bin/python -m bench.api --rows 1000000 --clients 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.generate import write_file
from bulkops import engine
from bulkops.model import Role
from bulkops.store import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("bulkops")
    log = (folder / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(exe), "serve", "--port", str(port)], cwd=folder, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"server did not start; see {folder / 'serve.log'}")
        time.sleep(0.1)


def _upload(client: httpx.Client, path: Path, **params: str) -> dict[str, Any]:
    with path.open("rb") as handle:
        resp = client.post(
            "/api/v1/operations",
            data={"operation_type": "import", "entity_type": "products", **params},
            files={"file": (path.name, handle, "text/csv")},
            timeout=600,
        )
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


def _follow(client: httpx.Client, op_id: str, gaps: list[float], events: list[str]) -> None:
    last = time.monotonic()
    with client.stream("GET", f"/api/v1/operations/{op_id}/events", timeout=60) as resp:
        for line in resp.iter_lines():
            if line.startswith(("event:", ":")):
                now = time.monotonic()
                gaps.append(now - last)
                last = now
                events.append(line)
                if line == "event: done":
                    return


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _many_clients(url: str, token: str, op_id: str, count: int) -> tuple[int, int, float]:
    """(clients that saw done, errors, the longest gap any client saw)."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:

        async def one() -> float:
            worst = 0.0
            last = time.monotonic()
            async with client.stream(
                "GET", f"/api/v1/operations/{op_id}/events", timeout=60
            ) as resp:
                resp.raise_for_status()
                async for line in resp.aiter_lines():
                    if line.startswith(("event:", ":")):
                        now = time.monotonic()
                        worst = max(worst, now - last)
                        last = now
                        if line == "event: done":
                            return worst
            raise RuntimeError("stream ended without done")

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    gaps = [r for r in results if isinstance(r, float)]
    errors = [r for r in results if not isinstance(r, float)]
    for error in errors[:3]:
        print(f"  client error: {error!r}")
    return len(gaps), len(errors), max(gaps, default=0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument(
        "--second-rows",
        type=int,
        default=200_000,
        help="rows of the import the concurrent SSE clients follow",
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bulkops-bench-api-") as tmp:
        folder = Path(tmp)
        store = Store(f"sqlite:///{folder / 'bulkops.db'}")
        store.migrate()
        org = engine.create_organization(store, "bench")
        user = engine.create_user(store, org, "bench@example.com", Role.EDITOR, None)
        token = engine.create_token(store, org, user, "bench")
        store.dispose()
        big = folder / "products.csv"
        size = write_file("products", big, args.rows)
        print(f"generated {args.rows:,} products ({size / 1e6:.0f} MB)")
        port = _free_port()
        server = _start_server(folder, port)
        url = f"http://127.0.0.1:{port}"
        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        try:
            started = time.monotonic()
            op = _upload(client, big)
            print(f"upload: {time.monotonic() - started:.1f} s (202, {op['status']})")
            gaps: list[float] = []
            events: list[str] = []
            follower = threading.Thread(target=_follow, args=(client, op["id"], gaps, events))
            follower.start()
            latencies: list[float] = []
            while follower.is_alive():
                t0 = time.perf_counter()
                client.get("/api/v1/operations", params={"limit": 50}).raise_for_status()
                latencies.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)
            final = client.get(f"/api/v1/operations/{op['id']}").json()
            elapsed = time.monotonic() - started
            print(
                f"import: {final['status']}, {final['processed_records']:,} records in "
                f"{elapsed:.1f} s ({final['processed_records'] / elapsed:,.0f} records/s)"
            )
            print(
                f"GET /api/v1/operations during the import: {len(latencies)} requests, "
                f"p50 {statistics.median(latencies):.1f} ms, "
                f"p95 {_percentile(latencies, 0.95):.1f} ms, max {max(latencies):.1f} ms"
            )
            print(
                f"SSE: {len(events)} messages, longest gap {max(gaps[1:], default=0):.2f} s "
                "(after the first)"
            )

            second = folder / "second.csv"
            write_file("products", second, args.second_rows, sku_prefix="TWO")
            op2 = _upload(client, second)
            seen, errors, worst = asyncio.run(_many_clients(url, token, op2["id"], args.clients))
            print(
                f"{args.clients} concurrent SSE clients: {seen} saw done, {errors} errors, "
                f"longest gap {worst:.2f} s"
            )
        finally:
            client.close()
            server.send_signal(signal.SIGINT)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            if os.environ.get("BENCH_KEEP_LOG"):
                print((folder / "serve.log").read_text()[-4000:])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
