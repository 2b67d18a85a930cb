"""A lean keep-alive HTTP/1.1 client for the service hops (relay -> gateway, gateway -> target).

Measured against a no-op WSGI app under gunicorn, a ``POST`` through ``urllib3`` costs the
sending process about 0.2 ms of CPU (pool lookup, URL parsing, ``email``-based header parsing,
response wrapping); this client costs 0.03 ms. It keeps one connection per thread per origin,
writes the request in one ``sendall`` and parses only what a forwarder needs: status, fields, and
the content framed by ``Content-Length``, ``chunked`` or the end of the connection. Plain
``http`` only: TLS hops keep using ``urllib3`` (verification, SNI).

It adds no field of its own (no ``User-Agent``, no ``Accept-Encoding``) and follows no
redirects. The only retry is the keep-alive race described on :class:`HopClient`.
"""

from __future__ import annotations

import re
import select
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

#: Bytes of a status line or one field line, and of the whole response head.
MAX_LINE = 16 * 1024
MAX_HEAD = 64 * 1024
MAX_FIELDS = 256
#: Controls, spaces and non-ASCII in a method, target or field name; CR/LF/NUL in a value.
_UNSAFE = re.compile(r"[\x00-\x20\x7f-\uffff]")
_CRLF = re.compile(r"[\r\n\x00]")


class HopError(Exception):
    """The upstream could not be reached or answered something unusable."""


class HopUnreachable(HopError):
    """The connection could not be opened."""


class HopTimeout(HopError):
    """The upstream did not answer in time."""


class HopTooLarge(HopError):
    """The response content is larger than allowed."""


class _Dropped(HopError):
    """A reused connection closed before any byte of the response (internal)."""


@dataclass
class HopResponse:
    status: int
    headers: list[tuple[str, str]]
    content: bytes

    def header(self, name: str) -> str | None:
        """The first field called ``name`` (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection:
    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float) -> None:
        try:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        except TimeoutError:
            raise HopUnreachable("connect timed out") from None
        except OSError:
            raise HopUnreachable("connection refused") from None
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(read_timeout)
        self.rfile: BinaryIO = self.sock.makefile("rb")
        self.used = False

    def dropped(self) -> bool:
        """An idle keep-alive connection that is readable was closed (or misbehaves)."""
        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()


def _read_line(rfile: BinaryIO) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise HopError("response line too long")
    return line


def _read_exact(rfile: BinaryIO, size: int) -> bytes:
    data = rfile.read(size)
    if len(data) != size:
        raise HopError("response truncated")
    return data


def _read_chunked(rfile: BinaryIO, limit: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        line = _read_line(rfile)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise HopError("bad chunk size") from None
        if size < 0:
            raise HopError("bad chunk size")
        if size == 0:
            break
        total += size
        if total > limit:
            raise HopTooLarge("response too large")
        parts.append(_read_exact(rfile, size))
        if _read_line(rfile) not in (b"\r\n", b"\n"):
            raise HopError("bad chunk framing")
    head = 0
    while True:  # trailer section: read and drop (a forwarder keeps only the content)
        line = _read_line(rfile)
        if not line:
            raise HopError("response truncated")
        if line in (b"\r\n", b"\n"):
            return b"".join(parts)
        head += len(line)
        if head > MAX_HEAD:
            raise HopError("trailers too large")


def _read_response(conn: _Connection, method: str, limit: int) -> tuple[HopResponse, bool]:
    """One response and whether the connection must close afterwards."""
    rfile = conn.rfile
    try:
        first: bytes | None = _read_line(rfile)
    except ConnectionResetError:  # closed with our request unread: the keep-alive race
        if conn.used:
            raise _Dropped("reset before the response") from None
        raise
    while True:
        line = first if first is not None else _read_line(rfile)
        first = None
        if not line:
            raise _Dropped("closed before the response") if conn.used else HopError("no response")
        version, _, rest = line.partition(b" ")
        if not version.startswith(b"HTTP/1."):
            raise HopError("not an HTTP/1.x response")
        try:
            status = int(rest[:3])
        except ValueError:
            raise HopError("bad status line") from None
        headers: list[tuple[str, str]] = []
        size = 0
        length: bytes | None = None
        chunked = False
        close = version == b"HTTP/1.0"
        while True:
            line = _read_line(rfile)
            if not line:
                raise HopError("response truncated")
            if line in (b"\r\n", b"\n"):
                break
            size += len(line)
            if size > MAX_HEAD or len(headers) >= MAX_FIELDS:
                raise HopError("response head too large")
            name, colon, value = line.partition(b":")
            if not colon:
                raise HopError("bad field line")
            value = value.strip()
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = value
            elif lowered == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lowered == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                close = b"close" in tokens or (close and b"keep-alive" not in tokens)
            headers.append((name.strip().decode("latin-1"), value.decode("latin-1")))
        if 100 <= status < 200:
            continue  # informational: the final response follows
        break
    if method == "HEAD" or status in (204, 304):
        return HopResponse(status, headers, b""), close
    if chunked:
        return HopResponse(status, headers, _read_chunked(rfile, limit)), close
    if length is not None:
        try:
            count = int(length)
        except ValueError:
            raise HopError("bad Content-Length") from None
        if count < 0:
            raise HopError("bad Content-Length")
        if count > limit:
            raise HopTooLarge("response too large")
        return HopResponse(status, headers, _read_exact(rfile, count)), close
    content = rfile.read(limit + 1)  # delimited by the end of the connection
    if len(content) > limit:
        raise HopTooLarge("response too large")
    return HopResponse(status, headers, content), True


#: Methods a client may repeat automatically (RFC 9110 §9.2.2).
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


class HopClient:
    """Keep-alive ``http://`` requests, one connection per thread and ``(host, port)``.

    When a reused connection turns out closed after the request was written but before a byte
    of answer (the server's keep-alive timeout raced us), the request is sent again on a new
    connection only if repeating it is harmless: an idempotent method, or ``replay_safe`` (the
    relay's hop: the gateway's replay cache refuses a second copy of an Encapsulated Request).
    A write that fails on a reused connection is always retried: the server never had the whole
    request.
    """

    def __init__(self, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 replay_safe: bool = False) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.replay_safe = replay_safe
        self._local = threading.local()

    def _connections(self) -> dict[tuple[str, int], _Connection]:
        conns: dict[tuple[str, int], _Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def request(self, method: str, address: tuple[str, int], target: str, *,
                headers: Sequence[tuple[str, str]], body: bytes, limit: int) -> HopResponse:
        """Send ``method target`` to ``address`` (host, port) with exactly ``headers`` (plus
        ``Host`` and the framing field) and return the whole response; content over ``limit``
        bytes raises :class:`HopTooLarge`."""
        host, port = address
        if _UNSAFE.search(method) or _UNSAFE.search(target) or not target:
            raise HopError("invalid request line")
        authority = f"[{host}]" if ":" in host else host  # IPv6 literal (RFC 3986 §3.2.2)
        lines = [f"{method} {target} HTTP/1.1",
                 f"Host: {authority}" if port == 80 else f"Host: {authority}:{port}"]
        for name, value in headers:
            if _UNSAFE.search(name) or _CRLF.search(value):
                raise HopError("invalid field")
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        try:
            wire = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        except UnicodeEncodeError:
            raise HopError("field not representable in Latin-1") from None
        conns = self._connections()
        key = address
        for _attempt in (1, 2):
            conn = conns.pop(key, None)
            if conn is not None and conn.dropped():
                conn.close()
                conn = None
            if conn is None:
                conn = _Connection(host, port, self.connect_timeout, self.read_timeout)
            try:
                conn.sock.sendall(wire)
            except OSError:
                conn.close()
                if conn.used:
                    continue  # the idle connection was gone before we wrote
                raise HopError("connection failed") from None
            try:
                response, close = _read_response(conn, method, limit)
            except _Dropped:
                conn.close()
                if self.replay_safe or method in IDEMPOTENT:
                    continue  # the server closed an idle connection as we wrote
                raise HopError("connection closed before the response") from None
            except TimeoutError:
                conn.close()
                raise HopTimeout("upstream timed out") from None
            except OSError:
                conn.close()
                raise HopError("connection failed") from None
            except HopError:
                conn.close()
                raise
            if close:
                conn.close()
            else:
                conn.used = True
                conns[key] = conn
            return response
        raise HopError("connection failed")
