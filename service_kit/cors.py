"""Cross-origin access for browser clients (the Fetch standard's CORS protocol), per service.

A service that a web page calls lists the page origins it answers (exact ``scheme://host[:port]``
strings from its settings; nothing by default). For those origins it answers the preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) with the methods and request fields it
accepts, and marks every response readable by them, exposing the fields the page must read.
Credentials are never allowed: pages call with ``credentials: 'omit'``, so no cookie or HTTP
authentication the browser holds ever reaches the service (a bearer credential the page sends
itself is an ordinary request field).

A preflight from any other origin, or for a method or field the service does not accept, gets a
403 problem and no CORS fields, so the browser sends nothing further.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Flask, Response, request

from service_kit.errors import ConfigError
from service_kit.problem import problem

#: Seconds a browser may cache a preflight answer (Chromium caps this at 7200).
PREFLIGHT_MAX_AGE = 600


def check_origin(origin: str) -> str:
    """``origin`` if it is a serialized origin (``scheme://host[:port]``, no path), else
    :class:`ConfigError`."""
    parts = urlsplit(origin)
    if (parts.scheme not in ("http", "https") or not parts.hostname
            or origin != f"{parts.scheme}://{parts.netloc}" or "@" in parts.netloc):
        raise ConfigError(f"CORS origin {origin!r} must be scheme://host[:port] without a path")
    return origin


@dataclass(frozen=True)
class CorsPolicy:
    """Which page origins may call the service, and how."""

    origins: frozenset[str]
    #: Methods a page may use besides the CORS-safelisted GET, HEAD and POST basics.
    methods: tuple[str, ...] = ("GET", "POST")
    #: Request fields a page may set (lower-case), e.g. ``content-type``, ``authorization``.
    request_headers: tuple[str, ...] = ("content-type",)
    #: Response fields the page may read beyond the CORS-safelisted ones.
    expose_headers: tuple[str, ...] = ()
    max_age: int = PREFLIGHT_MAX_AGE

    @classmethod
    def build(cls, origins: Iterable[str], **kwargs: object) -> CorsPolicy:
        """A policy whose origins are checked (:func:`check_origin`)."""
        return cls(frozenset(check_origin(o) for o in origins), **kwargs)  # type: ignore[arg-type]

    def preflight_allows(self, method: str, fields: str) -> bool:
        """Whether a preflight asking for ``method`` and the comma-separated ``fields`` passes."""
        wanted = {f.strip().lower() for f in fields.split(",") if f.strip()}
        return method in self.methods and wanted <= set(self.request_headers)


def install_cors(app: Flask, policy: CorsPolicy) -> None:
    """Answer preflights and mark responses for ``policy``'s origins (no-op without origins)."""
    if not policy.origins:
        return

    @app.before_request
    def preflight() -> Response | None:
        origin = request.headers.get("Origin")
        wanted = request.headers.get("Access-Control-Request-Method")
        if request.method != "OPTIONS" or origin is None or wanted is None:
            return None
        fields = request.headers.get("Access-Control-Request-Headers", "")
        if origin not in policy.origins or not policy.preflight_allows(wanted, fields):
            return problem(403, "Forbidden",
                           detail="cross-origin request not allowed")
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = ", ".join(policy.methods)
        response.headers["Access-Control-Allow-Headers"] = ", ".join(policy.request_headers)
        response.headers["Access-Control-Max-Age"] = str(policy.max_age)
        return response

    @app.after_request
    def mark(response: Response) -> Response:
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        refused_preflight = (request.method == "OPTIONS" and response.status_code != 204
                             and "Access-Control-Request-Method" in request.headers)
        if origin is not None and origin in policy.origins and not refused_preflight:
            response.headers["Access-Control-Allow-Origin"] = origin
            if policy.expose_headers:
                response.headers["Access-Control-Expose-Headers"] = ", ".join(
                    policy.expose_headers)
        return response
