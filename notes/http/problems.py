"""RFC 9457 problem details: every error the HTTP API answers is ``application/problem+json``."""

from __future__ import annotations

import logging
from http import HTTPStatus

from sanic import Request
from sanic.exceptions import MethodNotAllowed, SanicException
from sanic.response import HTTPResponse, json

from notes.collab.hub import HubClosed
from notes.store.database import database_unavailable
from notes.use_cases import NotYetStored

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "https://notes.invalid/problems/"


class Problem(SanicException):
    """An error with a problem type, a human detail and optional field errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[dict] | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(detail, status_code=status, headers=headers)
        self.detail = detail
        self.kind = kind
        self.errors = errors
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    errors: list[dict] | None = None,
    extra: dict | None = None,
    headers: dict | None = None,
) -> HTTPResponse:
    title = HTTPStatus(status).phrase
    body = {
        "type": PROBLEM_TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
        **(extra or {}),
    }
    if errors is not None:
        body["errors"] = errors
    return json(body, status=status, headers=headers, content_type="application/problem+json")


def handle_exception(request: Request, exception: Exception) -> HTTPResponse:
    """Sanic's error handler: known errors keep their status; anything else is a bare 500."""
    if isinstance(exception, Problem):
        return problem_response(
            exception.status_code,
            exception.detail,
            kind=exception.kind,
            errors=exception.errors,
            extra=exception.extra,
            headers=exception.headers,
        )
    if isinstance(exception, MethodNotAllowed):
        allowed = ", ".join(sorted(exception.allowed_methods or ()))
        return problem_response(405, str(exception), headers={"Allow": allowed})
    if isinstance(exception, SanicException) and exception.status_code < 500:
        status = exception.status_code
        detail = str(exception) or HTTPStatus(status).description
        return problem_response(status, _public_detail(status, detail), headers=exception.headers)
    if isinstance(exception, HubClosed):
        return problem_response(503, "The server is shutting down; try again soon.",
                                kind="shutting-down", headers={"Retry-After": "2"})
    if isinstance(exception, NotYetStored):
        log.warning("database too slow to store %s %s", request.method, request.path)
        return problem_response(
            503, "The change is in the live note, but the database has not stored it yet; it "
            "will be stored once the database answers.", kind="not-yet-stored",
            headers={"Retry-After": "5"})
    if database_unavailable(exception):
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    type(exception).__name__)
        return problem_response(503, "The database does not answer; try again soon.",
                                kind="database-unavailable", headers={"Retry-After": "5"})
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    status = exception.status_code if isinstance(exception, SanicException) else 500
    return problem_response(status, "The server failed to handle this request.")


def _public_detail(status: int, detail: str) -> str:
    if status == 404:
        return "No such resource."
    if status == 413:
        return "The request body is too large."
    return detail
