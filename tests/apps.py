"""Small real WSGI apps the black-box tests serve on the services' stack."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from service_kit.problem import ProblemError, install_problem_handlers

log = logging.getLogger("tests.echo")


def create_echo_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Echoes what it received (method, path, query, headers, body) as JSON.

    Used as an OHTTP target so tests can inspect exactly which headers reached it.
    """
    app = Flask("echo")
    install_problem_handlers(app)
    prefix = (config or {}).get("greeting", "echo")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "PUT", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    def echo(path: str) -> Response:
        if path == "fail":
            raise ProblemError(422, "Refused on purpose")
        if path == "crash":
            raise RuntimeError("secret-crash-detail")
        log.info("echo request method=%s size=%d", request.method, request.content_length or 0)
        return jsonify(
            greeting=prefix,
            method=request.method,
            path="/" + path,
            query=request.query_string.decode(),
            headers={k.lower(): v for k, v in request.headers.items()},
            remote_addr=request.remote_addr,
            body=request.get_data().hex(),
        )

    return app


def create_worker_probe_app(config: Mapping[str, Any] | None = None) -> Any:
    """A bare WSGI app for the serving tests: ``/sleep?s=SECONDS`` answers after that
    long, anything else answers ``<path> <request number in this process>``."""
    import itertools
    import time

    counter = itertools.count(1)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        environ["wsgi.input"].read()
        path = environ.get("PATH_INFO", "/")
        if path == "/sleep":
            time.sleep(float(environ.get("QUERY_STRING", "s=0").partition("=")[2] or 0))
        body = f"{path} {next(counter)}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


#: Environ keys left out of the JSON answer (objects, or values that differ per connection).
ENVIRON_COMPARED_SKIP = frozenset({"wsgi.input", "wsgi.errors", "wsgi.file_wrapper",
                                   "asgi.scope", "REMOTE_PORT"})


def create_environ_app(config: Mapping[str, Any] | None = None) -> Any:
    """A bare WSGI app for the serving tests. ``/stream`` answers three pieces with no length
    (chunked), ``/empty`` 204, ``/crash`` raises, ``/short`` declares more than it sends,
    ``/unread`` answers without reading the body; anything else answers, as JSON, the environ
    (string values, minus :data:`ENVIRON_COMPARED_SKIP`) and the body it read."""
    import json

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "/")
        if path == "/stream":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return iter([b"one,", b"", b"two,", b"three"])
        if path == "/empty":
            start_response("204 No Content", [("Content-Length", "0")])
            return []
        if path == "/crash":
            raise RuntimeError("secret-crash-detail")
        if path == "/badheader":  # a field that would inject a line if sent as given
            start_response("200 OK", [("X-Note", "a\r\nSet-Cookie: injected=1")])
            return [b"never sent"]
        if path == "/short":
            start_response("200 OK", [("Content-Length", "10")])
            return [b"abc"]
        if path == "/unread":
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
        body = environ["wsgi.input"].read()
        seen = {k: v for k, v in environ.items()
                if k not in ENVIRON_COMPARED_SKIP and isinstance(v, (str, bool, int, tuple))}
        payload = json.dumps({"environ": seen, "body": body.decode("latin-1")},
                             sort_keys=True, default=list).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(payload)))])
        return [payload]

    return app
