"""The ASGI layer between the server and a service's WSGI application.

It reads the whole request body on the event loop, within the service's body limit, before the
application is called: a slow or oversized body never holds an application thread, and an
oversized one is answered ``413`` (problem+json, connection closed) before any of it is kept.
It also makes sure an application failure is a bare ``500`` problem, logged by class name only.

The body it read travels to the WSGI side in the ASGI scope (:data:`BODY_KEY`), where
:class:`PrereadInput` hands it to the application as ``wsgi.input``: a2wsgi would otherwise
fetch it from the event loop thread in another cross-thread round trip.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from service_kit.http_protocol import PROBLEM_MEDIA_TYPE, problem_bytes

log = logging.getLogger("service_kit.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

#: Scope key under which :class:`BufferedBody` leaves the whole body.
BODY_KEY = "service_kit.body"


async def send_problem(send: Send, status: int, title: str, *, close: bool = False) -> None:
    body = problem_bytes(status, title)
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")


def _sendable(message: Message) -> bool:
    """Whether a response head is one HTTP/1.1 can carry as given: a status, and field names
    and values without CR, LF, NUL or other controls (uvicorn would refuse it mid-response)."""
    status = message.get("status")
    if not isinstance(status, int) or not 100 <= status <= 599:
        return False
    for name, value in message.get("headers", ()):
        if not (isinstance(name, bytes) and isinstance(value, bytes)
                and _TOKEN.fullmatch(name) and _FIELD_VALUE.fullmatch(value)):
            return False
    return True


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value)  # canonical digits: checked by request_rules before the app
    return None


class BufferedBody:
    """ASGI middleware: the body read whole (at most ``max_body`` bytes) before ``app`` runs."""

    def __init__(self, app: ASGIApp, *, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body:
            log.info("request refused status=413")
            await send_problem(send, 413, "Content Too Large", close=True)
            return
        parts: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                log.info("request refused status=413")
                await send_problem(send, 413, "Content Too Large", close=True)
                return
            parts.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        scope[BODY_KEY] = body
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started = False
        replaced = False

        async def tracked(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return  # the app's answer was replaced by a 500 problem
            if message["type"] == "http.response.start" and not _sendable(message):
                log.error("unsendable response head from the application")
                replaced = started = True
                await send_problem(send, 500, "Internal Server Error", close=True)
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, replay, tracked)
        except Exception as err:  # the app's own handlers answer their errors; this is the net
            log.error("unhandled error class=%s", type(err).__name__)
            if not started:
                await send_problem(send, 500, "Internal Server Error", close=True)


class PrereadInput:
    """WSGI middleware inside a2wsgi: ``wsgi.input`` is the body :class:`BufferedBody` read
    (a2wsgi puts the ASGI scope in the environ as ``asgi.scope``)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        scope = environ.get("asgi.scope")
        if isinstance(scope, MutableMapping) and BODY_KEY in scope:
            body = scope[BODY_KEY]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)
