"""A gunicorn worker for keep-alive traffic: gthread, plus a handling thread that stays with its
connection for the next request.

Gunicorn's ``gthread`` worker hands every request on a kept-alive connection through its poll
loop: the loop thread wakes when the socket becomes readable, submits the connection to the
thread pool, a pool thread wakes to serve it, and when it is done a callback goes back to the
loop thread through a pipe to re-register the socket. Two thread wake-ups, a pipe write and
read, futures and epoll registrations per request cost more server CPU than a small request
itself: measured with a no-op WSGI app on loopback, 0.22 ms of server CPU per request against
0.10 ms with this worker (see docs/BENCHMARKS.md). Services that talk to each other over
long-lived keep-alive connections (the OHTTP relay to its gateway, the gateway to its target)
pay it on every hop.

:class:`KeepAliveWorker` keeps gthread's design and code paths (parsing, limits, HTTP/2,
graceful shutdown, the keep-alive timeout) and changes one thing: after answering a request
on a connection that stays open, the handling thread waits on that socket for the next request
and serves it itself, without going back through the poll loop. So that waiting threads never
starve other connections, a thread only waits when

* at least one other pool thread stays free (at most ``threads - 1`` threads wait at a time),
* no connection is queued for a pool thread, checked again every :data:`SLICE` seconds while
  waiting: a waiting thread gives its connection back to the poll loop as soon as work queues,
* the worker is not shutting down.

A thread waits at most :data:`LINGER` seconds; a connection idle for longer goes back to the
poll loop, which closes it after the keep-alive timeout as gthread would (so an idle connection
is closed after between ``keepalive`` and ``keepalive + LINGER`` seconds). With
``threads == 1`` the worker behaves exactly like gthread.
"""

from __future__ import annotations

import errno
import io
import os
import select
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes

from gunicorn.http import wsgi
from gunicorn.workers.gthread import _DEFER, DEFAULT_WORKER_DATA_TIMEOUT, ThreadWorker

from e2ee_core.infra import http1

#: How often a waiting thread checks for queued work and shutdown (seconds).
SLICE = 0.01
#: How long a thread waits on an idle connection (seconds) before handing it to the poll loop,
#: which keeps it for the keep-alive timeout: idle connections must not hold the waiting slots
#: that busy ones would use.
LINGER = 0.5


class KeepAliveWorker(ThreadWorker):  # type: ignore[misc]
    """gthread whose handling thread serves a kept-alive connection's next request itself."""

    def init_process(self) -> None:
        self._lock = threading.Lock()
        self._waiting = 0  # pool threads waiting on an idle connection
        self._queued = 0  # connections submitted to the pool and not yet picked up
        super().init_process()

    def enqueue_req(self, conn: Any) -> None:
        with self._lock:
            self._queued += 1
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        with self._lock:
            self._queued -= 1
        while True:
            result = self.serve_one(conn)
            if result is not True:
                return result
            if _buffered(conn):  # a pipelined request is already read: serve it now
                continue
            outcome = self._wait_for_next(conn)
            if outcome is None:  # gave the connection back to the poll loop
                return result
            if not outcome:  # idle for the whole keep-alive timeout
                return False

    def serve_one(self, conn: Any) -> Any:
        """Serve one request on ``conn`` (gthread's own handling): True to keep it alive."""
        return super().handle(conn)

    def _wait_for_next(self, conn: Any) -> bool | None:
        """Wait on ``conn`` for its next request: True when it arrived, False when the
        keep-alive timeout passed (when it is shorter than :data:`LINGER`), None when the
        connection must go back to the poll loop."""
        keepalive = float(self.cfg.keepalive)
        with self._lock:
            if (not self.alive or keepalive <= 0 or self._queued
                    or self._waiting >= self.cfg.threads - 1):
                return None
            self._waiting += 1
        try:
            # At the deadline: past the keep-alive timeout, close (False); past LINGER, hand the
            # connection to the poll loop (None), which keeps it for the keep-alive timeout.
            at_deadline: bool | None = False if keepalive <= LINGER else None
            deadline = time.monotonic() + min(keepalive, LINGER)
            poller = select.poll()  # no file descriptor of its own, unlike epoll
            poller.register(conn.sock, select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return at_deadline
                if poller.poll(min(SLICE, left) * 1000):
                    return True  # readable: a request, or the peer closed (handled as such)
                if not self.alive or self._queued:
                    return None
        except (OSError, ValueError):  # the socket went away: let gthread close it
            return None
        finally:
            with self._lock:
                self._waiting -= 1


def _buffered(conn: Any) -> bool:
    """Whether bytes of a next request are already read (parser buffer or TLS record)."""
    if conn.parser.unreader.buf.getvalue():
        return True
    return isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending() > 0


class LeanWorker(KeepAliveWorker):
    """:class:`KeepAliveWorker` that answers requests of one simple shape without gunicorn's
    per-request machinery, and hands every other request to gunicorn unchanged.

    Profiled on the OHTTP path (relay -> gateway -> target, each under gunicorn on two shared
    cores), gunicorn's request objects, header policy, environ and response writer cost about
    0.2 ms of CPU per request and process, more than the relay's own work; a hop with this
    worker costs about a third of that (see docs/BENCHMARKS.md). The connection life cycle
    stays gunicorn's: accepting, the poll loop and keep-alive timeout, the thread pool,
    heartbeats, graceful shutdown and ``max_requests``.

    A request takes the lean path when :func:`e2ee_core.infra.http1.parse_simple_head`
    recognises its head (HTTP/1.1, a common method, origin-form target, ``Content-Length`` or
    no content, no ``Transfer-Encoding``/``Expect``/``Upgrade``, no proxy fields, within
    gunicorn's limits). Otherwise the bytes read so far are given back to gunicorn's parser and
    gunicorn serves that request, and every later one on the connection, itself. The lean path
    is off altogether (the worker is then exactly :class:`KeepAliveWorker`) with TLS, HTTP/2,
    an access log, request hooks, a unix socket or a ``SCRIPT_NAME``.

    The environ is gunicorn's for the same request (the tests compare them), minus
    ``wsgi.early_hints``. Responses: the app's fields (hop-by-hop ones dropped, names and
    values checked), ``Server`` and ``Date``; content framed by the app's ``Content-Length``,
    the length of a one-piece body, or chunked. An unexpected exception is logged by class name
    and answered 500 with ``Connection: close`` (or the connection is closed when the head was
    already sent).
    """

    alive: bool  # gunicorn's: False once the worker is stopping

    def init_process(self) -> None:
        self._lean = _lean_possible(self.cfg)
        self._limits = http1.Limits(
            request_line=self.cfg.limit_request_line or 8190,
            fields=self.cfg.limit_request_fields or 32768,
            field_size=self.cfg.limit_request_field_size or 8190,
            proxy_fields=frozenset(
                [h.upper() for h in self.cfg.secure_scheme_headers]
                + [h.upper().replace("_", "-") for h in self.cfg.forwarder_headers]
                + ["FORWARDED", "X-FORWARDED-FOR", "X-FORWARDED-PROTO", "X-FORWARDED-HOST"]))
        base = wsgi.base_environ(self.cfg)
        base["wsgi.multithread"] = True
        self._base_environ = base
        super().init_process()

    def serve_one(self, conn: Any) -> Any:
        if not self._lean or getattr(conn, "lean_off", False):
            return super().serve_one(conn)
        try:
            if not conn.initialized:
                if not conn.data_ready and not conn.wait_for_data(DEFAULT_WORKER_DATA_TIMEOUT):
                    return _DEFER
                conn.init()
            # A connection back from the poll loop is non-blocking; the handling thread blocks.
            conn.sock.setblocking(True)
            if conn.is_http2:
                conn.lean_off = True
                return super().serve_one(conn)
            return self._serve_lean(conn)
        except OSError as err:  # the peer went away or reset: nothing to answer
            if err.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, None):
                self.log.info("lean worker: socket error class=%s", type(err).__name__)
            return False

    def _serve_lean(self, conn: Any) -> Any:
        unreader = conn.parser.unreader
        data = unreader.read()
        while True:
            if not data:
                return False  # closed between requests
            head = http1.parse_simple_head(data, self._limits)
            if not isinstance(head, http1.NeedMore):
                break
            more = unreader.read()
            if not more:
                return False
            data += more
        if head is None:  # not the simple shape: gunicorn parses and answers it
            unreader.unread(data)
            conn.lean_off = True
            return super().serve_one(conn)
        unreader.unread(data[head.size:])
        body = LeanInput(unreader, head.content_length)
        environ = self._environ(head, conn, body)
        self.nr += 1
        close = head.close or not self.alive or not self.cfg.keepalive
        if self.nr >= self.max_requests:
            if self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            close = True
        elif len(self.keepalived_conns) >= self.max_keepalived:
            close = True
        keep = self._respond(conn, head.method, environ, close)
        if keep and not body.drain_buffered():
            keep = False  # unread content still on the wire: close rather than wait for it
        return keep

    def _environ(self, head: http1.SimpleHead, conn: Any, body: LeanInput) -> dict[str, Any]:
        environ = dict(self._base_environ)
        environ.update({
            "wsgi.input": body,
            "gunicorn.socket": conn.sock,
            "REQUEST_METHOD": head.method,
            "QUERY_STRING": head.query,
            "RAW_URI": head.target,
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.url_scheme": "http",
            "REMOTE_ADDR": conn.client[0],
            "REMOTE_PORT": str(conn.client[1]),
            "SERVER_NAME": str(conn.server[0]),
            "SERVER_PORT": str(conn.server[1]),
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote_to_bytes(head.path).decode("latin-1"),
        })
        for name, value in head.fields:
            if name == "CONTENT-TYPE":
                environ["CONTENT_TYPE"] = value
            elif name == "CONTENT-LENGTH":
                environ["CONTENT_LENGTH"] = value
            else:
                key = "HTTP_" + name.replace("-", "_")
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _respond(self, conn: Any, method: str, environ: dict[str, Any], close: bool) -> bool:
        """Run the app and write its response: whether the connection stays open."""
        sock = conn.sock
        state: dict[str, Any] = {}
        sent: list[http1.ResponseHead] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> Callable[[bytes], None]:
            if exc_info is not None:
                try:
                    if sent:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif "status" in state:
                raise AssertionError("start_response called twice")
            state["status"], state["headers"] = status, headers
            return write

        def write(data: bytes) -> None:  # the legacy write() callable (PEP 3333)
            _send(data, None)

        def _send(data: bytes, known_length: int | None) -> None:
            if not sent:
                if "status" not in state:
                    raise AssertionError("content before start_response")
                sent.append(http1.response_head(state["status"], state["headers"],
                                                method=method, known_length=known_length,
                                                close=close))
                head = sent[0]
                state["left"] = None if head.bodiless else head.length
                sock.sendall(head.data + self._frame(head, state, data))
            elif data:
                sock.sendall(self._frame(sent[0], state, data))

        try:
            result = self.wsgi(environ, start_response)
            try:
                if isinstance(result, (list, tuple)) and len(result) <= 1:
                    whole = bytes(result[0]) if result else b""
                    _send(whole, len(whole))
                else:
                    for piece in result:
                        if piece:
                            _send(bytes(piece), None)
                    if not sent:
                        _send(b"", 0)
                head = sent[0]
                if head.chunked and not head.bodiless:
                    sock.sendall(b"0\r\n\r\n")
            finally:
                closer = getattr(result, "close", None)
                if closer is not None:
                    closer()
        except OSError:
            raise
        except Exception as err:
            self.log.error("Error handling request class=%s", type(err).__name__)
            if not sent:
                sock.sendall(_INTERNAL_ERROR)
            return False
        head = sent[0]
        left = state.get("left")
        if left:  # the app sent less than its Content-Length: the framing is broken
            return False
        return not head.close

    @staticmethod
    def _frame(head: http1.ResponseHead, state: dict[str, Any], data: bytes) -> bytes:
        if head.bodiless or not data:
            return b""
        if head.chunked:
            return b"%x\r\n%s\r\n" % (len(data), data)
        left = state.get("left")
        if left is not None:  # never more than the declared length (as gunicorn)
            data = data[:left]
            state["left"] = left - len(data)
        return data


class LeanInput(io.RawIOBase):
    """``wsgi.input`` of a request with ``length`` bytes of content, read from gunicorn's
    unreader on demand (never past the content: later bytes belong to the next request)."""

    def __init__(self, unreader: Any, length: int) -> None:
        super().__init__()
        self._unreader = unreader
        self.left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if size is None or size < 0 else min(size, self.left)
        data: bytes = self._unreader.read(want, read_ahead=self.left)
        self.left -= len(data)
        if len(data) < want:
            self.left = 0  # the peer closed mid-content
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        line = b""
        limit = self.left if size is None or size < 0 else min(size, self.left)
        while len(line) < limit:
            chunk = self.read(min(8192, limit - len(line)))
            if not chunk:
                break
            cut = chunk.find(b"\n")
            if cut >= 0:
                self._unreader.unread(chunk[cut + 1:])
                self.left += len(chunk) - cut - 1
                return line + chunk[:cut + 1]
            line += chunk
        return line

    def drain_buffered(self) -> bool:
        """Skip what is left of the content if it is already read: whether the next request
        can be read (False: unread content still on the wire)."""
        if self.left <= 0:
            return True
        held = self._unreader.take_buffered()
        if len(held) < self.left:
            self.left -= len(held)
            return False
        self._unreader.unread(held[self.left:])
        self.left = 0
        return True


_INTERNAL_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n"
                   b"Content-Length: 21\r\nConnection: close\r\n\r\nInternal Server Error")


def _lean_possible(cfg: Any) -> bool:
    """Whether the configuration allows the lean path (else every request is gunicorn's)."""
    from gunicorn import config as gconfig

    return bool(
        not cfg.is_ssl
        and not cfg.accesslog
        and cfg.pre_request is gconfig.PreRequest.default
        and cfg.post_request is gconfig.PostRequest.default
        and list(getattr(cfg, "http_protocols", None) or ["h1"]) == ["h1"]
        and getattr(cfg, "protocol", "http") == "http"
        and getattr(cfg, "proxy_protocol", "off") in ("off", False, None)
        and not os.environ.get("SCRIPT_NAME")
        and not any(isinstance(addr, str) for addr in cfg.address)
    )
