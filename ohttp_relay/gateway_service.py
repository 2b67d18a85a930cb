"""The Oblivious Gateway Resource as a Flask app: ``GET /ohttp-keys``, ``POST /gateway``.

Layers, each failure class with its own status (RFC 9458 §5.2, §6):

1. outer HTTP: relay secret (403), media type (415), size (413);
2. decapsulation: truncated (400), unknown key id or algorithm (400, ``ohttp-key`` problem),
   authentication failure (400), byte-identical replay (400);
3. inner request (sealed answers): malformed Binary HTTP (400), Date outside the window (400 with
   the gateway's ``Date``), origin not allowed (403);
4. target: unreachable (sealed 502), timeout (sealed 504), otherwise the target's response.

Logs carry event names only: never addresses, targets, query strings, headers or keys.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask, Response, request

from e2ee_core.infra.problem import ProblemError, install_problem_handlers, problem
from e2ee_core.infra.serving import load_factory
from ohttp_relay import bhttp, consts
from ohttp_relay.chunked import ChunkedRequestOpener, ChunkedResponseSealer
from ohttp_relay.errors import (
    DecodeError,
    DecryptError,
    KeyConfigError,
    LimitExceeded,
    ReplayError,
    StoreError,
    TargetError,
    UnknownKeyId,
)
from ohttp_relay.fastpath import EventCounter
from ohttp_relay.gateway import (
    Allowlist,
    OriginError,
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
    TargetTimeout,
    WSGITarget,
)

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


def _media_type() -> str:
    return (request.mimetype or "").lower()


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the gateway. Config: ``db`` (required), ``targets`` (allowed origins), optional
    ``relay_secret``, ``date_window`` (s, 0 = off), ``require_date``, ``keys_max_age``,
    ``key_refresh`` (s), ``max_request_size``, ``target_connect_timeout``,
    ``target_timeout``, ``target_apps`` ({origin: "module:factory"}), ``chunked``.
    """
    cfg = dict(config or {})
    if not cfg.get("db"):
        raise ValueError("gateway config needs 'db'")
    store = DatabaseStore(str(cfg["db"]))
    store.ensure_key(int(time.time()))
    keys = KeyCache(store, float(cfg.get("key_refresh", 5.0)))
    allowlist = Allowlist(cfg.get("targets") or [])
    relay_secret = cfg.get("relay_secret")
    policy = ReplayPolicy(window=int(cfg.get("date_window", consts.DEFAULT_DATE_WINDOW)),
                          require_date=bool(cfg.get("require_date", False)))
    max_age = int(cfg.get("keys_max_age", consts.DEFAULT_KEYS_MAX_AGE))
    max_size = int(cfg.get("max_request_size", consts.MAX_ENCAPSULATED_REQUEST))
    allow_chunked = bool(cfg.get("chunked", True))
    apps = {parse_origin(origin): WSGITarget(load_factory(path)(cfg.get("target_app_config") or {}))
            for origin, path in (cfg.get("target_apps") or {}).items()}
    targets = RoutingTarget(
        HTTPTarget(connect_timeout=float(cfg.get("target_connect_timeout", 5.0)),
                   read_timeout=float(cfg.get("target_timeout", 30.0))),
        apps,
    )
    allowlist = Allowlist([*allowlist.origins, *apps])

    events = EventCounter(log)
    app = Flask("ohttp_gateway")
    install_problem_handlers(app)

    @app.get("/ohttp-keys")
    def ohttp_keys() -> Response:
        body = keys.advertised()
        resp = Response(body, mimetype=consts.MEDIA_TYPE_KEYS)
        resp.headers["Cache-Control"] = f"max-age={max_age}"
        log.info("gateway event=keys_served")
        return resp

    @app.post("/gateway")
    def gateway() -> Response:
        _check_relay(relay_secret)
        media = _media_type()
        chunked = media == consts.MEDIA_TYPE_CHUNKED_REQUEST and allow_chunked
        if media != consts.MEDIA_TYPE_REQUEST and not chunked:
            log.info("gateway event=rejected_media_type")
            raise ProblemError(415, "Unsupported Media Type",
                               detail=f"expected {consts.MEDIA_TYPE_REQUEST}")
        body = _read_body(max_size)
        if chunked:
            return _chunked(body)
        return Response(_answer(body), mimetype=consts.MEDIA_TYPE_RESPONSE)

    def _answer(body: bytes) -> bytes:
        """The sealed answer to one Encapsulated Request; outer failures raise ProblemError."""
        try:
            inner, context = decapsulate_request(body, keys.lookup)
        except (DecodeError, KeyConfigError, DecryptError) as exc:
            raise _outer_problem(exc) from None
        _check_replay(context.header, context.enc)
        response = _handle_inner(inner)
        events.hit(f"gateway event=answered status={response.status}")
        return context.encapsulate(response.to_bytes())

    def _check_replay(header: RequestHeader, enc: bytes) -> None:
        now = int(time.time())
        try:
            fresh = store.remember_request(header.key_id, enc, now, now + policy.remember_for)
        except StoreError:
            log.error("gateway event=replay_store_failed")
            raise ProblemError(503, "Service Unavailable") from None
        if not fresh:
            log.info("gateway event=replay_rejected")
            raise ProblemError(400, "Replayed request")

    def _preflight(inner: bytes) -> bhttp.Response | tuple[bhttp.Request, Target]:
        """Decode and check one inner request: a sealed error answer, or what to forward."""
        try:
            req = bhttp.decode_request(inner)
        except DecodeError:
            log.info("gateway event=inner_malformed")
            return problem_response(400, "Malformed Binary HTTP request")
        try:
            check_date(req.header("date"), time.time(), policy)
        except ReplayError:
            log.info("gateway event=date_rejected")
            return problem_response(400, "Date outside the accepted window",
                                    type_=consts.PROBLEM_DATE,
                                    headers=(("date", format_http_date(time.time())),))
        try:
            target = request_target(req)
        except OriginError:
            log.info("gateway event=target_invalid")
            return problem_response(400, "Invalid request target")
        if target.origin not in allowlist:
            log.info("gateway event=target_forbidden")
            return problem_response(403, "Target origin not allowed")
        return req, target

    def _send(req: bhttp.Request, target: Target, *,
              stream: bool = True) -> TargetResponse | bhttp.Response:
        try:
            return targets.for_origin(target.origin).send(
                req.method, target.url, forward_headers(req.headers), req.content,
                stream=stream)
        except TargetTimeout:
            log.info("gateway event=target_timeout")
            return problem_response(504, "Target timed out")
        except TargetError:
            log.info("gateway event=target_unreachable")
            return problem_response(502, "Target unreachable")

    def _handle_inner(inner: bytes) -> bhttp.Response:
        """Decode, check and forward one inner request; every failure is a sealed answer."""
        checked = _preflight(inner)
        if isinstance(checked, bhttp.Response):
            return checked
        answer = _send(*checked, stream=False)
        if isinstance(answer, bhttp.Response):
            return answer
        try:
            content = answer.read_all(consts.MAX_CONTENT_BYTES)
        except TargetTimeout:
            log.info("gateway event=target_timeout")
            return problem_response(504, "Target timed out")
        except TargetError:
            log.info("gateway event=target_failed")
            return problem_response(502, "Target response failed or too large")
        return bhttp.Response(answer.status, response_headers(answer.headers), content)

    def _chunked(body: bytes) -> Response:
        opener = ChunkedRequestOpener(keys.lookup)
        try:
            inner = b"".join(opener.feed(body)) + opener.close()
        except (DecodeError, KeyConfigError, DecryptError) as exc:
            raise _outer_problem(exc) from None
        assert opener.header is not None
        _check_replay(opener.header, opener.enc)
        sealer = opener.response_sealer()
        log.info("gateway event=chunked_request")
        return Response(_stream_chunked(inner, sealer),
                        mimetype=consts.MEDIA_TYPE_CHUNKED_RESPONSE)

    def _stream_chunked(inner: bytes, sealer: ChunkedResponseSealer) -> Iterator[bytes]:
        """Seal the target's response chunk by chunk as it arrives (indeterminate-length)."""
        yield sealer.prefix()
        checked = _preflight(inner)
        answer = checked if isinstance(checked, bhttp.Response) else _send(*checked)
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
            return  # no final chunk: the client sees a truncated (failed) response
        finally:
            answer.close()
        yield sealer.seal(bhttp.encode_indeterminate_tail(), final=True)

    app.wsgi_app = _FastGateway(  # type: ignore[method-assign]
        app.wsgi_app, _answer, max_size=max_size,
        relay_secret=str(relay_secret).encode() if relay_secret else None)
    return app


class _FastGateway:
    """The hot route without Flask's request and response objects: ``POST /gateway`` with
    ``message/ohttp-req`` and a known length. The same ``_answer`` as the Flask view does the
    work (same checks, errors and logs); everything else falls through to the Flask app.
    Profiled: Flask's per-request machinery was about a quarter of the gateway's CPU.
    """

    def __init__(self, flask_app: WSGIApplication, answer: Callable[[bytes], bytes], *,
                 max_size: int, relay_secret: bytes | None) -> None:
        self.flask_app = flask_app
        self.answer = answer
        self.max_size = max_size
        self.relay_secret = relay_secret

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if environ.get("PATH_INFO") != "/gateway" or environ.get("REQUEST_METHOD") != "POST":
            return self.flask_app(environ, start_response)
        media = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            length = -1
        offered = environ.get(_RELAY_SECRET_ENVIRON, "").encode()
        if (media != consts.MEDIA_TYPE_REQUEST or length < 0 or length > self.max_size
                or (self.relay_secret is not None
                    and not hmac.compare_digest(offered, self.relay_secret))):
            return self.flask_app(environ, start_response)  # refused or streamed there
        try:
            body = environ["wsgi.input"].read(length) if length else b""
            if len(body) != length:
                raise ProblemError(400, "Bad Request", detail="request body truncated")
            sealed = self.answer(body)
        except ProblemError as err:
            return err.response()(environ, start_response)
        except Exception as err:  # as the Flask app's problem handler: class name only
            log.error("unhandled error class=%s", type(err).__name__)
            return problem(500, "Internal Server Error")(environ, start_response)
        start_response("200 OK", [("Content-Type", consts.MEDIA_TYPE_RESPONSE),
                                  ("Content-Length", str(len(sealed)))])
        return [sealed]


_RELAY_SECRET_ENVIRON = "HTTP_" + consts.RELAY_SECRET_HEADER.upper().replace("-", "_")


def _check_relay(secret: object) -> None:
    if not secret:
        return
    offered = request.headers.get(consts.RELAY_SECRET_HEADER, "")
    if not hmac.compare_digest(offered.encode(), str(secret).encode()):
        log.info("gateway event=relay_unauthenticated")
        raise ProblemError(403, "Forbidden", detail="requests must come through the relay")


def _read_body(max_size: int) -> bytes:
    length = request.content_length
    if length is not None and length > max_size:
        log.info("gateway event=too_large")
        raise ProblemError(413, "Content Too Large")
    body = request.stream.read(max_size + 1)
    if len(body) > max_size:
        log.info("gateway event=too_large")
        raise ProblemError(413, "Content Too Large")
    return body


def _outer_problem(exc: Exception) -> ProblemError:
    if isinstance(exc, (UnknownKeyId, KeyConfigError)):
        log.info("gateway event=key_problem")
        return ProblemError(400, "Key configuration not recognised",
                            type_=consts.PROBLEM_OHTTP_KEY)
    if isinstance(exc, LimitExceeded):
        log.info("gateway event=too_large")
        return ProblemError(413, "Content Too Large")
    if isinstance(exc, DecryptError):
        log.info("gateway event=decrypt_failed")
        return ProblemError(400, "Bad Request", detail="request could not be decrypted")
    log.info("gateway event=malformed")
    return ProblemError(400, "Bad Request", detail="malformed encapsulated request")

