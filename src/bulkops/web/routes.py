"""The dashboard's pages: log in and out, history, new operation, export, one operation.

Pages are rendered on the server from the engine's organization-scoped reads.
Everything that changes state (start, cancel, roll back, export) is sent by the page's script
to the HTTP API with the session cookie and the ``X-CSRF-Token`` header, so each rule lives
once, in the API and the engine. Log in and out are plain forms with a CSRF field. What
every page shares (templates, rendering, the browser's time zone) is in :mod:`.pages`;
"today" in the history's totals is that zone's day.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from bulkops import engine
from bulkops.entities import spec_for
from bulkops.errors import AuthenticationFailed, NotFound
from bulkops.model import EntityType, OperationStatus, OperationType, Outcome

from .pages import current_session, render, to_login, web_state, zone_of
from .sessions import CSRF_FIELD, LOGIN_CSRF_COOKIE, Sessions

__all__ = ["router"]

PAGE_SIZE = 25
FIRST_ERRORS = 20
RECORDS_PAGE = 20
RECENT_EXPORTS = 10

router = APIRouter(include_in_schema=False)


def _safe_next(value: str | None) -> str:
    """Only a path of this site (never ``//host`` or a scheme) may follow a login."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/operations"


# -- log in and out -----------------------------------------------------------------------------


def _login_page(
    request: Request, *, error: str | None, next_path: str, email: str = "", status: int = 200
) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "error": error,
            "next": next_path,
            "email": email,
            "login_csrf": token,
            "logged_out": request.query_params.get("logged_out") == "1",
        },
        session=None,
        status_code=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    if await current_session(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request, error=None, next_path=request.query_params.get("next", ""))


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    email = str(form.get("email", "")).strip()[:254]
    password = str(form.get("password", ""))[:1024]
    next_path = str(form.get("next", ""))[:2000]
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = str(form.get(CSRF_FIELD, ""))
    if not expected or not hmac.compare_digest(sent, expected):
        return _login_page(
            request,
            error="The login form had expired. Please enter your email and password again.",
            next_path=next_path,
            email=email,
            status=403,
        )
    web = web_state(request)
    # The address the server saw (uvicorn puts a trusted proxy's X-Forwarded-For there).
    address = request.client.host if request.client else "unknown"
    try:
        principal = await anyio.to_thread.run_sync(
            engine.log_in, web.ctx.store, email, password, address
        )
    except engine.LoginThrottled as exc:
        response = _login_page(
            request, error=str(exc), next_path=next_path, email=email, status=429
        )
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    except AuthenticationFailed:
        return _login_page(
            request,
            error="Wrong email or password. Check both and try again.",
            next_path=next_path,
            email=email,
            status=401,
        )
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    web.sessions.log_in(response, request, principal)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await current_session(request)
    form = await request.form()
    if session is not None and not session.csrf_ok(str(form.get(CSRF_FIELD, ""))):
        return render(
            request,
            "message.html",
            {"title": "Not logged out", "message": "The page was out of date; reload it and "
             "press Log out again."},
            session=session,
            status_code=403,
        )
    response = RedirectResponse("/login?logged_out=1", status_code=303)
    Sessions.log_out(response)
    return response


# -- history ------------------------------------------------------------------------------------


def _choice(value: str | None, allowed: list[str]) -> str:
    return value if value in allowed else ""


def _day(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _users(ctx: engine.Context, org_id: int) -> dict[int, str]:
    return {u["id"]: u["email"] for u in engine.organization_users(ctx, org_id)}


def _start_of_today(zone: tzinfo) -> datetime:
    today = datetime.now(zone).date()
    return datetime.combine(today, time(), zone).astimezone(UTC)


def _history(
    ctx: engine.Context, org_id: int, filters: dict[str, Any], today: datetime
) -> dict[str, Any]:
    page = engine.keyset_page(
        lambda how_many: engine.list_operations(
            ctx,
            org_id,
            status=[filters["status"]] if filters["status"] else [],
            operation_type=[filters["type"]] if filters["type"] else [],
            entity_type=[filters["entity"]] if filters["entity"] else [],
            outcome=[Outcome(filters["outcome"])] if filters["outcome"] else [],
            created_after=filters["created_after"],
            created_before=filters["created_before"],
            query=filters["q"] or None,
            limit=how_many,
            before=filters["before"],
        ),
        PAGE_SIZE,
        lambda op: {"before": op.created_at.isoformat(), "before_id": op.id},
    )
    return {
        "operations": [engine.operation_view(r) for r in page.items],
        "older": page.next_position,
        "users": _users(ctx, org_id),
        "totals": engine.operation_totals(ctx, org_id, today),
    }


@router.get("/")
async def home(request: Request) -> Response:
    return RedirectResponse("/operations")


@router.get("/operations")
async def history(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    params = request.query_params
    since, until = _day(params.get("since")), _day(params.get("until"))
    before: tuple[datetime, str] | None = None
    if params.get("before") and params.get("before_id"):
        try:
            moment = datetime.fromisoformat(params["before"])
            before = (moment if moment.tzinfo else moment.replace(tzinfo=UTC), params["before_id"])
        except ValueError:
            before = None
    filters = {
        "status": _choice(params.get("status"), [s.value for s in OperationStatus]),
        "outcome": _choice(params.get("outcome"), [o.value for o in Outcome]),
        "type": _choice(params.get("type"), [t.value for t in OperationType]),
        "entity": _choice(params.get("entity"), [e.value for e in EntityType]),
        "since": since.isoformat() if since else "",
        "until": until.isoformat() if until else "",
        "q": (params.get("q") or "").strip()[:255],
        "created_after": datetime.combine(since, time(), UTC) if since else None,
        "created_before": datetime.combine(until + timedelta(days=1), time(), UTC)
        if until
        else None,
        "before": before,
    }
    ctx = web_state(request).ctx
    today = _start_of_today(zone_of(request))
    data = await anyio.to_thread.run_sync(
        _history, ctx, session.principal.org_id, filters, today
    )
    kept = ("status", "outcome", "type", "entity", "since", "until", "q")
    keep = {k: filters[k] for k in kept if filters[k]}
    older_url = f"/operations?{urlencode({**keep, **data['older']})}" if data["older"] else None
    return render(
        request,
        "history.html",
        {
            **data,
            "filters": filters,
            "older_url": older_url,
            "first_url": f"/operations?{urlencode(keep)}" if before else None,
            "filtered": bool(keep),
        },
        session=session,
    )


# -- new operation ------------------------------------------------------------------------------


@router.get("/operations/new")
async def new_operation(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    ctx = web_state(request).ctx
    columns = {e.value: [(f.name, f.required) for f in spec_for(e).fields] for e in EntityType}
    return render(
        request,
        "new.html",
        {
            "max_file_bytes": ctx.settings.max_file_bytes,
            "columns": columns,
            "entity": _choice(request.query_params.get("entity"), [e.value for e in EntityType]),
        },
        session=session,
    )


# -- export ---------------------------------------------------------------------------------------


def _recent_exports(ctx: engine.Context, org_id: int) -> list[dict[str, Any]]:
    found = engine.list_operations(
        ctx, org_id, operation_type=[OperationType.EXPORT.value], limit=RECENT_EXPORTS
    )
    return [engine.operation_view(op) for op in found]


@router.get("/exports/new")
async def new_export(request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    ctx = web_state(request).ctx
    recent = await anyio.to_thread.run_sync(_recent_exports, ctx, session.principal.org_id)
    return render(
        request,
        "export.html",
        {
            "fields": {e.value: [f.name for f in spec_for(e).fields] for e in EntityType},
            "entity": _choice(request.query_params.get("entity"), [e.value for e in EntityType]),
            "recent": recent,
        },
        session=session,
    )


# -- one operation ------------------------------------------------------------------------------


def _error_rows(page: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for entry in page:
        for error in entry["errors"]:
            rows.append(
                {
                    "row": entry["row"],
                    "line": entry["line"],
                    "column": error.get("column"),
                    "value": error.get("value"),
                    "message": error.get("message"),
                }
            )
    return rows


def _record(r: dict[str, Any]) -> dict[str, Any]:
    before = orjson.loads(r["before_data"]) if r["before_data"] else {}
    after = orjson.loads(r["after_data"]) if r["after_data"] else {}
    names = list(dict.fromkeys([*after, *before]))
    return {
        "index": r["record_index"],
        "key": " / ".join(str(value) for value in r["key"].values()),
        "entity_id": r["entity_id"],
        "action": r["action"],
        "status": r["status"],
        "error": r["error"],
        "fields": [
            {
                "name": n,
                "before": before.get(n),
                "after": after.get(n),
                "changed": before.get(n) != after.get(n),
            }
            for n in names
        ],
    }


@dataclass(frozen=True)
class AuditQuery:
    """Which page of the audit records the operation page shows: a cursor and a key search."""

    key: str = ""
    after: int | None = None
    before: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> AuditQuery:
        def cursor(name: str) -> int | None:
            value = params.get(name, "")
            return int(value) if value.isdigit() and len(value) < 19 else None

        return cls(
            (params.get("key") or "").strip()[:255], cursor("after"), cursor("before")
        )

    @property
    def paged(self) -> bool:
        return self.after is not None or self.before is not None


def _audit(
    ctx: engine.Context, org_id: int, op_id: str, query: AuditQuery
) -> dict[str, Any]:
    """One page of audit records, with the cursors of the pages before and after it."""
    fetched = engine.audit_records(
        ctx,
        org_id,
        op_id,
        limit=RECORDS_PAGE + 1,
        after_id=query.after,
        before_id=query.before,
        key_contains=query.key or None,
    )
    more = len(fetched) > RECORDS_PAGE
    if query.before is not None:
        records = fetched[-RECORDS_PAGE:]  # read backwards: the extra one is the earliest
        earlier, later = more, True
    else:
        records = fetched[:RECORDS_PAGE]
        earlier, later = query.after is not None, more
    keep = {"key": query.key} if query.key else {}
    base = f"/operations/{op_id}"
    return {
        "records": [_record(r) for r in records],
        "key": query.key,
        "paged": query.paged,
        "earlier_url": f"{base}?{urlencode({**keep, 'before': records[0]['id']})}#audit"
        if earlier and records
        else None,
        "later_url": f"{base}?{urlencode({**keep, 'after': records[-1]['id']})}#audit"
        if later and records
        else None,
        "first_url": f"{base}?{urlencode(keep)}#audit" if query.paged else None,
    }


def _operation(
    ctx: engine.Context, org_id: int, op_id: str, query: AuditQuery
) -> dict[str, Any]:
    op = engine.get_operation(ctx, org_id, op_id)
    errors = engine.error_rows(ctx, org_id, op_id, limit=FIRST_ERRORS)
    audit = _audit(ctx, org_id, op_id, query)
    conflicts = engine.audit_records(ctx, org_id, op_id, limit=RECORDS_PAGE, status="conflict")
    export_bytes: int | None = None
    if op.operation_type is OperationType.EXPORT and op.status is OperationStatus.COMPLETED:
        with contextlib.suppress(OSError):
            path = engine.export_path(ctx, org_id, op_id, op.config.get("format", "csv"))
            export_bytes = path.stat().st_size
    return {
        "op": engine.operation_view(op),
        "export_bytes": export_bytes,
        "header": op.header if op.header else [],
        "errors": _error_rows(errors),
        "audit": audit,
        "records": audit["records"],
        "key_names": " / ".join(spec_for(op.entity_type).key),
        "conflicts": [_record(r) for r in conflicts],
        "users": _users(ctx, org_id),
    }


@router.get("/operations/{operation_id}")
async def operation_page(operation_id: str, request: Request) -> Response:
    session = await current_session(request)
    if session is None:
        return to_login(request)
    ctx = web_state(request).ctx
    try:
        data = await anyio.to_thread.run_sync(
            _operation,
            ctx,
            session.principal.org_id,
            operation_id[:64],
            AuditQuery.from_params(request.query_params),
        )
    except NotFound:
        return render(
            request,
            "message.html",
            {
                "title": "Operation not found",
                "message": f"There is no operation {operation_id[:64]} in your organization.",
            },
            session=session,
            status_code=404,
        )
    op = data["op"]  # the operation object, as the API shows it
    status = OperationStatus(op["status"])
    return render(
        request,
        "operation.html",
        {
            **data,
            "running": not status.is_final,
            "may_write": session.principal.may_write(),
            "may_cancel": status
            in (OperationStatus.PENDING, OperationStatus.PROCESSING, OperationStatus.ROLLING_BACK),
            # A dry run and an export changed nothing: there is nothing to undo.
            "may_rollback": status.can_roll_back
            and op["operation_type"] != OperationType.EXPORT
            and not op["config"].get("validate_only")
            and (op["created_records"] + op["updated_records"] + op["deleted_records"]) > 0,
        },
        session=session,
    )
