"""``/api/v1/operations/{id}/events``: live progress as Server-Sent Events, read from the database.

The stream reads the operation's event log (the database is the truth, so any server process
serves any operation, whichever process does the work). On PostgreSQL one LISTEN connection
per server process (:class:`EventHub`) wakes every stream when any process commits an event;
on SQLite the streams poll. It sends ``retry:`` first, each event
with its growing ``id``, a ``: ping`` comment when nothing else was sent for a while, and ends
after ``done``. ``Last-Event-ID`` continues right after that event, without gap or repeat.
A ``done`` that later events followed (an operation rolled back after it completed) belongs
to the past and is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from bulkops import engine
from bulkops.errors import StoreError
from bulkops.model import Operation

from .deps import State, Viewer
from .problems import problem_responses

__all__ = ["EventHub", "router"]

log = logging.getLogger("bulkops.api.events")

router = APIRouter(prefix="/api/v1", tags=["operations"])
PAGE = 500


def _frame(event: dict[str, Any]) -> bytes:
    data = orjson.dumps(event["data"], default=str).decode()
    return f"id: {event['id']}\nevent: {event['event']}\ndata: {data}\n\n".encode()


class EventHub:
    """Wakes the event streams of this process when any process commits an event.

    A thread holds one LISTEN connection (however many streams are open) and, on every
    notification, sets the current :class:`asyncio.Event` and replaces it. A stream takes the
    current event *before* it reads the table, so a notification that arrives while it reads
    still wakes it.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, ctx: engine.Context) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._listen, args=(ctx,), name="bulkops-event-hub", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def arm(self) -> asyncio.Event:
        return self._event

    async def wait(self, armed: asyncio.Event, timeout: float) -> None:
        with anyio.move_on_after(timeout):
            await armed.wait()

    def _wake(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def _listen(self, ctx: engine.Context) -> None:
        assert self._loop is not None
        while not self._stop.is_set():
            try:
                with engine.listen_for_events(ctx) as waiter:
                    while not self._stop.is_set():
                        if waiter.wait(None, 1.0):
                            self._loop.call_soon_threadsafe(self._wake)
            except StoreError as exc:  # streams fall back to their timeout meanwhile
                log.warning("event listener lost; reconnecting", extra={"error": str(exc)})
                self._stop.wait(1.0)


class _Log:
    """Reads of one operation's events, in a thread (the store is synchronous)."""

    def __init__(self, ctx: engine.Context, org_id: int, op_id: str) -> None:
        self.ctx = ctx
        self.org_id = org_id
        self.op_id = op_id

    def after(self, event_id: int, limit: int = PAGE) -> list[dict[str, Any]]:
        return engine.events_after(self.ctx, self.org_id, self.op_id, event_id, limit)

    def after_one(self, event_id: int) -> bool:
        return bool(self.after(event_id, 1))

    def snapshot(self) -> tuple[Operation, dict[str, Any] | None]:
        op, latest = engine.operation_with_latest_event(self.ctx, self.org_id, self.op_id)
        assert op is not None
        return op, latest


def _last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


@router.get(
    "/operations/{operation_id}/events",
    summary="Live progress (text/event-stream)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "progress, rollback-progress, status and done events",
        },
        **problem_responses(401, 404, 422),
    },
)
async def operation_events(
    operation_id: str,
    principal: Viewer,
    state: State,
    last_event_id: Annotated[str | None, Header(max_length=32)] = None,
) -> StreamingResponse:
    ctx = state.ctx
    # Not found (another organization's operation included) is a 404 before streaming starts.
    await anyio.to_thread.run_sync(engine.get_operation, ctx, principal.org_id, operation_id)
    log = _Log(ctx, principal.org_id, operation_id)
    resume_after = _last_event_id(last_event_id)

    async def stream() -> AsyncIterator[bytes]:
        yield f"retry: {state.sse_retry_ms}\n\n".encode()
        op, latest = await anyio.to_thread.run_sync(log.snapshot, limiter=state.sse_limiter)
        latest_id = latest["id"] if latest else 0
        final = op.status.is_final
        if final and (resume_after is None or resume_after >= latest_id):
            # Finished already (or the client saw everything): the final state, at once.
            yield _frame({"id": latest_id, "event": "done", "data": engine.operation_view(op)})
            return
        if resume_after is not None:
            after = resume_after
        elif latest is not None and latest["event"] != "done":
            yield _frame(latest)  # where it stands now, then what follows
            after = latest["id"]
        else:
            after = latest_id
        quiet_since = time.monotonic()
        hub = state.event_hub
        while True:
            armed = hub.arm() if hub is not None else None
            events = await anyio.to_thread.run_sync(log.after, after, limiter=state.sse_limiter)
            for index, event in enumerate(events):
                after = event["id"]
                if event["event"] == "done":
                    later = index + 1 < len(events) or await anyio.to_thread.run_sync(
                        log.after_one, event["id"], limiter=state.sse_limiter
                    )
                    if later:
                        continue
                    yield _frame(event)
                    return
                yield _frame(event)
            if events:
                quiet_since = time.monotonic()
                if len(events) == PAGE:
                    continue
            elif time.monotonic() - quiet_since >= state.sse_heartbeat_seconds:
                yield b": ping\n\n"
                quiet_since = time.monotonic()
            if hub is None or armed is None:
                await anyio.sleep(state.sse_poll_seconds)
            else:
                await hub.wait(armed, state.sse_wake_timeout_seconds)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
