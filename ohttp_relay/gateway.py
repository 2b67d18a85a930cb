"""Gateway request policy, sans-I/O: target origin allowlist, header filtering, inner errors.

The HTTP plumbing lives in :mod:`ohttp_relay.gateway_service`; forwarding in
:mod:`ohttp_relay.target`. Nothing here learns or adds anything about the client: the gateway
only ever sees the relay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ohttp_relay import bhttp
from ohttp_relay.errors import (
    OriginError,
)

#: Connection-specific fields never forwarded in either direction (RFC 9110 §7.6.1), plus the
#: framing fields the forwarding client recomputes.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host",
    "content-length",
})

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(scheme: str, authority: str) -> str:
    """``scheme://host[:port]`` lowercased, default ports dropped."""
    scheme = scheme.lower()
    if scheme not in _DEFAULT_PORTS or not authority or "@" in authority:
        raise OriginError("unsupported origin")
    try:
        parts = urlsplit(f"{scheme}://{authority}")
        host = parts.hostname
        port = parts.port
    except ValueError:
        raise OriginError("invalid authority") from None
    if not host:
        raise OriginError("invalid authority")
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_origin(origin: str) -> str:
    """Normalise a configured allowed origin such as ``http://127.0.0.1:9000``."""
    parts = urlsplit(origin.strip())
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise OriginError("an origin has no path, query or fragment")
    return normalize_origin(parts.scheme, parts.netloc)


@dataclass(frozen=True)
class Target:
    """Where an inner request goes: its normalised origin and the URL to fetch."""

    origin: str
    url: str


def request_target(request: bhttp.Request) -> Target:
    """The target of an inner request; an empty authority falls back to the Host field."""
    authority = request.authority or (request.header("host") or "")
    origin = normalize_origin(request.scheme, authority)
    path = request.path or "/"
    if not path.startswith("/"):
        raise OriginError("request path must be absolute")
    return Target(origin, origin + path)


class Allowlist:
    """The set of target origins a gateway forwards to."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.origins = frozenset(parse_origin(o) for o in origins)

    def __contains__(self, origin: object) -> bool:
        return origin in self.origins


def _end_to_end(fields: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``fields`` (names lowercased) without hop-by-hop ones, including those ``Connection``
    names (RFC 9110 §7.6.1)."""
    lowered = [(name.lower(), value) for name, value in fields]
    named: set[str] = set()
    for name, value in lowered:
        if name == "connection":
            named.update(t.strip().lower() for t in value.split(","))
    return [(n, v) for n, v in lowered if n not in HOP_BY_HOP and n not in named]


def forward_headers(fields: Iterable[bhttp.Field]) -> list[tuple[str, str]]:
    """The inner request's fields minus hop-by-hop ones; nothing is added."""
    return _end_to_end(fields)


def response_headers(fields: Iterable[tuple[str, str]]) -> tuple[bhttp.Field, ...]:
    """A target's response fields for the inner response: lowercase, hop-by-hop dropped, and
    fields no Binary HTTP decoder would accept (bad name, CR/LF/NUL in the value) dropped."""
    out: list[bhttp.Field] = []
    for name, value in _end_to_end(fields):
        try:
            out.extend(bhttp.normalize_fields([(name, value)]))
        except (ValueError, UnicodeError):
            continue
    return tuple(out)


def problem_response(status: int, title: str, *, type_: str = "about:blank",
                     headers: Iterable[bhttp.Field] = ()) -> bhttp.Response:
    """An inner ``application/problem+json`` response (sealed before it leaves the gateway)."""
    body = json.dumps({"type": type_, "title": title, "status": status}).encode()
    return bhttp.Response(status, (("content-type", "application/problem+json"), *headers),
                          body)
