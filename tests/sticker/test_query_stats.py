"""Aggregate query counts: one row per normalised query and language, SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from sticker_search.service import QueryStats


def _counts(stats: QueryStats) -> dict[tuple[str, str], int]:
    rows = stats.db.fetchall("SELECT query, lang, searches FROM sticker_query_stats")
    return {(q, lang): int(n) for q, lang, n in rows}


def _exercise(stats: QueryStats) -> None:
    stats.record("Corazón  ROJO", "es")
    stats.record("corazon rojo", "es")
    stats.record("corazon rojo", "")
    assert _counts(stats) == {("corazon rojo", "es"): 2, ("corazon rojo", ""): 1}


def test_sqlite(tmp_path: Path) -> None:
    _exercise(QueryStats(str(tmp_path / "stats.sqlite3")))


@pytest.mark.postgres
def test_postgres(pg_dsn: str) -> None:
    _exercise(QueryStats(pg_dsn))
