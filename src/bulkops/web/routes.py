"""The dashboard's pages: log in and out, history, new operation, export, one operation.

Pages are rendered on the server from the engine's organization-scoped reads.
Everything that changes state (start, cancel, roll back, export) is sent by the page's script
to the HTTP API with the session cookie and the ``X-CSRF-Token`` header, so each rule lives
once, in the API and the engine. Log in and out are plain forms with a CSRF field.

Times are rendered as ``<time datetime>`` with a readable text in the browser's time zone
(which the script keeps in the ``bulkops_tz`` cookie; UTC until it has); the script then
formats them in the browser's own locale. "Today" in the history's totals is that zone's day.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context as TemplateContext
from markupsafe import Markup

from bulkops import engine
from bulkops.entities import spec_for
from bulkops.errors import AuthenticationFailed, NotFound
from bulkops.formats import is_formula_like
from bulkops.model import STATUS_LABELS, EntityType, OperationStatus, OperationType, Outcome

from .sessions import CSRF_FIELD, LOGIN_CSRF_COOKIE, Session, Sessions

__all__ = ["STATIC_DIR", "WebState", "router"]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
PAGE_SIZE = 25
FIRST_ERRORS = 20
RECORDS_PAGE = 20
RECENT_EXPORTS = 10
ZONE_COOKIE = "bulkops_tz"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)


def _bytes(value: Any) -> str:
    if not isinstance(value, int):
        return ""
    size = float(value)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return str(value)


def _number(value: Any) -> str:
    """A count with thousands separators (1,204); anything else as it is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _plain(value: Any) -> str:
    """A configuration value in words: yes/no, a dash for none, never Python's spelling."""
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    return str(value)


def _zone(request: Request) -> tzinfo:
    """The browser's time zone as its script reported it (a cookie), else UTC."""
    name = unquote(request.cookies.get(ZONE_COOKIE, ""))[:64]
    if name:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(name)
    return UTC


def _moment(value: Any) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _exact(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _ago(moment: datetime, now: datetime, zone: tzinfo) -> str:
    """"3 min ago"; app.js words it the same way when it refreshes the text."""
    seconds = max((now - moment).total_seconds(), 0.0)
    if seconds < 45:
        return "just now"
    if seconds < 3600 - 30:
        return f"{max(round(seconds / 60), 1)} min ago"
    if seconds < 86400 - 1800:
        return f"{round(seconds / 3600)} h ago"
    days = round(seconds / 86400)
    if days <= 1:
        return "yesterday"
    if days < 7:
        return f"{days} days ago"
    local = moment.astimezone(zone)
    return f"{local.day} {local:%b %Y}"


@pass_context
def _when(context: TemplateContext, value: Any) -> str:
    moment = _moment(value)
    return _exact(moment, context.get("zone") or UTC) if moment else ""


@pass_context
def _time_tag(context: TemplateContext, value: Any, style: str = "exact") -> Markup:
    """``<time datetime>`` with a readable fallback: the exact time, or "3 min ago" with the
    exact time on hover. app.js re-formats both in the browser's locale and time zone."""
    moment = _moment(value)
    if moment is None:
        return Markup("")
    zone = context.get("zone") or UTC
    exact = _exact(moment, zone)
    iso = moment.isoformat()
    if style == "ago":
        text = _ago(moment, datetime.now(UTC), zone)
        return Markup('<time datetime="{}" data-time="ago" title="{}">{}</time>').format(
            iso, exact, text
        )
    return Markup('<time datetime="{}" data-time="exact">{}</time>').format(iso, exact)


def _count_summary(view: Mapping[str, Any]) -> str:
    """ "1,204 updated · 6 failed": the counts that are not zero (app.js has the same)."""
    if view["operation_type"] == OperationType.EXPORT.value:
        rows = view["processed_records"]
        return f"{rows:,} row{'s' if rows != 1 else ''} written"
    check = bool(view["config"].get("validate_only"))
    words = (
        ("created_records", "created", "to create"),
        ("updated_records", "updated", "to update"),
        ("deleted_records", "deleted", "to delete"),
        ("unchanged_records", "unchanged", "unchanged"),
        ("failed_records", "failed", "would fail"),
        ("rolled_back_records", "rolled back", "rolled back"),
        ("conflict_records", "conflicts", "conflicts"),
    )
    parts = [
        f"{view[name]:,} {would if check else done}"
        for name, done, would in words
        if view.get(name)
    ]
    return " · ".join(parts) or "no records"


def _outcome_text(view: Mapping[str, Any]) -> str:
    """The badge's words: "completed with 3 errors" says how many, the others their label."""
    outcome = Outcome(view["outcome"])
    if outcome is Outcome.COMPLETED_WITH_ERRORS:
        failed = view["failed_records"]
        return f"completed with {failed:,} error{'s' if failed != 1 else ''}"
    return outcome.label


def _duration(start: Any, end: Any) -> str:
    if not start or not end:
        return ""
    first = datetime.fromisoformat(start) if isinstance(start, str) else start
    last = datetime.fromisoformat(end) if isinstance(end, str) else end
    seconds = max((last - first).total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def build_templates() -> Jinja2Templates:
    environment = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(bytes=_bytes, when=_when, num=_number, plain=_plain)
    environment.globals.update(
        formula_like=is_formula_like,
        duration=_duration,
        time_tag=_time_tag,
        count_summary=_count_summary,
        status_labels=STATUS_LABELS,
        outcome_labels={o.value: o.label for o in Outcome},
        outcomes=[o.value for o in Outcome],
        outcome_text=_outcome_text,
        entities=[e.value for e in EntityType],
        operation_types=[t.value for t in OperationType if t is not OperationType.EXPORT],
        statuses=[s.value for s in OperationStatus],
        final_statuses=[s.value for s in OperationStatus if s.is_final],
        # The form's limits come from the options' own schema, so they cannot drift from it.
        option_schema=engine.OperationConfig.model_json_schema()["properties"],
    )
    return Jinja2Templates(env=environment)


@dataclass
class WebState:
    """What the dashboard holds while the application runs (built by the ASGI lifespan)."""

    ctx: engine.Context
    sessions: Sessions
    templates: Jinja2Templates


def _web(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state


def _render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: Session | None,
    status_code: int = 200,
) -> Response:
    response = _web(request).templates.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "zone": _zone(request),
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    return response


async def _session(request: Request) -> Session | None:
    return await anyio.to_thread.run_sync(_web(request).sessions.session, request)


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


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
    response = _render(
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
    if await _session(request) is not None:
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
    web = _web(request)
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
    session = await _session(request)
    form = await request.form()
    if session is not None and not session.csrf_ok(str(form.get(CSRF_FIELD, ""))):
        return _render(
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
    session = await _session(request)
    if session is None:
        return _to_login(request)
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
    ctx = _web(request).ctx
    today = _start_of_today(_zone(request))
    data = await anyio.to_thread.run_sync(
        _history, ctx, session.principal.org_id, filters, today
    )
    kept = ("status", "outcome", "type", "entity", "since", "until", "q")
    keep = {k: filters[k] for k in kept if filters[k]}
    older_url = f"/operations?{urlencode({**keep, **data['older']})}" if data["older"] else None
    return _render(
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
    session = await _session(request)
    if session is None:
        return _to_login(request)
    ctx = _web(request).ctx
    columns = {e.value: [(f.name, f.required) for f in spec_for(e).fields] for e in EntityType}
    return _render(
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
    session = await _session(request)
    if session is None:
        return _to_login(request)
    ctx = _web(request).ctx
    recent = await anyio.to_thread.run_sync(_recent_exports, ctx, session.principal.org_id)
    return _render(
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
    session = await _session(request)
    if session is None:
        return _to_login(request)
    ctx = _web(request).ctx
    try:
        data = await anyio.to_thread.run_sync(
            _operation,
            ctx,
            session.principal.org_id,
            operation_id[:64],
            AuditQuery.from_params(request.query_params),
        )
    except NotFound:
        return _render(
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
    return _render(
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
