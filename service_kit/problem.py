"""RFC 9457 problem details for every service: bad input gets a typed 4xx, never a traceback."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from service_kit.errors import DatabaseError

PROBLEM_MEDIA_TYPE = "application/problem+json"

log = logging.getLogger(__name__)


def problem_json(status: int, title: str, *, type_: str = "about:blank",
                 detail: str | None = None, **extra: Any) -> str:
    """The RFC 9457 body: ``type``, ``title``, ``status`` (and ``detail``, extra members)."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return json.dumps(body)


def problem(
    status: int,
    title: str,
    *,
    type_: str = "about:blank",
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """Build an ``application/problem+json`` response. ``detail`` must never hold user data."""
    response = Response(problem_json(status, title, type_=type_, detail=detail, **extra),
                        status=status, mimetype=PROBLEM_MEDIA_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class ProblemError(Exception):
    """Raise from a view to answer with a problem response."""

    def __init__(
        self,
        status: int,
        title: str,
        *,
        type_: str = "about:blank",
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.type_ = type_
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> Response:
        return problem(
            self.status, self.title, type_=self.type_, detail=self.detail, headers=self.headers
        )


def install_problem_handlers(app: Flask) -> None:
    """Map every HTTP error and any unexpected exception to a problem response.

    Unexpected exceptions are logged by class name only (no message, no traceback: either could
    carry user data) and answered with a bare 500 problem.
    """

    @app.errorhandler(ProblemError)
    def _problem(err: ProblemError) -> Response:
        return err.response()

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException) -> Response:
        status = err.code or 500
        headers = {}
        if status == 405 and err.get_response().headers.get("Allow"):
            headers["Allow"] = err.get_response().headers["Allow"]
        return problem(status, err.name, headers=headers)

    @app.errorhandler(DatabaseError)
    def _store_unavailable(err: DatabaseError) -> Response:
        # The store is unreachable (PostgreSQL restarting, connection lost): a retriable 503,
        # never a 500; the next request reconnects.
        log.warning("store unavailable class=%s", type(err.__cause__ or err).__name__)
        return problem(503, "Service Unavailable", detail="store temporarily unavailable",
                       headers={"Retry-After": "1"})

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.error("unhandled error class=%s", type(err).__name__)
        return problem(500, "Internal Server Error")
