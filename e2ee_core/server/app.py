"""The delivery server's HTTP adapter: ``create_app(config)`` for service_kit.serving.

Only HTTP lives here (routes, media types, body limits, auth header, problem responses); the
behaviour is :class:`~e2ee_core.server.service.DeliveryService` and the rows are in
:class:`~e2ee_core.server.store.SqlStore`.

Config keys: ``db`` (required: SQLite path, ``postgresql://`` DSN, or ``memory:`` for the
in-memory store of a single in-process app), every field of
:class:`~e2ee_core.server.service.Settings` (limits and timings), and ``clock`` (in-process
only: a callable returning seconds, for tests that move time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from e2ee_core.server import consts
from e2ee_core.server.errors import (
    AuthenticationFailed,
    ConfigurationError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    UnsupportedMediaType,
    problem_extras,
)
from e2ee_core.server.http_json import json_response, read_json
from e2ee_core.server.longpoll import LongPoll
from e2ee_core.server.memstore import MemoryStore
from e2ee_core.server.push import PushChannel
from e2ee_core.server.service import DeliveryService, Settings
from e2ee_core.server.store import SqlStore, Store
from e2ee_core.server.transparency import install_transparency, lookup_stamp
from e2ee_core.server.wakeups import PgListener
from e2ee_core.server.wire import (
    AccountRequest,
    AckRequest,
    DeviceAddress,
    MultiSendRequest,
    PreKeyUpload,
    SendRequest,
    bearer_credential,
    decode_device_id,
    decode_username,
)
from service_kit.database import Database, is_postgres_url
from service_kit.problem import install_problem_handlers, problem
from service_kit.serving import HTTP_ROUTES_EXTENSION, WEBSOCKETS_EXTENSION, worker_count

# ``db`` value selecting the in-memory store: one process only, nothing survives a restart.
MEMORY_DB = consts.MEMORY_DB

_WAIT_RE = re.compile(r"\d{1,3}(\.\d{1,3})?")


def _error_response(err: ServerError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(err, AuthenticationFailed):
        headers["WWW-Authenticate"] = 'Bearer realm="e2ee"'
    if isinstance(err, RateLimited):
        headers["Retry-After"] = str(err.retry_after)
    return problem(err.status, err.title, type_=err.problem_type(), detail=err.detail,
                   headers=headers, **problem_extras(err))


def create_app(config: Mapping[str, Any]) -> Flask:
    """Build the delivery server for ``config`` (see the module docstring for the keys)."""
    unknown = set(config) - {"db", "clock"} - Settings.keys()
    if unknown:
        raise ConfigurationError("config has unknown keys: " + ", ".join(sorted(unknown)))
    db_url = config.get("db")
    if not isinstance(db_url, str) or not db_url:
        raise ConfigurationError("config needs 'db': a SQLite path or a postgresql:// DSN")
    settings = Settings.from_mapping(config)
    clock = config.get("clock")
    store: Store
    if db_url == MEMORY_DB:
        store = MemoryStore(max_devices=settings.max_devices,
                            max_stored_prekeys=settings.max_stored_prekeys)
    else:
        store = SqlStore(Database(db_url), max_devices=settings.max_devices,
                         max_stored_prekeys=settings.max_stored_prekeys)
    service = (DeliveryService(store, settings, clock) if callable(clock)
               else DeliveryService(store, settings))
    listener: PgListener | None = None
    if db_url != MEMORY_DB and is_postgres_url(db_url):
        # Sends handled by other processes or hosts wake this process's push connections.
        listener = PgListener(db_url, service.push)
        listener.start()

    app = Flask("e2ee_core.server")
    app.config["MAX_CONTENT_LENGTH"] = max(settings.max_attachment_bytes,
                                           consts.MAX_JSON_BODY_BYTES)
    app.extensions["e2ee_delivery"] = service
    app.extensions["e2ee_wakeups"] = listener
    # The push channel: a WebSocket per online device, on the event loop (service_kit.serving).
    # Several workers on SQLite cannot wake each other: their push connections re-check.
    poll = (settings.poll_interval_seconds * 10
            if listener is None and db_url != MEMORY_DB and worker_count() > 1 else None)
    app.extensions[WEBSOCKETS_EXTENSION] = {"/v1/websocket": PushChannel(service,
                                                                         poll_seconds=poll)}
    # GET /v1/messages?wait= waits on the event loop, then this app answers (longpoll.py).
    app.extensions[HTTP_ROUTES_EXTENSION] = {
        "/v1/messages": lambda http: LongPoll(service, http, poll_seconds=poll)}
    install_problem_handlers(app)
    install_transparency(app, service)  # key transparency: /v1/kt/ and device publishing
    from e2ee_core.server.labyrinth_api import install as install_labyrinth
    install_labyrinth(app, service, db_url)  # /v1/labyrinth: the encrypted mailbox (#15)

    @app.errorhandler(ServerError)
    def _server_error(err: ServerError) -> Response:
        return _error_response(err)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_err: RequestEntityTooLarge) -> Response:
        return _error_response(PayloadTooLarge())

    def actor() -> DeviceAddress:
        return service.authenticate(bearer_credential(request.headers.get("Authorization", "")))

    # -- accounts and devices -------------------------------------------------------------------
    @app.get("/v1/health")
    def health() -> Response:
        return json_response({"status": "ok"})

    @app.post("/v1/accounts")
    def register() -> Response:
        req = AccountRequest.from_json(read_json())
        return json_response(service.register(req).to_json(), 201)

    @app.post("/v1/devices")
    def add_device() -> Response:
        req = AccountRequest.from_json(read_json())
        return json_response(service.add_device(req, request.remote_addr or "").to_json(), 201)

    @app.get("/v1/devices/<username>")
    def list_devices(username: str) -> Response:
        actor()
        name = decode_username(username)
        devices = service.list_devices(name)
        return json_response({"username": name, "devices": [d.to_json() for d in devices],
                      **lookup_stamp(service, name)})

    @app.delete("/v1/devices/<int:device_id>")
    def remove_device(device_id: int) -> Response:
        who = actor()
        service.remove_device(who, decode_device_id(device_id))
        return Response(status=204)

    # -- keys -----------------------------------------------------------------------------------
    @app.put("/v1/keys")
    def upload_keys() -> Response:
        who = actor()
        service.upload_prekeys(who, PreKeyUpload.from_json(read_json()))
        return Response(status=204)

    @app.get("/v1/keys/count")
    def key_count() -> Response:
        return json_response(service.prekey_count(actor()).to_json())

    @app.get("/v1/keys/<username>")
    @app.get("/v1/keys/<username>/<int:device_id>")
    def bundles(username: str, device_id: int | None = None) -> Response:
        who = actor()
        name = decode_username(username)
        dev = None if device_id is None else decode_device_id(device_id)
        found = service.bundles(who, name, dev)  # then the proof: it covers what was found
        return json_response({"bundles": [b.to_json() for b in found],
                              **lookup_stamp(service, name)})

    # -- envelopes ------------------------------------------------------------------------------
    @app.post("/v1/messages")
    def send() -> Response:
        who = actor()
        accepted = service.send(who, SendRequest.from_json(read_json()))
        return json_response({"accepted": accepted})

    @app.post("/v1/messages/multi")
    def send_multi() -> Response:
        who = actor()
        accepted = service.send_multi(who, MultiSendRequest.from_json(read_json()))
        return json_response({"accepted": accepted})

    @app.get("/v1/messages")
    def receive() -> Response:
        who = actor()
        raw_wait = request.args.get("wait", "0")
        if not _WAIT_RE.fullmatch(raw_wait):
            raise InvalidRequest("wait must be a number of seconds")
        wait = float(raw_wait)
        if wait > settings.long_poll_max_seconds:
            raise InvalidRequest("wait is longer than the server allows")
        envelopes, more = service.receive(who, wait)
        return json_response({"envelopes": [e.to_json() for e in envelopes], "more": more,
                      "prekeys_low": service.prekeys_low(who)})

    @app.post("/v1/messages/ack")
    def acknowledge() -> Response:
        who = actor()
        ack = AckRequest.from_json(read_json())
        deleted = service.acknowledge(who, ack.ids, ack.refused)
        return json_response({"deleted": deleted})

    # -- attachments ----------------------------------------------------------------------------
    @app.post("/v1/attachments")
    def upload_attachment() -> Response:
        who = actor()
        if request.mimetype != "application/octet-stream":
            raise UnsupportedMediaType()
        if (request.content_length or 0) > settings.max_attachment_bytes:
            raise PayloadTooLarge()
        data = request.get_data(cache=False)
        attachment_id, expires = service.put_attachment(who, data)
        return json_response({"id": attachment_id, "size": len(data),
                              "expires_at_ms": expires}, 201)

    @app.get("/v1/attachments/<attachment_id>")
    def download_attachment(attachment_id: str) -> Response:
        actor()
        return Response(service.get_attachment(attachment_id),
                        mimetype="application/octet-stream")

    return app


def service_of(app: Flask) -> DeliveryService:
    """The :class:`DeliveryService` behind an app built by :func:`create_app`."""
    service: DeliveryService = app.extensions["e2ee_delivery"]
    return service
