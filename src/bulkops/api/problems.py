"""Errors as ``application/problem+json`` (RFC 9457): one shape for every failure.

:class:`~bulkops.errors.BulkopsError` subclasses carry their HTTP status and title; a
:class:`~bulkops.errors.FileRejected` lists its problems under ``errors``. Request validation
(FastAPI's 422) and Starlette's own HTTP errors (404 for an unknown path, 405) get the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bulkops.errors import BulkopsError, FileRejected, UsageError

__all__ = [
    "PROBLEM_JSON",
    "InvalidParameters",
    "install_problem_handlers",
    "problem_response",
    "problems_doc",
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


def problems_doc(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each a problem+json body."""
    return {
        status: {"description": text, "content": {PROBLEM_JSON: {}}}
        for status, text in descriptions.items()
    }


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


def _file_problems(exc: FileRejected) -> list[dict[str, Any]]:
    return [
        {
            "code": p.code,
            "message": p.message,
            "column": p.column,
            "line": p.line,
            "suggestion": p.suggestion,
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
    return problem_response(
        exc.http_status, str(exc), title=exc.title, errors=errors, headers=headers
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "code": "bad_parameter",
            "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query")),
            "message": str(e.get("msg", "invalid")),
        }
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "Invalid request."
    return problem_response(422, detail, title="Invalid parameters", errors=errors)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return problem_response(
        exc.status_code,
        str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "An unexpected error occurred; it has been logged.")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BulkopsError, _bulkops_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
