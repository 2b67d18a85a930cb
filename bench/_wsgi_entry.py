"""Bench-only: the WSGI app named by ``BENCH_WSGI_FACTORY`` for servers that load an import
path (granian, gunicorn), so every stack in ``bench serving`` serves the same app."""

from __future__ import annotations

import os
from typing import Any

from service_kit.serving import load_factory


def app(*_args: Any) -> Any:
    return load_factory(os.environ["BENCH_WSGI_FACTORY"])({})
