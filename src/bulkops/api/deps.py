"""Dependencies of the routes: the engine context, the caller, and what the caller may do."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bulkops import engine
from bulkops.errors import AuthenticationFailed, PermissionDenied, StoreError

if TYPE_CHECKING:
    from .events import EventHub

__all__ = [
    "Admin",
    "ApiState",
    "CookieAuth",
    "Ctx",
    "Editor",
    "TokenCache",
    "Viewer",
    "get_state",
]


log = logging.getLogger("bulkops.api")


class TokenCache:
    """When each token's last-used time was last written by this process.

    Every request verifies its token with a read (so a revocation counts at once); the
    last-used time is written at most every ``ttl_seconds`` per token, because on SQLite that
    write queues behind a running import's chunk.
    """

    def __init__(self, ttl_seconds: float = 30.0) -> None:
        self.ttl_seconds = ttl_seconds
        self._touched: dict[int, float] = {}
        self._lock = threading.Lock()

    def due(self, token_id: int) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(token_id)
            if last is not None and now - last < self.ttl_seconds:
                return False
            if len(self._touched) > 100_000:
                self._touched.clear()
            self._touched[token_id] = now
            return True


CookieAuth = Callable[[Request], "tuple[engine.Principal, str] | None"]
"""Reads a session cookie: the user it belongs to and the CSRF token its writes must carry."""
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


@dataclass
class ApiState:
    """What the application holds while it runs (built by the ASGI lifespan, not on import)."""

    ctx: engine.Context
    tokens: TokenCache = field(default_factory=TokenCache)
    sse_poll_seconds: float = 0.3
    sse_heartbeat_seconds: float = 10.0
    sse_retry_ms: int = 2000
    # SSE polls take their threads from here, so many streams never starve request threads.
    sse_limiter: anyio.CapacityLimiter | None = None
    # PostgreSQL: wakes streams on LISTEN/NOTIFY; they re-read at least this often anyway.
    event_hub: EventHub | None = None
    sse_wake_timeout_seconds: float = 2.0
    # The dashboard's session cookie (set by the ASGI app): the principal and its CSRF token.
    cookie_auth: CookieAuth | None = None


def get_state(request: Request) -> ApiState:
    state = request.app.state.api
    assert isinstance(state, ApiState)
    return state


State = Annotated[ApiState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="An API token (bo_…)")


def _principal(
    request: Request,
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> engine.Principal:
    if credentials is None and state.cookie_auth is not None:
        session = state.cookie_auth(request)
        if session is not None:
            return _cookie_principal(request, *session)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("Send an API token: Authorization: Bearer TOKEN.")
    found = engine.live_token(state.ctx, credentials.credentials)
    if found is None:
        raise AuthenticationFailed("Missing, revoked or unknown API token.")
    principal, token_id = found
    if state.tokens.due(token_id):
        try:
            engine.mark_token_used(state.ctx, token_id)
        except StoreError as exc:  # the time of use is a courtesy; the request goes on
            log.warning("could not record token use", extra={"error": str(exc)})
    request.state.principal = principal
    return principal


def _cookie_principal(
    request: Request, principal: engine.Principal, csrf: str
) -> engine.Principal:
    """A dashboard request: a write must echo the session's CSRF token (X-CSRF-Token)."""
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get("x-csrf-token", "")
        if not sent or not hmac.compare_digest(sent, csrf):
            raise PermissionDenied(
                "This request came with a session cookie but without its CSRF token "
                "(header X-CSRF-Token); reload the page and try again."
            )
    request.state.principal = principal
    return principal


def _viewer(principal: Annotated[engine.Principal, Depends(_principal)]) -> engine.Principal:
    return principal


def _editor(principal: Annotated[engine.Principal, Depends(_principal)]) -> engine.Principal:
    if not principal.may_write():
        raise PermissionDenied(
            f"Your role ({principal.role.value}) may read but not start, cancel or roll back "
            "operations; an editor or admin can."
        )
    return principal


def _admin(principal: Annotated[engine.Principal, Depends(_principal)]) -> engine.Principal:
    if not principal.may_administer():
        raise PermissionDenied(
            f"Your role ({principal.role.value}) may not manage users or tokens; an admin can."
        )
    return principal


Viewer = Annotated[engine.Principal, Depends(_viewer)]
"""Any user of the organization (reading)."""
Editor = Annotated[engine.Principal, Depends(_editor)]
"""An editor or admin (starting, cancelling, rolling back)."""
Admin = Annotated[engine.Principal, Depends(_admin)]
"""An admin (users and tokens)."""


def _ctx(state: State) -> engine.Context:
    return state.ctx


Ctx = Annotated[engine.Context, Depends(_ctx)]
