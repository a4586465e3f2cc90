"""The HTTP API (``/api/v1``): FastAPI routes, dependencies, problem+json errors and SSE.

:func:`include_api` mounts every router and the error handlers on an application; the
application itself is built by :func:`bulkops.asgi.create_app`.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from . import accounts, catalogue, checks, events, operations, reports
from .deps import ApiState, TokenCache
from .events import EventHub
from .logs import RequestLog
from .params import refuse_unknown_query_parameters
from .problems import install_problem_handlers

__all__ = ["ApiState", "EventHub", "RequestLog", "TokenCache", "include_api"]


def include_api(app: FastAPI) -> None:
    install_problem_handlers(app)
    strict = [Depends(refuse_unknown_query_parameters)]
    for module in (operations, checks, reports, events, catalogue, accounts):
        app.include_router(module.router, dependencies=strict)
