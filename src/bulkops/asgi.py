"""The ASGI application: ``create_app(settings)`` builds it (nothing is built on import).

``bulkops serve`` runs it with uvicorn beside the embedded worker process; any ASGI server
can run it with ``--factory`` and a small wrapper that passes settings.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from bulkops import __version__, engine
from bulkops.api import ApiState, EventHub, RequestLog, include_api
from bulkops.config import Settings
from bulkops.logs import configure_json_logging
from bulkops.web import Sessions, WebState, build_templates, include_web
from bulkops.workers import EmbeddedWorker

__all__ = ["create_app", "serve"]

log = logging.getLogger("bulkops.asgi")


def create_app(
    settings: Settings,
    *,
    sse_poll_seconds: float = 0.3,
    sse_heartbeat_seconds: float = 10.0,
    sse_wake_timeout_seconds: float = 2.0,
    token_touch_seconds: float = 30.0,
) -> FastAPI:
    """The bulkops HTTP API and dashboard for ``settings`` (the store is opened at start-up).

    Session cookies are signed with ``settings.secret_key``; without one, a random key is made
    here, so dashboard sessions end when the process restarts.
    """
    secret = settings.secret_key
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.warning("BULKOPS_SECRET_KEY is not set; dashboard sessions end at restart")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = engine.open_context(settings)
        state = ApiState(
            ctx,
            sse_poll_seconds=sse_poll_seconds,
            sse_heartbeat_seconds=sse_heartbeat_seconds,
            sse_limiter=anyio.CapacityLimiter(8),
            sse_wake_timeout_seconds=sse_wake_timeout_seconds,
        )
        if engine.uses_postgresql(ctx):
            state.event_hub = EventHub()
            state.event_hub.start(state.ctx)
        state.tokens.ttl_seconds = token_touch_seconds
        sessions = Sessions(state.ctx, secret)
        state.cookie_auth = sessions.cookie_auth
        app.state.api = state
        app.state.web = WebState(state.ctx, sessions, build_templates())
        try:
            yield
        finally:
            if state.event_hub is not None:
                state.event_hub.stop()
            engine.close_context(ctx)

    app = FastAPI(
        title="bulkops",
        version=__version__,
        summary="Validated, audited, undoable bulk CSV operations on a B2B catalogue.",
        lifespan=lifespan,
    )
    include_api(app)
    include_web(app)
    app.add_middleware(RequestLog)

    @app.get(
        "/healthz",
        tags=["service"],
        summary="Liveness and database reachability",
        responses={503: {"description": "The database is not reachable"}},
    )
    async def healthz() -> JSONResponse:
        state: ApiState = app.state.api
        reachable = await anyio.to_thread.run_sync(engine.database_reachable, state.ctx)
        return JSONResponse(
            {
                "status": "ok" if reachable else "unavailable",
                "database": "ok" if reachable else "unreachable",
            },
            status_code=200 if reachable else 503,
        )

    return app


def serve(settings: Settings, *, host: str, port: int, embedded_worker: bool = True) -> None:
    """Run the API with uvicorn and, beside it, the embedded worker process (``bulkops serve``).

    Logs are JSON lines on standard error: one per request, one per operation state change.
    """
    import uvicorn

    configure_json_logging(("bulkops", "uvicorn.error"))
    if embedded_worker and settings.broker_url:
        # Operations go to the Celery workers (``bulkops worker``): their dispatchers find
        # them in the database, where the API leaves them either way.
        log.info("broker configured: operations run on Celery workers, no embedded worker")
        embedded_worker = False
    worker = EmbeddedWorker(settings) if embedded_worker else None
    if worker is not None:
        worker.start()
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        access_log=False,  # bulkops.api.access logs one JSON line per request instead
        log_config=None,
        timeout_graceful_shutdown=3,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        if worker is not None:
            worker.stop()
