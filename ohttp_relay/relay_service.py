"""The Oblivious Relay Resource as a Flask app: ``POST /relay``, ``GET /ohttp-keys``.

The relay sees the client's address but only ciphertext. It forwards the body and exactly two
fields, ``Content-Type`` and ``Content-Length`` (plus the relay's own shared secret when one is
configured): no ``Forwarded``, ``X-Forwarded-For``, ``Via``, cookies or ``User-Agent``. Nothing
about bodies or addresses is logged.

Layers of ``POST /relay``, each one unit of :class:`Relay` with one implementation:

1. :meth:`Relay.admit`: the client address's rate limit (429 with ``Retry-After``);
2. :meth:`Relay.check_outer`: media type (415) and size (413) before anything is forwarded;
3. :meth:`Relay.forward`: the hop to the gateway (:mod:`ohttp_relay.upstream`; 502 unreachable,
   504 timeout), the gateway's answer relayed as it comes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, Response, request

from ohttp_relay import consts, metrics
from ohttp_relay.errors import (
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from ohttp_relay.upstream import UpstreamClient, UpstreamResponse
from service_kit.cors import CorsPolicy, install_cors
from service_kit.errors import ConfigError
from service_kit.events import EventCounter
from service_kit.problem import ProblemError, install_problem_handlers
from service_kit.ratelimit import RateLimiter
from service_kit.settings import load_settings

log = logging.getLogger("ohttp_relay.relay")

_ACCEPTED = (consts.MEDIA_TYPE_REQUEST, consts.MEDIA_TYPE_CHUNKED_REQUEST)


@dataclass(frozen=True)
class RelaySettings:
    """The relay's settings (the ``create_app`` config mapping; unknown keys are refused)."""

    #: The gateway served at ``POST /relay`` (its keys at ``GET /ohttp-keys``).
    gateway_url: str
    #: More gateways: ``{"/relay/b": "https://b/gateway"}``, keys at ``<path>/ohttp-keys``.
    routes: Mapping[str, str] = field(default_factory=dict)
    #: Requests per window per client address (0 disables).
    rate_limit: int = 120
    rate_window: float = 60.0
    #: Sent to the gateway so that it can refuse requests that bypass the relay.
    relay_secret: str | None = None
    max_request_size: int = consts.MAX_ENCAPSULATED_REQUEST
    gateway_timeout: float = 60.0
    #: Where the first gateway's keys are fetched (default: its origin's ``/ohttp-keys``).
    keys_url: str | None = None
    #: Web page origins whose browsers may call the relay (CORS); none by default.
    cors_origins: Sequence[str] = ()


@dataclass(frozen=True)
class Route:
    path: str
    gateway_url: str
    keys_url: str
    keys_path: str


def keys_url_for(gateway_url: str) -> str:
    """The gateway origin's ``/ohttp-keys``."""
    parts = urlsplit(gateway_url)
    return urlunsplit((parts.scheme, parts.netloc, "/ohttp-keys", "", ""))


def _routes(settings: RelaySettings) -> list[Route]:
    if not settings.gateway_url.startswith(("http://", "https://")):
        raise ConfigError("relay setting 'gateway_url' must be an http or https URL")
    routes = [Route("/relay", settings.gateway_url,
                    settings.keys_url or keys_url_for(settings.gateway_url), "/ohttp-keys")]
    for raw_path, url in settings.routes.items():
        path = "/" + raw_path.strip("/")
        if not url.startswith(("http://", "https://")) or path in ("/", "/relay"):
            raise ConfigError("relay routes map a path to an http(s) gateway URL")
        routes.append(Route(path, url, keys_url_for(url), path + "/ohttp-keys"))
    return routes


class Relay:
    """The relay's layers (see the module docstring); Flask only routes to them."""

    def __init__(self, settings: RelaySettings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_window)
        # Replay-safe: a request whose kept-alive connection the gateway closed before
        # answering is sent once more; the gateway's replay cache refuses a second copy.
        self.client = UpstreamClient(connect_timeout=5.0, read_timeout=settings.gateway_timeout,
                                     replay_safe=True)

    def admit(self, client_address: str) -> None:
        retry = self.limiter.hit(client_address)
        if retry is not None:
            log.info("relay event=rate_limited")
            metrics.RELAY_RATE_LIMITED.inc()
            raise ProblemError(429, "Too Many Requests",
                               headers={"Retry-After": str(max(1, math.ceil(retry)))})

    def check_outer(self, media_type: str, length: int | None) -> str:
        media = media_type.lower()
        if media not in _ACCEPTED:
            log.info("relay event=rejected_media_type")
            metrics.relay_refused("media_type")
            raise ProblemError(415, "Unsupported Media Type")
        if length is not None and length > self.settings.max_request_size:
            log.info("relay event=too_large")
            metrics.relay_refused("too_large")
            raise ProblemError(413, "Content Too Large")
        return media

    def forward(self, route: Route, media: str, body: bytes) -> UpstreamResponse:
        if len(body) > self.settings.max_request_size:
            log.info("relay event=too_large")
            metrics.relay_refused("too_large")
            raise ProblemError(413, "Content Too Large")
        headers = [("Content-Type", media)]
        if self.settings.relay_secret:
            headers.append((consts.RELAY_SECRET_HEADER, self.settings.relay_secret))
        try:
            upstream = self.client.request("POST", route.gateway_url, headers=headers,
                                           body=body, limit=consts.MAX_ENCAPSULATED_REQUEST)
        except UpstreamUnreachable:
            log.info("relay event=gateway_unreachable")
            metrics.relay_upstream_failed("unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        except UpstreamTimeout:
            log.info("relay event=gateway_timeout")
            metrics.relay_upstream_failed("timeout")
            raise ProblemError(504, "Gateway Timeout") from None
        except UpstreamError:
            log.info("relay event=gateway_failed")
            metrics.relay_upstream_failed("failed")
            raise ProblemError(502, "Bad Gateway") from None
        return upstream

    def keys(self, route: Route) -> tuple[bytes, str]:
        """The gateway's key configurations and their ``Cache-Control``; not cached here:
        after a key rotation a client's refetch must see the new keys."""
        try:
            upstream = self.client.request("GET", route.keys_url, headers=[], body=b"",
                                           limit=consts.MAX_CONTENT_BYTES)
            if upstream.status != 200:
                upstream.close()
                log.info("relay event=keys_failed status=%d", upstream.status)
                metrics.relay_upstream_failed("keys_failed")
                raise ProblemError(502, "Bad Gateway")
            body = upstream.read_all()
        except UpstreamError:
            log.info("relay event=keys_unreachable")
            metrics.relay_upstream_failed("keys_unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        return body, upstream.header("Cache-Control") or "max-age=60"


def _relayed(upstream: UpstreamResponse) -> Response:
    out_type = upstream.header("Content-Type") or "application/octet-stream"
    if out_type.startswith(consts.MEDIA_TYPE_CHUNKED_RESPONSE):
        def stream() -> Iterator[bytes]:
            try:
                yield from upstream.chunks()
            except UpstreamError:
                log.info("relay event=gateway_stream_failed")  # the client sees a truncation
                metrics.relay_upstream_failed("stream_failed")
        return Response(stream(), status=upstream.status, content_type=out_type)
    try:
        content = upstream.read_all()
    except UpstreamError:
        log.info("relay event=gateway_stream_failed")
        metrics.relay_upstream_failed("stream_failed")
        raise ProblemError(502, "Bad Gateway") from None
    return Response(content, status=upstream.status, content_type=out_type)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the relay from :class:`RelaySettings` (``config``)."""
    settings = load_settings(RelaySettings, config)
    routes = _routes(settings)
    relay = Relay(settings)
    events = EventCounter(log)

    app = Flask("ohttp_relay")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_size
    install_problem_handlers(app)
    install_cors(app, CorsPolicy.build(settings.cors_origins, expose_headers=("retry-after",)))

    def post(route: Route) -> Response:
        relay.admit(request.remote_addr or "")
        media = relay.check_outer(request.mimetype or "", request.content_length)
        upstream = relay.forward(route, media, request.get_data())
        events.hit(f"relay event=forwarded status={upstream.status}")
        metrics.relay_forwarded(upstream.status)
        return _relayed(upstream)

    def keys(route: Route) -> Response:
        relay.admit(request.remote_addr or "")
        body, cache_control = relay.keys(route)
        log.info("relay event=keys_served")
        resp = Response(body, mimetype=consts.MEDIA_TYPE_KEYS)
        resp.headers["Cache-Control"] = cache_control
        return resp

    for index, route in enumerate(routes):
        app.add_url_rule(route.path, f"relay_{index}", post, methods=["POST"],
                         defaults={"route": route})
        app.add_url_rule(route.keys_path, f"keys_{index}", keys, methods=["GET"],
                         defaults={"route": route})
    return app
