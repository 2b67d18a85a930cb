"""Short fault tests (issue #14): a sticker service killed with SIGKILL and a PostgreSQL
connection cut under it; no token is ever accepted twice, no answer is a 500, and the service
recovers by itself. (``python -m bench faults`` runs the long version under load.)"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from credentials.client import IssuerClient
from credentials.issuer_service import create_app as create_issuer
from credentials.issuer_store import IssuerStore
from sticker_search.service import create_app as create_sticker
from tests.support import LiveServer

Start = Callable[..., LiveServer]


def _issuer(live_server: Start, tmp_path: Path) -> tuple[LiveServer, str]:
    db = str(tmp_path / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    return live_server(create_issuer, db=db, issuer_name="issuer.test"), store.add_account("a")


def _search(sticker: LiveServer, authorization: str | None = None) -> requests.Response:
    headers = {"Authorization": authorization} if authorization else {}
    return requests.get(sticker.url + "/v1/search?q=cat", headers=headers, timeout=30)


def _tokens(issuer: LiveServer, credential: str, sticker: LiveServer, n: int) -> list[str]:
    challenge = _search(sticker).headers["WWW-Authenticate"]
    client = IssuerClient(issuer.url, credential, batch_size=n)
    return [client.authorization_for(challenge) for _ in range(n)]


def test_spent_tokens_survive_a_killed_service(live_server: Start, tmp_path: Path) -> None:
    issuer, credential = _issuer(live_server, tmp_path)
    spent = str(tmp_path / "spent.db")
    first = live_server(create_sticker, issuer_url=issuer.url, spent_db=spent)
    tokens = _tokens(issuer, credential, first, 4)
    assert [_search(first, t).status_code for t in tokens] == [200] * 4
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=10)
    second = live_server(create_sticker, issuer_url=issuer.url, spent_db=spent)
    assert [_search(second, t).status_code for t in tokens] == [401] * 4


def test_a_lost_database_connection_is_a_503_then_recovers(
        live_server: Start, tmp_path: Path, pg_dsn: str) -> None:
    import psycopg

    issuer, credential = _issuer(live_server, tmp_path)
    # One application thread: one connection, so "the next request" reuses the one cut.
    sticker = live_server(create_sticker, _threads=1, issuer_url=issuer.url, spent_db=pg_dsn)
    tokens = _tokens(issuer, credential, sticker, 4)
    assert _search(sticker, tokens[0]).status_code == 200
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        cut: Any = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    assert cut[0] >= 1
    during = _search(sticker, tokens[1])
    assert during.status_code in (200, 503), during.status_code
    if during.status_code == 503:
        assert during.headers["Retry-After"] == "1"
        assert during.headers["Content-Type"] == "application/problem+json"
    assert _search(sticker, tokens[2]).status_code == 200  # reconnected by itself
    assert _search(sticker, tokens[0]).status_code == 401  # still spent
