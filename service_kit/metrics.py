"""Prometheus metrics for every service (the maintained ``prometheus-client``).

What is shared lives here: the request latency of every Flask service by route template
(:func:`instrument`, installed by :func:`service_kit.serving.build_asgi`), the helpers that turn
a value into a label from a fixed enumeration, and the exposition endpoint (:class:`Exposition`)
that :func:`service_kit.serving.serve` starts on its own address (``--metrics-listen``), never
on the service's public port. Each package names its own events in its ``metrics.py``.

Metrics name events and counts, never contents: label values come only from fixed
enumerations in code (route templates, status codes, refusal reasons), never from a request
(not its path, method string, query, token, account or address). docs/metrics.md lists them.

Several workers (``serve --workers N``, separate processes) share one endpoint through the
client's multiprocess mode: every worker writes its values to memory-mapped files in a
per-service directory (created 0700 and emptied at start; a temporary one unless the operator
names one), the supervisor process serves their sum, and it calls ``mark_process_dead`` for each
worker that exits, so the gauges of a killed worker stop counting.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Collection
from typing import Any, Final

from flask import Flask, Response, request
from prometheus_client import REGISTRY, CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as prometheus_multiprocess

from service_kit.errors import ConfigError

log = logging.getLogger("service_kit.metrics")

#: The environment variable the client reads (at import) to switch to multiprocess mode.
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

#: HTTP methods kept as label values; any other method string is counted as ``other``.
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: The route label of a request that matched no route (404, 405): never the raw path.
UNMATCHED: Final = "unmatched"
OTHER: Final = "other"

REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from the request reaching the application to its response head, by route template",
    ["app", "route", "method", "status"],
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "Requests the application is working on (its queue depth)",
    ["app"],
    multiprocess_mode="livesum",
)

_STARTED = "service_kit.metrics.started"
_OBSERVED = "service_kit.metrics.observed"


def one_of(value: str, allowed: Collection[str], default: str = OTHER) -> str:
    """``value`` when it is one of ``allowed``, else ``default``: a label from a fixed set."""
    return value if value in allowed else default


def status_class(status: int) -> str:
    """``2xx`` ... ``5xx`` for a status another party chose (a target, a gateway)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def _observe(app_name: str, status: int) -> None:
    environ = request.environ
    started = environ.get(_STARTED)
    if started is None or environ.get(_OBSERVED):
        return
    environ[_OBSERVED] = True
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    REQUEST_SECONDS.labels(app_name, route, one_of(request.method, METHODS),
                           str(status)).observe(time.perf_counter() - started)


def instrument(app: Flask) -> None:
    """Count ``app``'s requests in progress and their latency by route template and status."""
    if app.extensions.get("service_kit.metrics"):
        return
    app.extensions["service_kit.metrics"] = True
    name = app.import_name

    def started() -> None:
        request.environ[_STARTED] = time.perf_counter()
        IN_PROGRESS.labels(name).inc()

    def observed(response: Response) -> Response:
        _observe(name, response.status_code)
        return response

    def finished(error: BaseException | None) -> None:
        if request.environ.get(_STARTED) is None:
            return
        _observe(name, 500)  # only when no response was made (an unhandled error)
        IN_PROGRESS.labels(name).dec()

    # First in line, so a refusal by another before_request hook is still measured.
    app.before_request_funcs.setdefault(None, []).insert(0, started)
    app.after_request(observed)
    app.teardown_request(finished)


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) of the metrics endpoint; ConfigError if not."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()):
        raise ConfigError("the metrics address must be HOST:PORT, e.g. 127.0.0.1:9101")
    number = int(port)
    if not 0 < number < 65536:
        raise ConfigError("the metrics port must be in 1..65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError("the metrics host must be an IP address or localhost") from None
    return host, number


def _listen_argument(value: str) -> str:
    try:
        parse_listen(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metrics-listen`` and ``--metrics-dir`` on a ``serve`` command."""
    parser.add_argument(
        "--metrics-listen", type=_listen_argument, default=None, metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, apart from the public port "
             "(default: off; keep it on loopback or a private network, see docs/metrics.md)")
    parser.add_argument(
        "--metrics-dir", default=None, metavar="DIR",
        help="with several workers: the directory of their metric files, created 0700 and "
             "emptied at start (default: a temporary directory, removed at exit)")


def _prepare_directory(directory: str) -> None:
    """Create ``directory`` 0700 (or check an existing one is ours) and empty it of values."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ConfigError("the metrics directory must be a directory owned by this user")
    os.chmod(directory, 0o700)
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


class Exposition:
    """The metrics endpoint of one served service (see the module docstring).

    With one worker the endpoint serves the process's own registry; with several it sets
    :data:`MULTIPROC_ENV` for the workers (before they start) and serves the sum of their files.
    """

    def __init__(self, listen: str, *, workers: int, directory: str | None = None) -> None:
        self.host, self.port = parse_listen(listen)
        self.workers = workers
        self.directory = directory
        self._temporary = False
        self._server: Any = None

    def start(self) -> None:
        registry: CollectorRegistry = REGISTRY
        if self.workers > 1:
            if self.directory is None:
                self.directory = tempfile.mkdtemp(prefix="service-metrics-")  # 0700
                self._temporary = True
            else:
                _prepare_directory(self.directory)
            os.environ[MULTIPROC_ENV] = self.directory
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                registry, path=self.directory)
        # One worker: the process's own registry. MULTIPROC_ENV is left as it is: the client
        # read it at import, and its values look it up again when they are created.
        try:
            self._server, _thread = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            self.close()
            raise ConfigError(f"cannot listen for metrics on port {self.port}: "
                              f"{exc.strerror}") from None
        log.info("metrics endpoint started port=%d", self.port)

    def worker_exited(self, pid: int) -> None:
        """Drop the live gauges of a worker that exited (killed or restarted)."""
        if self.directory is not None and self.workers > 1:
            prometheus_multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
                pid, self.directory)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
            self._temporary = False
