"""Raw-socket probes of HTTP/1.1 framing, and the services to aim them at.

Each probe is a request a lenient or confused HTTP/1.1 parser might serve, or serve differently
from a front proxy (request smuggling): the services must refuse every one with a 4xx, or close
the connection, and never serve it or answer 500.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import LiveServer

H = b"Host: probe\r\n"

PROBES: dict[str, bytes] = {
    "cl_te": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked"
             b"\r\n\r\n0\r\n\r\n",
    "te_cl": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 5"
             b"\r\n\r\n0\r\n\r\n",
    "duplicate_cl_same": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5"
                         b"\r\n\r\nhello",
    "duplicate_cl_different": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n"
                              b"Content-Length: 6\r\n\r\nhello!",
    "cl_list": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello",
    "cl_plus": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    "cl_hex": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello",
    "cl_leading_zeros": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 005\r\n\r\nhello",
    "cl_negative": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nhello",
    "obs_fold": b"GET /p HTTP/1.1\r\n" + H + b"X-A: a\r\n b\r\n\r\n",
    "bare_lf": b"GET /p HTTP/1.1\n" + b"Host: probe\n\n",
    "bare_lf_in_head": b"GET /p HTTP/1.1\r\nHost: probe\nX-A: b\r\n\r\n",
    "bare_cr": b"GET /p HTTP/1.1\r\nHost: probe\rX-A: b\r\n\r\n",
    "nul_in_value": b"GET /p HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "nul_in_name": b"GET /p HTTP/1.1\r\n" + H + b"X\x00A: b\r\n\r\n",
    "space_before_colon": b"GET /p HTTP/1.1\r\n" + H + b"X-A : b\r\n\r\n",
    "absolute_form": b"GET http://elsewhere.example/p HTTP/1.1\r\n" + H + b"\r\n",
    "authority_form": b"CONNECT elsewhere.example:443 HTTP/1.1\r\n" + H + b"\r\n",
    "long_request_line": b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n" + H + b"\r\n",
    "long_field": b"GET /p HTTP/1.1\r\n" + H + b"X-A: " + b"a" * 70_000 + b"\r\n\r\n",
    "many_fields": b"GET /p HTTP/1.1\r\n" + H
                   + b"".join(b"X-%d: a\r\n" % i for i in range(500)) + b"\r\n",
    "huge_head": b"GET /p HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000)
                                                       for i in range(40)) + b"\r\n",
    "invalid_chunk_size": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                          b"zz\r\nhello\r\n0\r\n\r\n",
    "invalid_chunk_extension": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked"
                               b"\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n",
    "chunk_line_bare_lf": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                          b"5\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
                           b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "te_other_coding": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                       b"0\r\n\r\n",
    "te_identity": b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n"
                   b"Content-Length: 5\r\n\r\nhello",
    "duplicate_host": b"GET /p HTTP/1.1\r\n" + H + b"Host: other\r\n\r\n",
    "no_host": b"GET /p HTTP/1.1\r\n\r\n",
    "http09": b"GET /p\r\n\r\n",
    "http_version_unknown": b"GET /p HTTP/1.7\r\n" + H + b"\r\n",
    "http2_preface_on_http1": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "bad_method": b"G(T /p HTTP/1.1\r\n" + H + b"\r\n",
    "space_in_target": b"GET /a b HTTP/1.1\r\n" + H + b"\r\n",
    "control_in_target": b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n",
    "body_over_limit": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 99999999999\r\n\r\nx",
    "pipelined_partial_body": b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello",
}


@dataclass
class Answer:
    """What came back: the raw bytes until the server closed (or went quiet)."""

    data: bytes
    closed: bool

    @property
    def statuses(self) -> list[int]:
        return [int(m) for m in re.findall(rb"(?:^|\n)HTTP/1\.[01] (\d{3}) ", self.data)]


def send_raw(port: int, data: bytes, *, half_close: bool = False,
             quiet: float = 2.0) -> Answer:
    """Send ``data`` on a fresh connection; read until the server closes or is quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=quiet) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server refused and closed while we were still sending
            pass
        out = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                return Answer(out, closed=False)
            except ConnectionResetError:
                return Answer(out, closed=True)
            if not piece:
                return Answer(out, closed=True)
            out += piece
        return Answer(out, closed=False)


@dataclass
class Service:
    name: str
    server: LiveServer
    #: A normal request (path) that must answer 2xx before and after the probes.
    healthy_path: str


ServiceStarter = Callable[[Callable[..., LiveServer], Path], Service]


def _issuer(live_server: Callable[..., LiveServer], tmp: Path, **kw: Any) -> LiveServer:
    from credentials.issuer_service import create_app
    return live_server(create_app, db=str(tmp / "issuer.db"), issuer_name="issuer.test", **kw)


def start_service(name: str, live_server: Callable[..., LiveServer], tmp: Path,
                  limits: dict[str, Any] | None = None) -> Service:
    """Start ``name`` (and what it needs) on the real server stack."""
    kw: dict[str, Any] = {"_limits": limits} if limits else {}
    if name == "issuer":
        from credentials import consts as ccons
        return Service(name, _issuer(live_server, tmp, **kw), ccons.DIRECTORY_PATH)
    if name == "sticker":
        from sticker_search.service import create_app as create_sticker
        issuer = _issuer(live_server, tmp)
        server = live_server(create_sticker, issuer_url=issuer.url,
                             spent_db=str(tmp / "spent.db"), **kw)
        return Service(name, server, "/v1/stickers/1f600")
    if name == "gateway":
        from ohttp_relay.gateway_service import create_app as create_gateway
        return Service(name, live_server(create_gateway, db=str(tmp / "gw.db"), targets=[],
                                         **kw), "/ohttp-keys")
    if name == "relay":
        from ohttp_relay.gateway_service import create_app as create_gateway
        from ohttp_relay.relay_service import create_app as create_relay
        gateway = live_server(create_gateway, db=str(tmp / "gw.db"), targets=[])
        return Service(name, live_server(create_relay, gateway_url=gateway.url + "/gateway",
                                         rate_limit=0, **kw), "/ohttp-keys")
    if name == "delivery":
        from e2ee_core.server.app import create_app as create_server
        return Service(name, live_server(create_server, db=str(tmp / "server.db"), **kw),
                       "/v1/health")
    raise ValueError(name)


SERVICES = ("issuer", "sticker", "gateway", "relay", "delivery")
