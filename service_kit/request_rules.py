"""What the server refuses in a parsed request head, before any application sees it.

The HTTP/1.1 framing itself is parsed by llhttp (through ``httptools``, under uvicorn), which is
strict by default: it refuses bare LF or CR line endings, obs-fold, NUL and other controls,
``Content-Length`` together with ``Transfer-Encoding``, duplicate or non-numeric
``Content-Length`` and malformed chunked bodies, each with a 400 and a closed connection. This
module parses nothing: it judges the fields llhttp has already split, for the few things llhttp
accepts and our services must not (RFC 9112 and RFC 9110 references on each rule):

* an HTTP version other than 1.0 and 1.1 (HTTP/0.9 has no head to judge): 505;
* a request target that is not origin-form (absolute-form and authority-form are for proxies,
  which these services are not, RFC 9112 §3.2), or ``*`` outside ``OPTIONS``: 400;
* not exactly one ``Host`` in HTTP/1.1 (RFC 9112 §3.2: a server MUST answer 400): 400;
* a ``Content-Length`` that is not one canonical decimal number (no sign, no leading zeros,
  no list), which llhttp tolerates in some forms: 400;
* a ``Transfer-Encoding`` other than exactly ``chunked`` (RFC 9112 §6.1: 501 for codings the
  server does not understand): 501.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from service_kit.errors import RefusedRequest

_CANONICAL_LENGTH = re.compile(rb"0|[1-9][0-9]{0,17}")


def canonical_length(value: bytes) -> bool:
    """Whether a ``Content-Length`` value is one canonical decimal number (no sign, no leading
    zeros, no list, at most 18 digits). Requests here; the hop client checks responses."""
    return _CANONICAL_LENGTH.fullmatch(value) is not None


def check_head(method: str, target: bytes, version: str,
               headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Raise :class:`RefusedRequest` for a head the services must not act on.

    ``headers`` are (lower-case name, value) pairs as the parser reported them, in order.
    """
    if version not in ("1.0", "1.1"):
        raise RefusedRequest(505, "HTTP Version Not Supported")
    if not target.startswith(b"/") and not (target == b"*" and method == "OPTIONS"):
        raise RefusedRequest(400, "Bad Request")
    hosts = 0
    for name, value in headers:
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if not canonical_length(value):
                raise RefusedRequest(400, "Bad Request")
        elif name == b"transfer-encoding" and value.lower() != b"chunked":
            raise RefusedRequest(501, "Not Implemented")
    if hosts > 1 or (hosts == 0 and version == "1.1"):
        raise RefusedRequest(400, "Bad Request")
