"""Forwarding an inner request to its target: over HTTP (:mod:`ohttp_relay.upstream`) or to an
in-process WSGI app.

Both clients send exactly the inner request's fields (minus hop-by-hop ones) and add nothing
that identifies the client: no default User-Agent, no environment proxies, no redirects.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ohttp_relay import consts
from ohttp_relay.errors import (
    TargetError,
    TargetTimeout,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTooLarge,
)
from ohttp_relay.upstream import UpstreamClient


@dataclass
class TargetResponse:
    """A target's response: status, fields, and the content as an iterator of chunks."""

    status: int
    headers: list[tuple[str, str]]
    body: Iterator[bytes]
    close: Callable[[], None] = field(default=lambda: None)

    def read_all(self, limit: int) -> bytes:
        """The whole content; more than ``limit`` bytes raises :class:`TargetError`."""
        parts: list[bytes] = []
        total = 0
        try:
            for piece in self.body:
                total += len(piece)
                if total > limit:
                    raise TargetError("target response too large")
                parts.append(piece)
            return b"".join(parts)
        finally:
            self.close()


class TargetClient(Protocol):
    def send(self, method: str, url: str, headers: list[tuple[str, str]],
             body: bytes, *, stream: bool = True) -> TargetResponse: ...


class HTTPTarget:
    """Forwards over HTTP with the hop client (:mod:`ohttp_relay.upstream`): a pool of kept-alive
    connections, timeouts, no redirects or retries of non-idempotent requests, no added fields."""

    def __init__(self, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 chunk_size: int = consts.HOP_CHUNK_BYTES) -> None:
        self.client = UpstreamClient(connect_timeout=connect_timeout, read_timeout=read_timeout,
                                     chunk_size=chunk_size)

    def send(self, method: str, url: str, headers: list[tuple[str, str]],
             body: bytes, *, stream: bool = True) -> TargetResponse:
        """Forward one request; the content streams as the target sends it."""
        try:
            resp = self.client.request(method, url, headers=headers, body=body,
                                       limit=consts.MAX_CONTENT_BYTES)
        except UpstreamTimeout:
            raise TargetTimeout("target timed out") from None
        except UpstreamTooLarge:
            return TargetResponse(502, [], _FailingBody())
        except UpstreamError:
            raise TargetError("target unreachable") from None

        def chunks() -> Iterator[bytes]:
            try:
                yield from resp.chunks()
            except UpstreamTimeout:
                raise TargetTimeout("target timed out") from None
            except UpstreamError:
                raise TargetError("target stream failed") from None

        return TargetResponse(resp.status, resp.headers, chunks(), resp.close)


class _FailingBody:
    """The body of a too-large response: reading it fails as a broken stream does."""

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        raise TargetError("target response too large")


class WSGITarget:
    """Calls a WSGI application in process (for a target living in the gateway's process)."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def send(self, method: str, url: str, headers: list[tuple[str, str]],
             body: bytes, *, stream: bool = True) -> TargetResponse:
        environ = wsgi_environ(method, url, headers, body)
        captured: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], object]:
            captured["status"] = int(status.split(" ", 1)[0])
            captured["headers"] = list(response_headers)
            return lambda _data: None

        try:
            iterable = self.app(environ, start_response)
            try:
                content = b"".join(iterable)
            finally:
                close = getattr(iterable, "close", None)
                if close is not None:
                    close()
        except Exception:
            raise TargetError("in-process target failed") from None
        if "status" not in captured:
            raise TargetError("in-process target gave no status")
        return TargetResponse(captured["status"], captured["headers"], iter([content]))


def wsgi_environ(method: str, url: str, headers: list[tuple[str, str]],
                 body: bytes) -> dict[str, Any]:
    """The PEP 3333 environ of one request to an in-process app: ``PATH_INFO`` percent-decoded
    as the server stack does it (UTF-8, then Latin-1 for WSGI), fields as ``HTTP_*`` (repeats
    joined with ``,``), an empty ``REMOTE_ADDR`` (the gateway knows no client address to give).
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        # As the services' stack decodes it (uvicorn percent-decodes as UTF-8, invalid bytes
        # replaced; a2wsgi gives the result to WSGI as Latin-1), so an in-process target sees
        # what the same app served over HTTP would.
        "PATH_INFO": unquote(parts.path or "/").encode("utf-8").decode("latin-1"),
        "QUERY_STRING": parts.query,
        "SERVER_NAME": parts.hostname or "",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "RAW_URI": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        "REMOTE_ADDR": "",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_HOST": parts.netloc,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": parts.scheme or "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if key == "CONTENT_TYPE" and key not in environ:
                environ[key] = value  # a singleton field: the first one counts
            continue
        key = "HTTP_" + key
        if key == "HTTP_HOST":
            continue  # the request target's authority is the Host
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


class RoutingTarget:
    """Sends to an in-process app when its origin has one, else over HTTP."""

    def __init__(self, http: HTTPTarget, apps: Mapping[str, WSGITarget]) -> None:
        self.http = http
        self.apps = dict(apps)

    def for_origin(self, origin: str) -> TargetClient:
        return self.apps.get(origin, self.http)
