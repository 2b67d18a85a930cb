"""Fixtures of the key-transparency tests: the real delivery server in this process on SQLite
or PostgreSQL, reached through a transport that a test can switch to another server or use to
alter answers (the malicious server of the simulations)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from e2ee_core.server.app import create_app, service_of
from e2ee_core.server.transparency import KeyTransparency
from tests.server.support import FAST_ARGON2, WSGIAdapter

URL = "http://e2ee.test"

Tamper = Callable[[requests.PreparedRequest, Any], Any]


class MaliciousAdapter(WSGIAdapter):
    """The real app behind a transport that may rewrite its JSON answers (``tamper(request,
    body) -> body``) or replace them with recorded ones: what a server controlled by an
    attacker can do."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.tamper: Tamper | None = None
        self.recorded: list[tuple[str, bytes]] = []
        self.replay: bytes | None = None

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        response = super().send(request, stream, timeout, verify, cert, proxies)
        self.recorded.append((request.path_url, response.content))
        if self.replay is not None and request.method == "GET" \
                and request.path_url.startswith("/v1/keys/"):
            response._content = self.replay
        elif self.tamper is not None and response.headers.get(
                "Content-Type", "").startswith("application/json"):
            body = self.tamper(request, json.loads(response.content))
            response._content = json.dumps(body).encode()
        return response


@dataclass
class Server:
    """One delivery server app in this process and the session that reaches it."""

    app: Any
    db: str
    adapter: MaliciousAdapter
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def kt(self) -> KeyTransparency:
        kt: KeyTransparency = self.app.extensions["e2ee_transparency"]
        return kt

    @property
    def store(self) -> Any:
        return service_of(self.app).store


def make_server(db: str, **settings: Any) -> Server:
    """The app on ``db``. Its epoch timer is slowed to an hour unless ``kt_epoch_seconds`` is
    given: the tests publish epochs themselves, and no background epoch may slip in between."""
    app = create_app({"db": db, **FAST_ARGON2, "kt_epoch_seconds": 3600, **settings})
    adapter = MaliciousAdapter(app)
    session = requests.Session()
    session.mount(URL, adapter)
    return Server(app, db, adapter, session)


@pytest.fixture
def server(db_url: str) -> Server:
    return make_server(db_url)
