"""Helpers for the services' hot routes, served below Flask (see ``_FastRelay``,
``_FastGateway``): sampled event logging and a response body that leaves in one segment."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

_CORK = getattr(socket, "TCP_CORK", None)  # Linux only


class EventCounter:
    """Counts an event; logs its first occurrence and then every ``every``-th, with the count.

    Per-request log lines cost the hot path a record, the redaction filter and a write; the
    forwarding events are sampled, errors are still logged one by one.
    """

    def __init__(self, logger: logging.Logger, every: int = 1000) -> None:
        self.log = logger
        self.every = every
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def hit(self, event: str) -> None:
        with self._lock:
            count = self._counts.get(event, 0) + 1
            self._counts[event] = count
        if count == 1 or count % self.every == 0:
            self.log.info("%s count=%d", event, count)


class CorkedBody:
    """A one-piece WSGI body that makes gunicorn's two writes (head, then body) one segment.

    gunicorn sends the response head and the body with two ``sendall`` calls; on a kept-alive
    loopback hop each send costs a wake-up of the peer. ``TCP_CORK`` (set here, before gunicorn
    writes) holds both until ``close()``, which gunicorn calls after the last write, uncorks.
    Elsewhere than Linux, or without the socket, it is a plain body.
    """

    def __init__(self, environ: dict[str, Any], content: bytes) -> None:
        self.content = content
        self.sock = environ.get("gunicorn.socket") if _CORK is not None else None
        if self.sock is not None:
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
            except (OSError, AttributeError, TypeError):
                self.sock = None

    def __iter__(self) -> Iterator[bytes]:
        yield self.content

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)
            except (OSError, AttributeError, TypeError):
                pass
            self.sock = None
