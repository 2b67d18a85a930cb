"""Fixtures every test module shares: PostgreSQL, RFC vectors, Node peers, live servers."""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from service_kit import logging_filter
from tests.support import REPO_ROOT, LiveServer, NodePeer, start_live_server

VECTORS_DIR = REPO_ROOT.parent / "shared" / "vectors"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Whatever a test does to logging (a CLI run in-process installs the redaction filter
    and a root handler) is undone after it, so no test sees another's handlers or filters."""
    root = logging.getLogger()
    loggers = [root, *(logging.getLogger(name) for name in logging_filter._SERVICE_LOGGERS)]
    saved = [(lg, lg.level, list(lg.handlers),
              {id(h): list(h.filters) for h in lg.handlers}) for lg in loggers]
    yield
    for lg, level, handlers, filters in saved:
        lg.setLevel(level)
        for handler in list(lg.handlers):
            if handler in handlers:
                handler.filters[:] = filters[id(handler)]
            elif not type(handler).__module__.startswith("_pytest"):
                lg.removeHandler(handler)  # pytest's own come and go with each test phase


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the module's PostgreSQL database (names are unique per test):
    what a server or store test runs on, once each."""
    if request.param == "sqlite":
        return str(tmp_path / "server.db")
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def _require_postgres() -> bool:
    return os.environ.get("REQUIRE_POSTGRES") == "1"


def _with_dbname(dsn: str, dbname: str) -> str:
    base, _, _old = dsn.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(scope="module")
def pg_dsn() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test module; dropped afterwards."""
    dsn = os.environ.get("PG_DSN", DEFAULT_PG_DSN)
    try:
        import psycopg

        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except Exception as exc:  # psycopg missing or server down
        if _require_postgres():
            pytest.fail(f"REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {type(exc).__name__}")
        pytest.skip("PostgreSQL is unreachable (set PG_DSN; CI sets REQUIRE_POSTGRES=1)")
    name = f"t_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_dbname(dsn, name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin2:
            admin2.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def vectors() -> Callable[[str], dict[str, Any]]:
    """``vectors("rfc9458")`` loads ../shared/vectors/rfc9458.json; a missing folder fails."""

    def load(name: str) -> dict[str, Any]:
        path = VECTORS_DIR / f"{name}.json"
        if not path.exists():
            pytest.fail(f"official test vectors missing: {path} (shared/ must sit beside the repo)")
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    return load


@pytest.fixture
def node_peer() -> Iterator[Callable[..., NodePeer]]:
    """``node_peer("script.mjs")`` starts a JSON-lines Node.js peer; all are stopped afterwards."""
    peers: list[NodePeer] = []

    def start(script: str, *args: str) -> NodePeer:
        peer = NodePeer(script, *args)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


@pytest.fixture
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., LiveServer]]:
    """``live_server(create_app, **config)`` runs the factory on the services' server stack on a
    free port."""
    servers: list[LiveServer] = []
    log_dir = tmp_path_factory.mktemp("service-logs")

    def start(
        app_factory: Callable[..., Any] | str, _workers: int = 1, _threads: int = 4,
        _keepalive: int = 2, _limits: Mapping[str, Any] | None = None, **config: Any,
    ) -> LiveServer:
        server = start_live_server(app_factory, config, Path(log_dir), workers=_workers,
                                   threads=_threads, keepalive=_keepalive, limits=_limits)
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()
