"""uvicorn's httptools (llhttp) protocol with the limits and timeouts our services need.

llhttp parses every byte of HTTP/1.1 framing; this subclass parses nothing. It adds, through the
parser callbacks uvicorn already uses:

* a **head-read timeout** (:data:`~service_kit.consts.HEADER_READ_TIMEOUT`): from the
  connection's first moment, or the next request's first byte, to the end of the head. uvicorn
  has none: a connection that sends nothing, or half a head, would stay open for ever;
* a **body-read timeout** (:data:`~service_kit.consts.BODY_READ_TIMEOUT`) from the end of the head
  to the end of the body;
* **size limits** on the request target (414), each field line, the number of fields and the
  whole head (431). httptools buffers a field until it is complete, so the bytes received while
  a head is incomplete are counted as they arrive: nothing grows past the head limit plus one
  read;
* the rules of :mod:`service_kit.request_rules` on the parsed head;
* ``application/problem+json`` for the answers the server gives itself (uvicorn's are
  ``text/plain``), always followed by closing the connection.

Everything else (keep-alive, pipelining, flow control, graceful shutdown) is uvicorn's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from service_kit import consts
from service_kit.errors import RefusedRequest
from service_kit.problem import problem_json
from service_kit.request_rules import check_head

log = logging.getLogger("service_kit.http")

PROBLEM_MEDIA_TYPE = b"application/problem+json"


@dataclass(frozen=True)
class HeadLimits:
    """Per-server limits on reading a request (see :mod:`service_kit.consts` for the reasons)."""

    header_timeout: float = consts.HEADER_READ_TIMEOUT
    body_timeout: float = consts.BODY_READ_TIMEOUT
    max_target: int = consts.MAX_REQUEST_TARGET
    max_field: int = consts.MAX_FIELD_SIZE
    max_fields: int = consts.MAX_FIELDS
    max_head: int = consts.MAX_HEAD


def problem_bytes(status: int, title: str) -> bytes:
    """The RFC 9457 body the server sends for its own refusals (no request data in it)."""
    return problem_json(status, title).encode()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head/body timeouts, head limits and problem answers."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *,
                 limits: HeadLimits = HeadLimits()) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._refusal: RefusedRequest | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0  # bytes received since the current head began
        self._parsed = 0  # bytes of target and fields the parser reported for this head
        self._fields = 0

    # -- connection life cycle -------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head:
                self._send_refusal(RefusedRequest(431, "Request Header Fields Too Large"))

    # -- parser callbacks --------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._parsed = 0
        self._fields = 0
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > self.limits.max_target:
            self._refuse(RefusedRequest(414, "URI Too Long"))
        self._parsed += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # A whole head can arrive in one read and be parsed in one go: its size is counted
        # here too, not only as bytes arrive (which bounds a head that never completes).
        self._fields += 1
        self._parsed += len(name) + len(value) + 4
        if (len(name) + len(value) + 2 > self.limits.max_field
                or self._fields > self.limits.max_fields or self._parsed > self.limits.max_head):
            self._refuse(RefusedRequest(431, "Request Header Fields Too Large"))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        method = self.parser.get_method().decode("ascii", "replace")
        try:
            check_head(method, self.url, self.parser.get_http_version(), self.headers)
        except RefusedRequest as refusal:
            self._refuse(refusal)
        super().on_headers_complete()
        if self._expects_body():
            self._body_timer = self.loop.call_later(self.limits.body_timeout,
                                                    self._body_timed_out)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    # -- refusals ----------------------------------------------------------------------------
    def _refuse(self, refusal: RefusedRequest) -> None:
        """From a parser callback: llhttp stops, uvicorn calls :meth:`send_400_response`."""
        self._refusal = refusal
        raise refusal

    def send_400_response(self, msg: str) -> None:
        refusal = self._refusal or RefusedRequest(400, "Bad Request")
        self._refusal = None
        self._send_refusal(refusal)

    def _send_refusal(self, refusal: RefusedRequest) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self._cancel_body_timer()
        if self.transport.is_closing():
            return
        log.info("request refused status=%d", refusal.status)
        body = problem_bytes(refusal.status, refusal.title)
        content = [STATUS_LINE[refusal.status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: ", PROBLEM_MEDIA_TYPE, b"\r\n",
                        b"content-length: ", str(len(body)).encode(), b"\r\n",
                        b"connection: close\r\n\r\n", body])
        self.transport.write(b"".join(content))
        self._abandon_cycle()
        self.transport.close()

    def _abandon_cycle(self) -> None:
        """The application (if it started) sees a disconnect and its answer is dropped."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()

    # -- timers ------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout,
                                                self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; the next head's timer starts with its byte
        if self._in_head:
            self._send_refusal(RefusedRequest(408, "Request Timeout"))
        else:
            log.info("connection closed event=idle_before_request")
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started:
            self._send_refusal(RefusedRequest(408, "Request Timeout"))
        else:
            self._abandon_cycle()
            self.transport.close()

    def _expects_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return True
        return False
