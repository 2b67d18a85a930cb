"""The common shape of an HTTP/1.1 request, recognised strictly; everything else is gunicorn's.

:class:`e2ee_core.infra.worker.LeanWorker` answers requests of one narrow, unambiguous shape
itself and hands every other request, byte for byte, to gunicorn's own parser and request
handling. This module is the sans-I/O half of that split: :func:`parse_simple_head` either
recognises a request head of the simple shape or says it is not one (``None``), and
:func:`response_head` formats the status line and fields of an answer.

The simple shape (RFC 9112), chosen so that no two readings of the message are possible:

* request line ``METHOD SP origin-form SP HTTP/1.1`` with a common method, a target of visible
  ASCII starting with ``/`` and no fragment;
* field lines ``token ":" OWS value OWS`` whose names hold no ``_`` (gunicorn refuses or drops
  such names, so they go to it) and whose values are visible characters, spaces and tabs: no
  obsolete line folding, no CR, LF or NUL anywhere;
* message framing by at most one ``Content-Length`` of plain digits, or none (no content); no
  ``Transfer-Encoding``, ``Expect``, ``Upgrade`` or ``HTTP2-Settings``; at most one ``Host``
  and one ``Content-Type``;
* none of the proxy fields gunicorn may trust from a configured forwarder (its secure-scheme
  and forwarder headers), so the URL scheme and addresses never depend on request fields;
* within gunicorn's configured limits (request line, field count, field size).

Anything else is not an error here: gunicorn parses it with its complete rules and answers
it, or refuses it, exactly as it would without this fast path.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formatdate

#: Methods of the simple shape; any other goes to gunicorn (its rules for extension methods).
SIMPLE_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: Request line: method, origin-form target (visible ASCII, no ``#``), HTTP/1.1 only.
_REQUEST_LINE = re.compile(rb"([A-Z]{3,7}) (/[\x21\x22\x24-\x7e]*) HTTP/1\.1")
#: The field lines, each ending in CRLF: a token name without ``_``, ``:``, then a value of
#: visible characters and obs-text with spaces and tabs (no CR, LF, NUL or other controls).
_FIELD_LINES = re.compile(rb"(?:[!#$%&'*+.^`|~0-9A-Za-z-]+:[ \t\x21-\x7e\x80-\xff]*\r\n)*")
#: Fields that change how a message is framed or handled: such requests go to gunicorn.
_NOT_SIMPLE = frozenset({"TRANSFER-ENCODING", "EXPECT", "UPGRADE", "HTTP2-SETTINGS"})
#: Fields that may appear at most once in the simple shape.
_SINGLETONS = frozenset({"CONTENT-LENGTH", "HOST", "CONTENT-TYPE"})
#: A response field name (RFC 9110 token) and value as gunicorn accepts them from an app.
_TOKEN = re.compile(r"[!#$%&'*+.^`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[ \t\x21-\x7e\x80-\xff]*")
#: A WSGI status: three digits (100-999), then a space and a reason phrase without controls.
_STATUS = re.compile(r"[1-9][0-9]{2}(?: [ \t\x21-\x7e\x80-\xff]*)?")
#: Hop-by-hop fields an application may not set (PEP 3333); the server frames the message.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "trailers",
                        "transfer-encoding", "upgrade", "server", "date"})
#: Status codes whose responses carry no content (RFC 9110 §6.4.1).
_NO_CONTENT = frozenset({204, 304})


class NeedMore:
    """Marker: the head is not complete yet (read more bytes and ask again)."""


NEED_MORE = NeedMore()


@dataclass(frozen=True)
class Limits:
    """gunicorn's ``limit_request_line``, ``limit_request_fields``, ``limit_request_field_size``
    (0 means its own maximum, as gunicorn reads them) and the names of the proxy fields it may
    trust (``secure_scheme_headers`` and ``forwarder_headers``), upper-case."""

    request_line: int = 4094
    fields: int = 100
    field_size: int = 8190
    proxy_fields: frozenset[str] = frozenset()

    @property
    def max_head(self) -> int:
        """Bytes after which an incomplete head cannot be of the simple shape."""
        return self.request_line + 2 + self.fields * (self.field_size + 2) + 2


@dataclass(frozen=True, slots=True)
class SimpleHead:
    """A recognised request head. ``fields`` keep their order, names upper-case as gunicorn
    gives them; ``size`` is the byte length of the head including its final empty line."""

    method: str
    target: str
    path: str
    query: str
    fields: tuple[tuple[str, str], ...]
    content_length: int
    close: bool
    size: int


def parse_simple_head(data: bytes, limits: Limits) -> SimpleHead | NeedMore | None:
    """Recognise the head at the start of ``data``: a :class:`SimpleHead`, :data:`NEED_MORE`
    when it may still become one, or ``None`` when it is not of the simple shape."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > limits.max_head or b"\n" in data.replace(b"\r\n", b""):
            return None
        return NEED_MORE
    line_end = data.find(b"\r\n")
    if line_end > limits.request_line:
        return None
    match = _REQUEST_LINE.fullmatch(data, 0, line_end)
    if match is None:
        return None
    method = match.group(1).decode("ascii")
    if method not in SIMPLE_METHODS:
        return None
    target = match.group(2).decode("ascii")
    if _FIELD_LINES.fullmatch(data, line_end + 2, end + 2) is None:
        return None
    lines = data[line_end + 2:end].decode("latin-1").split("\r\n") if end > line_end else []
    if len(lines) > limits.fields:
        return None
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    length = 0
    close = False
    for line in lines:
        if len(line) > limits.field_size:
            return None
        raw_name, _, raw_value = line.partition(":")
        name = raw_name.upper()
        value = raw_value.strip(" \t")
        if name in _NOT_SIMPLE or name in limits.proxy_fields:
            return None
        if name in _SINGLETONS:
            if name in seen:
                return None
            seen.add(name)
            if name == "CONTENT-LENGTH":
                if not value.isdigit() or not value.isascii() or len(value) > 18:
                    return None
                length = int(value)
        elif name == "CONNECTION":
            close = close or "close" in (t.strip().lower() for t in value.split(","))
        fields.append((name, value))
    path, _, query = target.partition("?")
    return SimpleHead(method, target, path, query, tuple(fields), length, close, end + 4)


class _DateCache:
    """The formatted current second, shared by the threads of a worker (a tuple is swapped
    atomically, so a reader sees one consistent pair)."""

    entry: tuple[int | None, str] = (None, "")


def http_date(now: float | None = None) -> str:
    """The IMF-fixdate of the second holding ``now`` (default: the current time), formatted
    once a second."""
    second = math.floor(time.time() if now is None else now)
    cached = _DateCache.entry
    if cached[0] == second:
        return cached[1]
    text = formatdate(second, usegmt=True)
    _DateCache.entry = (second, text)
    return text


class ResponseHeadError(Exception):
    """The application gave a status line or field the server must not send."""


@dataclass(frozen=True)
class ResponseHead:
    """What the server sends before the content, and how the content is framed."""

    data: bytes
    status: int
    #: Declared or computed length; ``None`` with ``chunked`` (or close-delimited) content.
    length: int | None
    chunked: bool
    close: bool
    #: No content may follow (HEAD, 1xx, 204, 304).
    bodiless: bool


def response_head(status: str, headers: Iterable[tuple[str, str]], *, method: str,
                  known_length: int | None, close: bool,
                  server: str = "gunicorn") -> ResponseHead:
    """Format the head of a response to an HTTP/1.1 request.

    ``headers`` come from the application: names must be tokens and values free of CR, LF and
    other controls (else :class:`ResponseHeadError`, naming nothing of the value); hop-by-hop
    fields are dropped (a ``Connection: close`` from the app closes the connection). Without a
    ``Content-Length`` the content is sent with ``known_length`` when the server knows it, else
    chunked. ``close`` adds ``Connection: close``.
    """
    if not isinstance(status, str) or not _STATUS.fullmatch(status):
        raise ResponseHeadError("malformed status line")
    code = int(status[:3])
    lines = [f"HTTP/1.1 {status}", f"Server: {server}", f"Date: {http_date()}"]
    length: int | None = None
    for name, raw_value in headers:
        if not isinstance(name, str) or not _TOKEN.fullmatch(name):
            raise ResponseHeadError("invalid response field name")
        if not isinstance(raw_value, str) or not _VALUE.fullmatch(raw_value):
            raise ResponseHeadError("invalid response field value")
        value = raw_value.strip(" \t")
        lname = name.lower()
        if lname == "content-length":
            if not value.isdigit() or not value.isascii() or length is not None:
                raise ResponseHeadError("invalid Content-Length")
            length = int(value)
            continue
        if lname in HOP_BY_HOP:
            if lname == "connection" and "close" in value.lower():
                close = True
            continue
        lines.append(f"{name}: {value}")
    bodiless = method == "HEAD" or code < 200 or code in _NO_CONTENT
    chunked = False
    if code < 200 or code in _NO_CONTENT:
        length = None  # no framing fields at all (RFC 9110 §8.6, RFC 9112 §6.1)
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    elif known_length is not None:
        length = known_length
        lines.append(f"Content-Length: {length}")
    elif method != "HEAD":
        chunked = True
        lines.append("Transfer-Encoding: chunked")
    if close:
        lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return ResponseHead(data, code, length, chunked, close, bodiless)
