"""The ASGI application: ``create_app(settings)`` builds it (nothing is built on import).

``bulkops serve`` runs it with uvicorn beside the embedded worker process; any ASGI server
can run it with ``--factory`` and a small wrapper that passes settings.

Every response (API, dashboard, redirects, errors, static files, event streams) carries
``X-Content-Type-Options: nosniff`` and a ``Referrer-Policy``, set by :class:`SecurityHeaders`
around everything else; the dashboard's pages add their Content-Security-Policy themselves.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bulkops import __version__, engine
from bulkops.api import ApiState, EventHub, RequestLog, include_api
from bulkops.config import Settings
from bulkops.logs import configure_json_logging
from bulkops.web import Sessions, WebState, build_templates, include_web
from bulkops.workers import EmbeddedWorker

__all__ = ["SecurityHeaders", "create_app", "serve"]

log = logging.getLogger("bulkops.asgi")

BASELINE_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    # Pages of the dashboard name operations and files in their URLs: other sites never see them.
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeaders:
    """Pure ASGI middleware: adds :data:`BASELINE_HEADERS` to every HTTP response's start.

    It only rewrites the ``http.response.start`` message, so a streamed body (the event
    streams) passes through message by message, never buffered as BaseHTTPMiddleware would.
    A header the response already has (the dashboard sets its own) is left as it is.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in BASELINE_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Application(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware too (which add_middleware cannot reach),
        # so that even an unexpected 500 carries the headers.
        return SecurityHeaders(super().build_middleware_stack())


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

    app = _Application(
        title="bulkops",
        version=__version__,
        summary="Validated, audited, undoable bulk operations on a B2B catalogue (CSV and XLSX).",
        lifespan=lifespan,
        docs_url=None,  # served below from bulkops itself, so they work with no internet access
        redoc_url=None,
    )
    _include_docs(app)
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


_DOCS_ASSETS = "/docs-assets"


def _include_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts served by this application."""
    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount(_DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="bulkops API",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="bulkops API",
            redoc_js_url=f"{_DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{_DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


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
