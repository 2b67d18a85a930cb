"""Run a Flask application factory on uvicorn (never the Flask development server).

The stack, from the socket up (chosen by measurement: docs/BENCHMARKS.md, "Serving stack"):

1. **uvicorn** on **uvloop**: an event loop owns every connection, so idle, slow or half-sent
   requests cost memory (a few KiB each), never a thread;
2. **llhttp** (``httptools``) parses HTTP/1.1, strict by default, with our limits and timeouts
   added through its callbacks (:mod:`service_kit.http_protocol`);
3. :class:`service_kit.asgi_guard.BufferedBody` reads the body on the event loop within the
   service's body limit (Flask's ``MAX_CONTENT_LENGTH``, else
   :data:`~service_kit.consts.DEFAULT_MAX_BODY`);
4. **a2wsgi** runs the Flask (WSGI) application on a pool of ``threads`` threads, which only
   ever see complete requests.

Every console script's ``serve`` command, ``stack up``, the demo, the benchmarks and the test
suite's ``live_server`` fixture go through :func:`serve`. The factory is named by import path
(``package.module:create_app``) and receives one JSON-serialisable config mapping, so each worker
process builds its own app (and its own database connections). With ``workers > 1`` uvicorn's
supervisor starts them, restarts any that dies and stops them all on SIGTERM.

What the stack does not do: TLS termination and HTTP/2 (put the services behind a front proxy
for those, see the README's deployment note), and per-client connection limits (an operator's
front proxy or firewall sets them).
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import uvicorn
from a2wsgi import WSGIMiddleware
from flask import Flask
from uvicorn.supervisors import Multiprocess

from service_kit import consts, logging_filter, metrics
from service_kit.asgi_guard import ASGIApp, BufferedBody, PrereadInput
from service_kit.errors import ConfigError
from service_kit.http_protocol import GuardedHttpToolsProtocol, HeadLimits

CONFIG_ENV = "E2EE_SERVICE_CONFIG"
#: Set by :func:`serve` for its worker processes: how many there are (see :func:`worker_count`).
WORKERS_ENV = "SERVICE_KIT_WORKERS"
#: Optional JSON of :class:`HeadLimits` fields for :func:`main` (tests shorten the timeouts).
LIMITS_ENV = "E2EE_SERVICE_LIMITS"
#: Optional ``HOST:PORT`` of the metrics endpoint for :func:`main` (see service_kit.metrics).
METRICS_ENV = "E2EE_SERVICE_METRICS"


def worker_count() -> int:
    """How many worker processes serve this service (1 outside :func:`serve`): a service whose
    store cannot signal other processes (SQLite) adapts when there are several."""
    raw = os.environ.get(WORKERS_ENV, "1")
    return int(raw) if raw.isdigit() and int(raw) > 0 else 1


def factory_path(factory: Callable[..., Any]) -> str:
    """The ``module:qualname`` import path of an app factory."""
    return f"{factory.__module__}:{factory.__qualname__}"


def load_factory(path: str) -> Callable[[Mapping[str, Any]], Any]:
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{path} is not callable")
    return obj  # type: ignore[no-any-return]


def body_limit(wsgi_app: Any) -> int:
    """The service's own request-body limit: Flask's ``MAX_CONTENT_LENGTH`` when it sets one."""
    config = getattr(wsgi_app, "config", None)
    limit = config.get("MAX_CONTENT_LENGTH") if isinstance(config, Mapping) else None
    return int(limit) if limit else consts.DEFAULT_MAX_BODY


#: Flask ``app.extensions`` key under which a service lists its WebSocket endpoints: a mapping
#: of path to an ASGI application for ``websocket`` scopes (served natively on the event loop,
#: not through a2wsgi: a connection holds no thread).
WEBSOCKETS_EXTENSION = "service_kit.websockets"
#: Flask ``app.extensions`` key under which a service lists HTTP endpoints served in front of
#: the WSGI stack: a mapping of path to a function that takes the HTTP stack (an ASGI app) and
#: returns the endpoint's ASGI app (e.g. a long-poll that waits on the event loop, then hands
#: the request to the Flask app).
HTTP_ROUTES_EXTENSION = "service_kit.http_routes"


def build_asgi(factory: str, config: Mapping[str, Any], threads: int) -> ASGIApp:
    """One worker's application: ``factory(config)`` behind the body guard and a2wsgi, and the
    service's WebSocket endpoints, if it has any."""
    logging_filter.install()
    wsgi_app = load_factory(factory)(config)
    if isinstance(wsgi_app, Flask):
        metrics.instrument(wsgi_app)  # request latency by route template
    adapter = WSGIMiddleware(PrereadInput(wsgi_app), workers=threads)  # type: ignore[arg-type]
    http = BufferedBody(adapter, max_body=body_limit(wsgi_app))  # type: ignore[arg-type]
    extensions = getattr(wsgi_app, "extensions", None)
    ext: Mapping[str, Any] = extensions if isinstance(extensions, Mapping) else {}
    sockets = ext.get(WEBSOCKETS_EXTENSION) or {}
    routes = {path: wrap(http) for path, wrap in (ext.get(HTTP_ROUTES_EXTENSION) or {}).items()}
    return Router(http, dict(sockets), routes)


class Router:
    """HTTP to the WSGI stack (or to the endpoint a service put in front of it for that path);
    a WebSocket handshake to its endpoint, or refused (403) when the path has none."""

    def __init__(self, http: ASGIApp, sockets: Mapping[str, ASGIApp],
                 routes: Mapping[str, ASGIApp] | None = None) -> None:
        self.http = http
        self.sockets = dict(sockets)
        self.routes = dict(routes or {})

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            endpoint = self.sockets.get(scope.get("path", ""))
            if endpoint is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await endpoint(scope, receive, send)
            return
        await self.routes.get(scope.get("path", ""), self.http)(scope, receive, send)


def uvicorn_config(factory: str, config: Mapping[str, Any], *, host: str, port: int,
                   workers: int, threads: int, keepalive: int,
                   limits: HeadLimits) -> uvicorn.Config:
    """The uvicorn settings every service runs with (see the module docstring)."""
    if workers < 1 or threads < 1:
        raise ConfigError("workers and threads must be at least 1")
    return uvicorn.Config(
        app=functools.partial(build_asgi, factory, dict(config), threads),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        # uvicorn builds each connection's protocol by calling this (a class or a factory).
        http=functools.partial(GuardedHttpToolsProtocol, limits=limits),  # type: ignore[arg-type]
        # WebSocket frames by the maintained `websockets` library (sans-I/O), on the loop.
        ws="websockets-sansio",
        ws_max_size=consts.WEBSOCKET_MAX_MESSAGE,
        # No permessage-deflate: what a push channel carries is ciphertext (incompressible),
        # and compressing attacker-chosen bytes next to secrets invites CRIME-style length
        # leaks; it cost 7% of the server's CPU under load for nothing.
        ws_per_message_deflate=False,
        lifespan="off",
        interface="asgi3",
        log_config=None,  # our handlers and the redaction filter (logging_filter.install)
        access_log=False,  # access lines would carry addresses and query strings
        server_header=False,
        proxy_headers=False,  # never trust X-Forwarded-* (the relay rate-limits by address)
        timeout_keep_alive=keepalive,
        timeout_graceful_shutdown=consts.GRACEFUL_TIMEOUT,
        backlog=2048,
    )


def serve(
    factory: str,
    config: Mapping[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    threads: int = consts.DEFAULT_THREADS,
    keepalive: int = consts.KEEPALIVE_TIMEOUT,
    limits: HeadLimits | None = None,
    metrics_listen: str | None = None,
    metrics_dir: str | None = None,
) -> None:
    """Serve ``factory(config)`` until SIGTERM/SIGINT (graceful for
    :data:`~service_kit.consts.GRACEFUL_TIMEOUT` seconds).

    ``metrics_listen`` (``HOST:PORT``): serve Prometheus metrics there, apart from the public
    port (off by default); ``metrics_dir``: the workers' metric files when there are several
    (default: a temporary 0700 directory). See :mod:`service_kit.metrics`."""
    logging_filter.install()
    os.environ[WORKERS_ENV] = str(workers)  # the workers inherit it (see worker_count)
    cfg = uvicorn_config(factory, config, host=host, port=port, workers=workers,
                         threads=threads, keepalive=keepalive, limits=limits or HeadLimits())
    exposition = (metrics.Exposition(metrics_listen, workers=workers, directory=metrics_dir)
                  if metrics_listen else None)
    if exposition is not None:
        exposition.start()  # before the workers start: they inherit its environment
    try:
        if workers == 1:
            uvicorn.Server(cfg).run()
            return
        sock = cfg.bind_socket()
        Supervisor(cfg, sockets=[sock],
                   on_exit=exposition.worker_exited if exposition else None).run()
    finally:
        if exposition is not None:
            exposition.close()


class Supervisor(Multiprocess):
    """uvicorn's worker supervisor, also telling ``on_exit`` the id of each worker that is gone
    (killed, crashed, or replaced on SIGHUP): the metrics drop its live gauges."""

    def __init__(self, config: uvicorn.Config, sockets: list[Any], *,
                 on_exit: Callable[[int], None] | None = None) -> None:
        super().__init__(config, sockets)
        self.on_exit = on_exit
        self._known: set[int] = set()

    def keep_subprocess_alive(self) -> None:
        # The workers as they are before uvicorn replaces the dead ones (a worker killed before
        # the first call, 0.5 s after start, is in no earlier set: take it from here).
        before = {p.pid for p in self.processes if p.pid is not None}
        super().keep_subprocess_alive()  # called every 0.5 s, after signals were handled
        current = {p.pid for p in self.processes if p.pid is not None}
        if self.on_exit is not None:
            for pid in (self._known | before) - current:
                self.on_exit(pid)
        self._known = current


def main(argv: list[str] | None = None) -> None:
    """``python -m service_kit.serving FACTORY HOST PORT [WORKERS [THREADS [KEEPALIVE]]]``.

    The config mapping comes as JSON in the ``E2EE_SERVICE_CONFIG`` environment variable, and
    optionally the limits in ``E2EE_SERVICE_LIMITS`` (the test suite's and the benchmarks' way to
    start a service) and the metrics address in ``E2EE_SERVICE_METRICS``; all are removed from
    the environment before the service starts.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4, 5, 6):
        raise SystemExit("usage: python -m service_kit.serving FACTORY HOST PORT"
                         " [WORKERS [THREADS [KEEPALIVE]]]")
    config = json.loads(os.environ.pop(CONFIG_ENV, "{}"))
    limits = HeadLimits(**json.loads(os.environ.pop(LIMITS_ENV, "{}")))
    workers = int(args[3]) if len(args) >= 4 else 1
    threads = int(args[4]) if len(args) >= 5 else consts.DEFAULT_THREADS
    keepalive = int(args[5]) if len(args) >= 6 else consts.KEEPALIVE_TIMEOUT
    serve(args[0], config, host=args[1], port=int(args[2]), workers=workers, threads=threads,
          keepalive=keepalive, limits=limits, metrics_listen=os.environ.pop(METRICS_ENV, None))


if __name__ == "__main__":
    main()
