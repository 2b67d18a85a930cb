"""The Oblivious Gateway Resource as a Flask app: ``GET /ohttp-keys``, ``POST /gateway``.

Layers, each one unit of :class:`Gateway` with one implementation, each failure class with its
own status (RFC 9458 §5.2, §6):

1. :meth:`Gateway.check_outer`: relay secret (403), media type (415), size (413);
2. :meth:`Gateway.decapsulate`: truncated (400), unknown key id or algorithm (400, ``ohttp-key``
   problem), authentication failure (400);
3. :meth:`Gateway.check_replay`: a byte-identical replay (400);
4. :meth:`Gateway.inner_request` (sealed answers from here on): malformed Binary HTTP (400),
   Date outside the window (400 with the gateway's ``Date``), origin not allowed (403);
5. :meth:`Gateway.send`: the target client (:mod:`ohttp_relay.target`): unreachable (sealed
   502), timeout (sealed 504), otherwise the target's response;
6. sealing: :meth:`Gateway.answer` (one response) or :meth:`Gateway.answer_chunked` (RFC 9458
   chunked, sealed as the target's content arrives).

Logs carry event names only: never addresses, targets, query strings, headers or keys.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

from ohttp_relay import bhttp, consts, metrics
from ohttp_relay.chunked import ChunkedRequestOpener, ChunkedResponseSealer
from ohttp_relay.errors import (
    DecodeError,
    DecryptError,
    KeyConfigError,
    LimitExceeded,
    OriginError,
    ReplayError,
    StoreError,
    TargetError,
    TargetTimeout,
    UnknownKeyId,
)
from ohttp_relay.gateway import (
    Allowlist,
    Target,
    forward_headers,
    parse_origin,
    problem_response,
    request_target,
    response_headers,
)
from ohttp_relay.keys import ACTIVE, KeyRecord
from ohttp_relay.ohttp import (
    GatewayKey,
    RequestHeader,
    decapsulate_request,
    encode_key_configs,
)
from ohttp_relay.replay import ReplayPolicy, check_date, format_http_date
from ohttp_relay.store import DatabaseStore
from ohttp_relay.target import (
    HTTPTarget,
    RoutingTarget,
    TargetResponse,
    WSGITarget,
)
from service_kit.events import EventCounter
from service_kit.problem import ProblemError, install_problem_handlers
from service_kit.serving import load_factory
from service_kit.settings import load_settings

log = logging.getLogger("ohttp_relay.gateway")


class KeyCache:
    """Keys read from the store, refreshed every ``ttl`` seconds (so rotations propagate)."""

    def __init__(self, store: DatabaseStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._records: list[KeyRecord] = []
        self._loaded = 0.0
        self._forced = 0.0

    def records(self, *, force: bool = False) -> list[KeyRecord]:
        now = time.monotonic()
        with self._lock:
            # a forced refresh (unknown key id) is rate-limited to once per second
            stale = now - self._loaded > self.ttl
            if force and now - self._forced > 1.0:
                stale, self._forced = True, now
            if stale or not self._records:
                self._records = self.store.key_records()
                self._loaded = now
            return self._records

    def lookup(self, key_id: int) -> GatewayKey | None:
        for attempt in (False, True):
            now = time.time()
            for record in self.records(force=attempt):
                if record.key_id == key_id and record.decrypts_at(now):
                    return record.key
        return None

    def advertised(self) -> bytes:
        return encode_key_configs(r.key.config for r in self.records()
                                  if r.state == ACTIVE and r.key is not None)


@dataclass(frozen=True)
class GatewaySettings:
    """The gateway's settings (the ``create_app`` config mapping; unknown keys are refused)."""

    #: Key and replay store: a SQLite path or a ``postgresql://`` DSN.
    db: str
    #: Allowed target origins (``https://example.org``).
    targets: Sequence[str] = ()
    #: When set, only requests carrying it (from the relay) are served.
    relay_secret: str | None = None
    #: Seconds a request's ``Date`` may differ from the gateway's clock (0: no Date check).
    date_window: int = consts.DEFAULT_DATE_WINDOW
    #: Refuse inner requests without ``Date``: replays of undated ones are refused only while
    #: the replay cache remembers them (2 x ``date_window`` + 1 s).
    require_date: bool = True
    keys_max_age: int = consts.DEFAULT_KEYS_MAX_AGE
    #: Seconds between rereads of the key store (rotations propagate).
    key_refresh: float = 5.0
    max_request_size: int = consts.MAX_ENCAPSULATED_REQUEST
    target_connect_timeout: float = 5.0
    target_timeout: float = 30.0
    #: In-process targets: ``{origin: "module:factory"}``, built with ``target_app_config``.
    target_apps: Mapping[str, str] = field(default_factory=dict)
    target_app_config: Mapping[str, Any] = field(default_factory=dict)
    #: Whether chunked OHTTP (``message/ohttp-chunked-req``) is served.
    chunked: bool = True


class Gateway:
    """The gateway's layers (see the module docstring); Flask only routes to them."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.store = DatabaseStore(settings.db)
        self.store.ensure_key(int(time.time()))
        self.keys = KeyCache(self.store, settings.key_refresh)
        self.policy = ReplayPolicy(window=settings.date_window,
                                   require_date=settings.require_date)
        apps = {parse_origin(origin): WSGITarget(load_factory(path)(settings.target_app_config))
                for origin, path in settings.target_apps.items()}
        self.targets = RoutingTarget(
            HTTPTarget(connect_timeout=settings.target_connect_timeout,
                       read_timeout=settings.target_timeout), apps)
        self.allowlist = Allowlist([*settings.targets, *apps])
        self.relay_secret = settings.relay_secret.encode() if settings.relay_secret else None
        self.events = EventCounter(log)

    # 1. outer HTTP
    def check_outer(self, media_type: str, length: int | None, offered_secret: str) -> bool:
        """Checks before the body is used; ``True`` for chunked OHTTP."""
        if self.relay_secret is not None and not hmac.compare_digest(
                offered_secret.encode(), self.relay_secret):
            log.info("gateway event=relay_unauthenticated")
            metrics.gateway_refused("relay_unauthenticated")
            raise ProblemError(403, "Forbidden", detail="requests must come through the relay")
        media = media_type.lower()
        chunked = media == consts.MEDIA_TYPE_CHUNKED_REQUEST and self.settings.chunked
        if media != consts.MEDIA_TYPE_REQUEST and not chunked:
            log.info("gateway event=rejected_media_type")
            metrics.gateway_refused("media_type")
            raise ProblemError(415, "Unsupported Media Type",
                               detail=f"expected {consts.MEDIA_TYPE_REQUEST}")
        if length is not None and length > self.settings.max_request_size:
            log.info("gateway event=too_large")
            metrics.gateway_refused("too_large")
            raise ProblemError(413, "Content Too Large")
        return chunked

    # 2. decapsulation
    def decapsulate(self, body: bytes) -> tuple[bytes, Any]:
        try:
            return decapsulate_request(body, self.keys.lookup)
        except (DecodeError, KeyConfigError, DecryptError) as exc:
            raise _outer_problem(exc) from None

    # 3. replay
    def check_replay(self, header: RequestHeader, enc: bytes) -> None:
        now = int(time.time())
        try:
            fresh = self.store.remember_request(header.key_id, enc, now,
                                                now + self.policy.remember_for)
        except StoreError:
            log.error("gateway event=replay_store_failed")
            metrics.gateway_refused("replay_store_failed")
            raise ProblemError(503, "Service Unavailable") from None
        if not fresh:
            log.info("gateway event=replay_rejected")
            metrics.gateway_refused("replayed")
            raise ProblemError(400, "Replayed request")

    # 4. inner request
    def inner_request(self, inner: bytes) -> bhttp.Response | tuple[bhttp.Request, Target]:
        """Decode and check one inner request: a sealed error answer, or what to forward."""
        try:
            req = bhttp.decode_request(inner)
        except DecodeError:
            log.info("gateway event=inner_malformed")
            metrics.inner_failed("malformed")
            return problem_response(400, "Malformed Binary HTTP request")
        try:
            check_date(req.header("date"), time.time(), self.policy)
        except ReplayError:
            log.info("gateway event=date_rejected")
            metrics.inner_failed("date_rejected")
            return problem_response(400, "Date outside the accepted window",
                                    type_=consts.PROBLEM_DATE,
                                    headers=(("date", format_http_date(time.time())),))
        try:
            target = request_target(req)
        except OriginError:
            log.info("gateway event=target_invalid")
            metrics.inner_failed("target_invalid")
            return problem_response(400, "Invalid request target")
        if target.origin not in self.allowlist:
            log.info("gateway event=target_forbidden")
            metrics.inner_failed("target_forbidden")
            return problem_response(403, "Target origin not allowed")
        return req, target

    # 5. target client
    def send(self, req: bhttp.Request, target: Target) -> TargetResponse | bhttp.Response:
        try:
            return self.targets.for_origin(target.origin).send(
                req.method, target.url, forward_headers(req.headers), req.content)
        except TargetTimeout:
            log.info("gateway event=target_timeout")
            metrics.inner_failed("target_timeout")
            return problem_response(504, "Target timed out")
        except TargetError:
            log.info("gateway event=target_unreachable")
            metrics.inner_failed("target_unreachable")
            return problem_response(502, "Target unreachable")

    def respond(self, inner: bytes) -> bhttp.Response:
        """Layers 4 and 5 for one whole response; every failure is a sealed answer."""
        checked = self.inner_request(inner)
        if isinstance(checked, bhttp.Response):
            return checked
        answer = self.send(*checked)
        if isinstance(answer, bhttp.Response):
            return answer
        try:
            content = answer.read_all(consts.MAX_CONTENT_BYTES)
        except TargetTimeout:
            log.info("gateway event=target_timeout")
            metrics.inner_failed("target_timeout")
            return problem_response(504, "Target timed out")
        except TargetError:
            log.info("gateway event=target_failed")
            metrics.inner_failed("target_failed")
            return problem_response(502, "Target response failed or too large")
        return bhttp.Response(answer.status, response_headers(answer.headers), content)

    # 6. sealing
    def answer(self, body: bytes) -> bytes:
        """The sealed answer to one Encapsulated Request; outer failures raise ProblemError."""
        inner, context = self.decapsulate(body)
        self.check_replay(context.header, context.enc)
        response = self.respond(inner)
        self.events.hit(f"gateway event=answered status={response.status}")
        metrics.gateway_answered("whole", response.status)
        return context.encapsulate(response.to_bytes())  # type: ignore[no-any-return]

    def answer_chunked(self, body: bytes) -> Iterator[bytes]:
        """RFC 9458 chunked OHTTP: the sealed response, chunk by chunk as the target sends."""
        opener = ChunkedRequestOpener(self.keys.lookup)
        try:
            inner = b"".join(opener.feed(body)) + opener.close()
        except (DecodeError, KeyConfigError, DecryptError) as exc:
            raise _outer_problem(exc) from None
        assert opener.header is not None
        self.check_replay(opener.header, opener.enc)
        log.info("gateway event=chunked_request")
        return self._stream_chunked(inner, opener.response_sealer())

    def _stream_chunked(self, inner: bytes, sealer: ChunkedResponseSealer) -> Iterator[bytes]:
        yield sealer.prefix()
        checked = self.inner_request(inner)
        answer = checked if isinstance(checked, bhttp.Response) else self.send(*checked)
        metrics.gateway_answered("chunked", answer.status)
        if isinstance(answer, bhttp.Response):
            yield sealer.seal(answer.to_bytes(bhttp.Mode.INDETERMINATE), final=True)
            return
        yield sealer.seal(bhttp.encode_response_head(answer.status,
                                                     response_headers(answer.headers)))
        try:
            for piece in answer.body:
                if piece:
                    yield sealer.seal(bhttp.encode_content_chunk(piece))
        except TargetError:
            log.info("gateway event=target_stream_failed")
            metrics.inner_failed("target_stream_failed")
            return  # no final chunk: the client sees a truncated (failed) response
        finally:
            answer.close()
        yield sealer.seal(bhttp.encode_indeterminate_tail(), final=True)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway from :class:`GatewaySettings` (``config``)."""
    settings = load_settings(GatewaySettings, config)
    gateway = Gateway(settings)
    app = Flask("ohttp_gateway")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_size
    install_problem_handlers(app)

    @app.get("/ohttp-keys")
    def ohttp_keys() -> Response:
        resp = Response(gateway.keys.advertised(), mimetype=consts.MEDIA_TYPE_KEYS)
        resp.headers["Cache-Control"] = f"max-age={settings.keys_max_age}"
        log.info("gateway event=keys_served")
        return resp

    @app.post("/gateway")
    def post() -> Response:
        chunked = gateway.check_outer(request.mimetype or "", request.content_length,
                                      request.headers.get(consts.RELAY_SECRET_HEADER, ""))
        body = request.get_data()
        if chunked:
            return Response(gateway.answer_chunked(body),
                            mimetype=consts.MEDIA_TYPE_CHUNKED_RESPONSE)
        return Response(gateway.answer(body), mimetype=consts.MEDIA_TYPE_RESPONSE)

    return app


def _outer_problem(exc: Exception) -> ProblemError:
    if isinstance(exc, (UnknownKeyId, KeyConfigError)):
        log.info("gateway event=key_problem")
        metrics.decapsulation_failed("key_unknown")
        return ProblemError(400, "Key configuration not recognised",
                            type_=consts.PROBLEM_OHTTP_KEY)
    if isinstance(exc, LimitExceeded):
        log.info("gateway event=too_large")
        metrics.decapsulation_failed("too_large")
        return ProblemError(413, "Content Too Large")
    if isinstance(exc, DecryptError):
        log.info("gateway event=decrypt_failed")
        metrics.decapsulation_failed("decrypt_failed")
        return ProblemError(400, "Bad Request", detail="request could not be decrypted")
    log.info("gateway event=malformed")
    metrics.decapsulation_failed("malformed")
    return ProblemError(400, "Bad Request", detail="malformed encapsulated request")

