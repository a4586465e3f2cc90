"""What every dashboard page shares: the templates with their filters, the page state, and
rendering with the security headers, the session and the browser's time zone.

Times are rendered as ``<time datetime>`` with a readable text in the browser's time zone
(which the script keeps in the ``bulkops_tz`` cookie; UTC until it has); the script then
formats them in the browser's own locale.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio.to_thread
from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context as TemplateContext
from markupsafe import Markup

from bulkops import engine
from bulkops.entities import spec_for
from bulkops.formats import is_formula_like
from bulkops.model import STATUS_LABELS, EntityType, OperationStatus, OperationType, Outcome

from .sessions import Session, Sessions

__all__ = [
    "STATIC_DIR",
    "WebState",
    "build_templates",
    "current_session",
    "render",
    "to_login",
    "web_state",
    "zone_of",
]

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
ZONE_COOKIE = "bulkops_tz"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; "
    "base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


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


def zone_of(request: Request) -> tzinfo:
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


def _planned_counts(view: Mapping[str, Any]) -> list[tuple[str, int]]:
    """A check's (verb, count) pairs: those its type can make, any other not zero."""
    can = OperationType(view["operation_type"]).changes
    return [
        (verb, view[f"{done}_records"])
        for verb, done in (("create", "created"), ("update", "updated"), ("delete", "deleted"))
        if verb in can or view[f"{done}_records"]
    ]


def _changes_of(operation_type: str) -> tuple[str, ...]:
    """:attr:`OperationType.changes` for a template's operation."""
    return OperationType(operation_type).changes


def _rows_of(entity: str, count: int) -> str:
    """``product``, ``products``, ``inventory rows``: what ``count`` rows of ``entity`` are."""
    noun = spec_for(entity).row_noun
    return noun if count == 1 else f"{noun}s"


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
    if seconds < 0.05:
        return "under 0.1 s"  # not "0.0 s", which reads as no time at all
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
        planned_counts=_planned_counts,
        changes_of=_changes_of,
        rows_of=_rows_of,
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


def web_state(request: Request) -> WebState:
    state = request.app.state.web
    assert isinstance(state, WebState)
    return state


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: Session | None,
    status_code: int = 200,
) -> Response:
    response = web_state(request).templates.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "zone": zone_of(request),
            **context,
        },
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    return response


async def current_session(request: Request) -> Session | None:
    return await anyio.to_thread.run_sync(web_state(request).sessions.session, request)


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
