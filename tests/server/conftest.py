"""Fixtures of the delivery-server tests: a database URL per engine, and `e2ee-server serve`
processes (the real server stack) that are always stopped, even when start-up fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.server.support import ServerProcess, start_server_process


@pytest.fixture
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        Callable[..., ServerProcess]]:
    """``server_process(db, workers=3, **settings)``: a running server, stopped afterwards."""
    started: list[ServerProcess] = []
    work_dir = tmp_path_factory.mktemp("e2ee-server")

    def start(db: str, **kwargs: Any) -> ServerProcess:
        server = start_server_process(db, work_dir, **kwargs)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
