"""Signed session cookies and CSRF tokens for the dashboard (itsdangerous, no server state).

A session cookie is a timestamped, HMAC-signed payload (``itsdangerous``) holding the user id,
the organization and a random CSRF token; it is refused once older than ``max_age_seconds``
or when its signature does not hold. Every request re-reads
the user (so a disabled user or a changed role counts at once). Logging out deletes the cookie;
a copied cookie stays valid until it expires (``max_age_seconds``) or the secret changes.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from bulkops import engine
from bulkops.model import Role

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "Session",
    "Sessions",
]

SESSION_COOKIE = "bulkops_session"
LOGIN_CSRF_COOKIE = "bulkops_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user, as the signed cookie and the users table say."""

    principal: engine.Principal
    csrf_token: str

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token)


class Sessions:
    """Issues and checks session cookies signed with ``secret``."""

    def __init__(
        self, ctx: engine.Context, secret: str, *, max_age_seconds: int = 12 * 3600
    ) -> None:
        self.ctx = ctx
        self._serializer = URLSafeTimedSerializer(secret, salt="bulkops-session")
        self.max_age_seconds = max_age_seconds

    def encode(self, principal: engine.Principal) -> str:
        return self._serializer.dumps(
            {"u": principal.user_id, "o": principal.org_id, "c": secrets.token_urlsafe(24)}
        )

    def decode(self, cookie: str | None) -> dict[str, Any] | None:
        """The cookie's payload when its signature holds and it has not expired."""
        if not cookie or len(cookie) > 1024:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_seconds)
        except BadSignature:  # also SignatureExpired
            return None
        return data if isinstance(data, dict) else None

    def session(self, request: Request) -> Session | None:
        """The request's session, re-checked against the users table (a blocking read)."""
        data = self.decode(request.cookies.get(SESSION_COOKIE))
        if data is None or not isinstance(data.get("u"), int):
            return None
        user = engine.organization_user(self.ctx, data["o"], data["u"])
        if user is None or user["disabled_at"] is not None:
            return None
        principal = engine.Principal(
            user["organization_id"], user["id"], user["email"], Role(user["role"])
        )
        return Session(principal, str(data["c"]))

    def cookie_auth(self, request: Request) -> tuple[engine.Principal, str] | None:
        """For the API's dependency: the principal and the CSRF token it must see."""
        found = self.session(request)
        return (found.principal, found.csrf_token) if found else None

    def log_in(self, response: Response, request: Request, principal: engine.Principal) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.encode(principal),
            max_age=self.max_age_seconds,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")

    @staticmethod
    def log_out(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
