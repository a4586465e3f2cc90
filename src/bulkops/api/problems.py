"""Errors as ``application/problem+json`` (RFC 9457): one shape for every failure.

:class:`~bulkops.errors.BulkopsError` subclasses carry their HTTP status and title; a
:class:`~bulkops.errors.FileRejected` lists its problems under ``errors``. Request validation
(FastAPI's 422) and Starlette's own HTTP errors (404 for an unknown path, 405) get the same shape.

The OpenAPI document describes these answers with one schema, :class:`Problem`; each route's
``responses=`` comes from :func:`problem_responses`, so every error a route can give is listed
with that schema under ``application/problem+json``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from bulkops.errors import BulkopsError, FileProblem, FileRejected, UsageError

__all__ = [
    "PROBLEM_JSON",
    "InvalidParameters",
    "Problem",
    "document_problems",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
]

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("bulkops.api")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "File too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(BaseModel):
    """An error answer (RFC 9457), the body of every 4xx and 5xx of the API."""

    type: str = Field(description="Always `about:blank`: the status and title say what it is.")
    title: str = Field(description="The kind of error, the same for every answer of a status.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, in words.")
    errors: list[dict[str, Any]] | None = Field(
        default=None,
        description="Each problem of a field, a parameter or the file (`field` or `column`, "
        "`message`, and for a file `code`, `line`, `suggestion`, `what` (the message without "
        "its remedy), and `hint_field` and `hint_value` when an option settles it (e.g. "
        "`encoding` and `windows-1252`; `mapping`, `delimiter`)); absent when there is none.",
    )


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

_MEANINGS = {
    400: "A body that cannot be read, or a value the service refuses",
    401: "No or a bad token",
    403: "Your role may not do this (or a session without its CSRF token)",
    404: "Not found in your organization",
    409: "Not possible in the resource's present state",
    413: "The file is over the size limit",
    415: "Not a file the service reads (binary, PDF, image, not multipart)",
    422: "Invalid parameters or body (every problem listed under `errors`)",
    429: "Too many requests; see Retry-After",
}


def problem_responses(*statuses: int, **meanings: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each of ``statuses`` as a :class:`Problem`.

    ``meanings`` words a status for this route (``s409="The operation has ended"``); the others
    keep their general description.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        documented[status] = {
            "description": meanings.get(f"s{status}", _MEANINGS[status]),
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
        }
    return documented


def _drop_fastapi_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI adds a JSON 422 to every route with a parameter; this API never answers it
    (the handler below answers problem+json), and a route that can give a 422 lists it."""
    for path in document.get("paths", {}).values():
        for operation in path.values():
            answer = operation.get("responses", {}).get("422", {})
            if "application/json" in answer.get("content", {}):
                del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def document_problems(app: FastAPI) -> None:
    """Adds :class:`Problem` to the components of ``app``'s OpenAPI document (the routes
    refer to it by ``$ref``; FastAPI only collects models that describe JSON answers)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _drop_fastapi_validation_errors(document)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


class InvalidParameters(UsageError):
    """Parameters of a request that cannot be used; ``errors`` names each one."""

    http_status = 422
    title = "Invalid parameters"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _worded(problem: FileProblem) -> str:
    """The message with the API's name for the option that settles it (``delimiter``,
    ``encoding``, ``mapping``)."""
    field = problem.hint_field
    if field is None:
        return problem.message
    if field == "mapping":
        column = json.dumps(problem.column or "NAME", ensure_ascii=False)
        if problem.code == "duplicate_column":
            return f"{problem.message} Or ignore one in the `mapping` field: {{{column}: \"\"}}."
        if problem.suggestion:
            target = json.dumps(problem.suggestion, ensure_ascii=False)
            return (
                f"{problem.message} Rename it, or map it in the `mapping` field: "
                f"{{{column}: {target}}}."
            )
        return (
            f"{problem.message} Rename it, map it in the `mapping` field "
            f"({{{column}: \"FIELD\"}}), or ignore it there ({{{column}: \"\"}})."
        )
    if problem.hint_value is not None:
        return (
            f"{problem.message} Give it in the `{field}` field (`{field}={problem.hint_value}`)."
        )
    return f"{problem.message} Give it in the `{field}` field."


def _file_problems(exc: FileRejected) -> list[dict[str, Any]]:
    return [
        {
            "code": p.code,
            "message": _worded(p),
            # What is wrong and where, without the API's remedy, and the option that settles
            # it: the dashboard words its own remedy from these.
            "what": p.message,
            "hint_field": p.hint_field,
            "column": p.column,
            "line": p.line,
            "suggestion": p.suggestion,
            "hint_value": p.hint_value,
        }
        for p in exc.problems
    ]


async def _bulkops_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BulkopsError)
    errors: list[dict[str, Any]] | None = None
    if isinstance(exc, FileRejected):
        errors = _file_problems(exc)
    elif isinstance(exc, InvalidParameters):
        errors = exc.errors
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    if exc.http_status >= 500:
        log.error("request failed", extra={"error": str(exc), "status": exc.http_status})
    detail = str(exc)
    if isinstance(exc, FileRejected):
        # Each problem is a sentence or more: one after the other, not "….; …".
        detail = " ".join(_sentence(_worded(p)) for p in exc.problems)
    return problem_response(
        exc.http_status, detail, title=exc.title, errors=errors, headers=headers
    )


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _field_of(loc: Sequence[Any]) -> str:
    """The parameter's name as sent: ``status``, not ``status.1`` (the second value of a
    repeated query parameter); a body's nested fields stay dotted."""
    parts = [p for p in loc if p not in ("body", "query")]
    if loc[:1] == ("query",):
        parts = [p for p in parts if not isinstance(p, int)]
    return ".".join(str(p) for p in parts)


def _said(error: Mapping[str, Any]) -> str:
    """The validator's message, after the value given where it is a short text."""
    message = str(error.get("msg", "invalid"))
    given = error.get("input")
    if isinstance(given, str) and 0 < len(given) <= 40 and error.get("type") != "missing":
        return f"{given!r} is not valid: {message}"
    return message


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"code": "bad_parameter", "field": _field_of(e.get("loc", ())), "message": _said(e)}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "Invalid request."
    return problem_response(422, detail, title="Invalid parameters", errors=errors)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the path answers: a path served by several routes (GET and
    POST ``/api/v1/operations``) names them all, not only those of the first route found.
    Each method is tried against the routes' own matching (routers nest in FastAPI)."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in routes
        )
    ]
    return ", ".join(allowed)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
    return problem_response(exc.status_code, str(exc.detail), headers=headers or None)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "An unexpected error occurred; it has been logged.")


def install_problem_handlers(app: FastAPI) -> None:
    document_problems(app)
    app.add_exception_handler(BulkopsError, _bulkops_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
