"""Fixtures of the Messenger tests: the delivery server in process (real app and store over a
WSGI transport) or on the service stack (SQLite, or PostgreSQL with ``pg_dsn``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from e2ee_core.server.app import create_app
from tests.server.support import FAST_ARGON2, FakeClock, in_process_session
from tests.support import LiveServer


@dataclass
class InProcess:
    """The real server app in this process: ``url`` + ``session`` reach it without sockets."""

    url: str
    session: requests.Session
    db: str
    clock: FakeClock
    app: Any


@pytest.fixture
def inproc(tmp_path: Path) -> InProcess:
    clock = FakeClock()
    db = str(tmp_path / "server.db")
    app = create_app({"db": db, "clock": clock, **FAST_ARGON2})
    return InProcess("http://e2ee.test", in_process_session(app), db, clock, app)


@pytest.fixture
def stack_server(live_server: Callable[..., LiveServer],
                    tmp_path: Path) -> Callable[..., LiveServer]:
    """``stack_server(db=None, **settings)``: the delivery server on its stack (2 workers,
    4 threads each), on a fresh SQLite file unless ``db`` is given."""

    def start(db: str | None = None, **settings: Any) -> LiveServer:
        return live_server(create_app, _workers=2, _threads=4,
                           db=db or str(tmp_path / "server.db"), **FAST_ARGON2, **settings)

    return start
