"""Run a Flask application factory under gunicorn (never the Flask development server).

Every console script's ``serve`` command and the test suite's ``live_server`` fixture go through
:func:`serve`. The factory is named by import path (``package.module:create_app``) and receives
one JSON-serialisable config mapping, so each gunicorn worker builds its own app (and its own
database connections) after the fork.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from gunicorn.app.base import BaseApplication

from e2ee_core.infra import logging_filter

CONFIG_ENV = "E2EE_SERVICE_CONFIG"
#: The worker class for threaded services (see :mod:`e2ee_core.infra.worker`).
LEAN_WORKER = "e2ee_core.infra.worker.LeanWorker"
#: Its base, without the lean request path (``worker_class`` may name it).
KEEPALIVE_WORKER = "e2ee_core.infra.worker.KeepAliveWorker"


def factory_path(factory: Callable[..., Any]) -> str:
    """The ``module:qualname`` import path of an app factory."""
    return f"{factory.__module__}:{factory.__qualname__}"


def load_factory(path: str) -> Callable[[Mapping[str, Any]], Any]:
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{path} is not callable")
    return obj  # type: ignore[no-any-return]


def _install_filter(_server_or_worker: object) -> None:
    logging_filter.install()


class _GunicornApp(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: str, config: Mapping[str, Any], options: Mapping[str, Any]):
        self._factory = factory
        self._config = dict(config)
        self._options = dict(options)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            if key in self.cfg.settings:  # older gunicorn releases lack some settings
                self.cfg.set(key, value)

    def load(self) -> Any:
        logging_filter.install()
        return load_factory(self._factory)(self._config)


def serve(
    factory: str,
    config: Mapping[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    threads: int = 1,
    timeout: int = 30,
    keepalive: int = 2,
    worker_class: str | None = None,
) -> None:
    """Serve ``factory(config)`` with gunicorn until stopped (SIGTERM/SIGINT).

    With more than one thread the worker is :class:`e2ee_core.infra.worker.LeanWorker`
    (gthread whose handling thread stays with a kept-alive connection and answers requests of
    the common simple shape without gunicorn's per-request machinery; ``worker_class`` names
    another: :data:`KEEPALIVE_WORKER` without the lean path, ``"gthread"`` for gunicorn's
    own); with one thread it is gunicorn's sync worker.
    The access log is off: its default format carries client addresses and query strings.
    Services log their own events instead, through the redaction filter.
    """
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "timeout": timeout,
        "keepalive": keepalive,
        "graceful_timeout": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "on_starting": _install_filter,
        "post_worker_init": _install_filter,
        "proc_name": factory.partition(":")[0],
        # One machine runs several services; they must not fight over one control socket.
        "control_socket_disable": True,
    }
    if worker_class is None and threads > 1:
        worker_class = LEAN_WORKER
    if worker_class is not None:
        options["worker_class"] = worker_class
    logging_filter.install()
    _GunicornApp(factory, config, options).run()


def main(argv: list[str] | None = None) -> None:
    """``python -m e2ee_core.infra.serving FACTORY HOST PORT [WORKERS [THREADS [KEEPALIVE
    [WORKER_CLASS]]]]``.

    The config mapping comes as JSON in the ``E2EE_SERVICE_CONFIG`` environment variable.
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4, 5, 6, 7):
        raise SystemExit("usage: python -m e2ee_core.infra.serving FACTORY HOST PORT"
                         " [WORKERS [THREADS [KEEPALIVE [WORKER_CLASS]]]]")
    config = json.loads(os.environ.get(CONFIG_ENV, "{}"))
    workers = int(args[3]) if len(args) >= 4 else 1
    threads = int(args[4]) if len(args) >= 5 else 1
    keepalive = int(args[5]) if len(args) >= 6 else 2
    worker_class = args[6] if len(args) == 7 else None
    sys.argv = sys.argv[:1]  # gunicorn parses sys.argv; it must not see ours
    serve(args[0], config, host=args[1], port=int(args[2]), workers=workers, threads=threads,
          keepalive=keepalive, worker_class=worker_class)


if __name__ == "__main__":
    main()
