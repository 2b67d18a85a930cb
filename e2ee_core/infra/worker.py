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

import select
import ssl
import threading
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

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
            result = super().handle(conn)
            if result is not True:
                return result
            if _buffered(conn):  # a pipelined request is already read: serve it now
                continue
            outcome = self._wait_for_next(conn)
            if outcome is None:  # gave the connection back to the poll loop
                return result
            if not outcome:  # idle for the whole keep-alive timeout
                return False

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
