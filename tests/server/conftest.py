"""Fixtures of the delivery-server tests: a database URL per engine."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh SQLite file, or the module's PostgreSQL database (names are unique per test)."""
    if request.param == "sqlite":
        return str(tmp_path / "server.db")
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn
