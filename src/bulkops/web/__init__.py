"""The dashboard: server-rendered pages (Jinja2) with small hand-written JavaScript and CSS.

:func:`include_web` mounts the pages and ``/static`` on an application; the ASGI lifespan puts
a :class:`WebState` on ``app.state.web``. Writes go through the HTTP API with the session
cookie and its CSRF token (see :mod:`bulkops.web.sessions`).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import flow
from .pages import STATIC_DIR, WebState, build_templates
from .routes import router
from .sessions import Session, Sessions

__all__ = ["Session", "Sessions", "WebState", "build_templates", "include_web"]


def include_web(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(flow.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
