"""The Oblivious Relay Resource as a Flask app: ``POST /relay``, ``GET /ohttp-keys``.

The relay sees the client's address but only ciphertext. It forwards the body and exactly two
fields, ``Content-Type`` and ``Content-Length`` (plus the relay's own shared secret when one is
configured): no ``Forwarded``, ``X-Forwarded-For``, ``Via``, cookies or ``User-Agent``. Media
type and size are checked before anything is forwarded, each client address is rate limited
(429 with ``Retry-After``), and nothing about bodies or addresses is logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import urllib3
from flask import Flask, Response, request
from urllib3.util import SKIP_HEADER

from e2ee_core.infra.problem import ProblemError, install_problem_handlers, problem
from ohttp_relay import consts
from ohttp_relay.fastpath import EventCounter
from ohttp_relay.hop import HopClient, HopError, HopTimeout, HopUnreachable

log = logging.getLogger("ohttp_relay.relay")

_ACCEPTED = (consts.MEDIA_TYPE_REQUEST, consts.MEDIA_TYPE_CHUNKED_REQUEST)


class RateLimiter:
    """Fixed-window request counter per client address, in this process's memory only."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, client: str, now: float | None = None) -> float | None:
        """Count one request; ``None`` if allowed, else seconds until the window resets."""
        if self.limit <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            if len(self._counts) > 50_000:  # forget idle clients
                self._counts = {k: v for k, v in self._counts.items()
                                if now - v[0] < self.window}
            start, count = self._counts.get(client, (now, 0))
            if now - start >= self.window:
                start, count = now, 0
            if count >= self.limit:
                return max(0.0, start + self.window - now)
            self._counts[client] = (start, count + 1)
            return None


def keys_url_for(gateway_url: str) -> str:
    """The gateway origin's ``/ohttp-keys``."""
    parts = urlsplit(gateway_url)
    return urlunsplit((parts.scheme, parts.netloc, "/ohttp-keys", "", ""))


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the relay. Config: ``gateway_url`` (required; served at ``POST /relay`` and
    ``GET /ohttp-keys``), ``routes`` (more gateways: ``{"/relay/b": "https://b/gateway"}``, each
    with its keys at ``<path>/ohttp-keys``), ``rate_limit`` (requests per window per client
    address, default 120; 0 disables), ``rate_window`` (s, default 60), ``relay_secret``,
    ``max_request_size``, ``gateway_timeout`` (s), ``keys_url``.
    """
    cfg = dict(config or {})
    gateway_url = str(cfg.get("gateway_url") or "")
    if not gateway_url.startswith(("http://", "https://")):
        raise ValueError("relay config needs 'gateway_url' (http or https URL)")
    routes = [("/relay", gateway_url, str(cfg.get("keys_url") or keys_url_for(gateway_url)),
               "/ohttp-keys")]
    for raw_path, url in (cfg.get("routes") or {}).items():
        path = "/" + str(raw_path).strip("/")
        if not str(url).startswith(("http://", "https://")) or path in ("/", "/relay"):
            raise ValueError("relay routes map a path to an http(s) gateway URL")
        routes.append((path, str(url), keys_url_for(str(url)), path + "/ohttp-keys"))
    limiter = RateLimiter(int(cfg.get("rate_limit", 120)), float(cfg.get("rate_window", 60)))
    relay_secret = cfg.get("relay_secret")
    max_size = int(cfg.get("max_request_size", consts.MAX_ENCAPSULATED_REQUEST))
    # urllib3 rather than requests: a third less CPU per forwarded request (profiled); no
    # environment proxies, no retries (a retried POST could be a replay), no redirects.
    pool = urllib3.PoolManager(
        num_pools=4, maxsize=16, retries=False,
        timeout=urllib3.Timeout(connect=5.0, read=float(cfg.get("gateway_timeout", 60.0))))

    app = Flask("ohttp_relay")
    install_problem_handlers(app)

    def _rate_limit() -> None:
        retry = limiter.hit(request.remote_addr or "")
        if retry is not None:
            log.info("relay event=rate_limited")
            raise ProblemError(429, "Too Many Requests",
                               headers={"Retry-After": str(max(1, math.ceil(retry)))})

    def relay(gateway_url: str) -> Response:
        _rate_limit()
        media = (request.mimetype or "").lower()
        if media not in _ACCEPTED:
            log.info("relay event=rejected_media_type")
            raise ProblemError(415, "Unsupported Media Type")
        length = request.content_length
        if length is not None and length > max_size:
            log.info("relay event=too_large")
            raise ProblemError(413, "Content Too Large")
        body = request.stream.read(max_size + 1)
        if len(body) > max_size:
            log.info("relay event=too_large")
            raise ProblemError(413, "Content Too Large")
        # Exactly these fields; urllib3 would add User-Agent and Accept-Encoding: skip them.
        headers = {"Content-Type": media, "Content-Length": str(len(body)),
                   "User-Agent": SKIP_HEADER, "Accept-Encoding": SKIP_HEADER}
        if relay_secret:
            headers[consts.RELAY_SECRET_HEADER] = str(relay_secret)
        try:
            upstream = pool.request("POST", gateway_url, body=body, headers=headers,
                                    redirect=False, preload_content=False,
                                    decode_content=False)
        except urllib3.exceptions.NewConnectionError:  # (a TimeoutError subclass in urllib3)
            log.info("relay event=gateway_unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        except urllib3.exceptions.TimeoutError:
            log.info("relay event=gateway_timeout")
            raise ProblemError(504, "Gateway Timeout") from None
        except urllib3.exceptions.HTTPError:
            log.info("relay event=gateway_unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        log.info("relay event=forwarded status=%d", upstream.status)
        out_type = upstream.headers.get("Content-Type", "application/octet-stream")

        def stream() -> Iterator[bytes]:
            try:
                yield from upstream.stream(16 * 1024, decode_content=False)
            except Exception:
                log.info("relay event=gateway_stream_failed")
            finally:
                upstream.release_conn()

        if out_type.startswith(consts.MEDIA_TYPE_CHUNKED_RESPONSE):
            return Response(stream(), status=upstream.status, content_type=out_type)
        content = b"".join(stream())
        return Response(content, status=upstream.status, content_type=out_type)

    def ohttp_keys(keys_url: str) -> Response:
        # Not cached here: after a key rotation a client's refetch must see the new keys.
        _rate_limit()
        try:
            upstream = pool.request("GET", keys_url, headers={"User-Agent": SKIP_HEADER,
                                                               "Accept-Encoding": SKIP_HEADER},
                                    redirect=False)
        except urllib3.exceptions.HTTPError:
            log.info("relay event=keys_unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        if upstream.status != 200:
            log.info("relay event=keys_failed status=%d", upstream.status)
            raise ProblemError(502, "Bad Gateway")
        log.info("relay event=keys_served")
        resp = Response(upstream.data, mimetype=consts.MEDIA_TYPE_KEYS)
        resp.headers["Cache-Control"] = upstream.headers.get("Cache-Control", "max-age=60")
        return resp

    for index, (path, target, keys, keys_path) in enumerate(routes):
        app.add_url_rule(path, f"relay_{index}", relay, methods=["POST"],
                         defaults={"gateway_url": target})
        app.add_url_rule(keys_path, f"keys_{index}", ohttp_keys, methods=["GET"],
                         defaults={"keys_url": keys})

    fast = {path: urlsplit(url) for path, url, _keys, _kp in routes if url.startswith("http://")}
    app.wsgi_app = _FastRelay(  # type: ignore[method-assign]
        app.wsgi_app, fast, limiter=limiter, max_size=max_size,
        relay_secret=str(relay_secret) if relay_secret else None,
        hops=HopClient(connect_timeout=5.0, replay_safe=True,
                       read_timeout=float(cfg.get("gateway_timeout", 60.0))))
    return app


class _FastRelay:
    """The hot route without Flask: ``POST`` of a ``message/ohttp-req`` to a relay path whose
    gateway is plain ``http``, forwarded over a kept-alive connection (:mod:`ohttp_relay.hop`).

    Profiled: Flask's request/response objects, routing and the ``urllib3`` pool were most of
    the relay's CPU per request. Every check of the Flask view happens here first, in the same
    order; anything else (other routes, chunked OHTTP, which streams, ``https`` gateways, and
    requests the checks refuse before the body is read) falls through to the Flask app.
    """

    def __init__(self, flask_app: WSGIApplication, routes: dict[str, Any], *,
                 limiter: RateLimiter, max_size: int, relay_secret: str | None,
                 hops: HopClient) -> None:
        self.flask_app = flask_app
        self.routes = {path: (url.hostname or "", url.port or 80,
                              (url.path or "/") + (f"?{url.query}" if url.query else ""))
                       for path, url in routes.items()}
        self.limiter = limiter
        self.max_size = max_size
        self.relay_secret = relay_secret
        self.hops = hops
        self.events = EventCounter(log)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        route = self.routes.get(environ.get("PATH_INFO", ""))
        if route is None or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        if media != consts.MEDIA_TYPE_REQUEST or length < 0 or length > self.max_size:
            return self.flask_app(environ, start_response)  # refused or streamed there
        try:
            return self._forward(route, length, environ, start_response)
        except ProblemError as err:
            return err.response()(environ, start_response)
        except Exception as err:  # as the Flask app's problem handler: class name only
            log.error("unhandled error class=%s", type(err).__name__)
            return problem(500, "Internal Server Error")(environ, start_response)

    def _forward(self, route: tuple[str, int, str], length: int, environ: WSGIEnvironment,
                 start_response: StartResponse) -> list[bytes]:
        retry = self.limiter.hit(environ.get("REMOTE_ADDR") or "")
        if retry is not None:
            log.info("relay event=rate_limited")
            raise ProblemError(429, "Too Many Requests",
                               headers={"Retry-After": str(max(1, math.ceil(retry)))})
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) != length:
            raise ProblemError(400, "Bad Request", detail="request body truncated")
        headers = [("Content-Type", consts.MEDIA_TYPE_REQUEST)]
        if self.relay_secret:
            headers.append((consts.RELAY_SECRET_HEADER, self.relay_secret))
        host, port, target = route
        try:
            upstream = self.hops.request("POST", (host, port), target, headers=headers,
                                         body=body, limit=consts.MAX_ENCAPSULATED_REQUEST)
        except HopUnreachable:
            log.info("relay event=gateway_unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        except HopTimeout:
            log.info("relay event=gateway_timeout")
            raise ProblemError(504, "Gateway Timeout") from None
        except HopError:
            log.info("relay event=gateway_unreachable")
            raise ProblemError(502, "Bad Gateway") from None
        self.events.hit(f"relay event=forwarded status={upstream.status}")
        out_type = upstream.header("Content-Type") or "application/octet-stream"
        start_response(f"{upstream.status} {_reason(upstream.status)}",
                       [("Content-Type", out_type),
                        ("Content-Length", str(len(upstream.content)))])
        return [upstream.content]


_REASONS = {int(s): s.phrase for s in HTTPStatus}


def _reason(status: int) -> str:
    return _REASONS.get(status, "Unknown")
