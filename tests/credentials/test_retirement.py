"""Key retirement across several origin instances sharing one spent-token store (issue #14).

A token spent at one instance must never be accepted again at another, whatever the directory
says and whatever a client sends: spent records outlive every instance's acceptance of the key.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import requests

from credentials import consts
from credentials.client import IssuerClient
from credentials.errors import StaleChallenge, TokenRejected
from credentials.headers import b64url_encode
from credentials.issuance import IssuerDirectory
from credentials.issuer_service import create_app
from credentials.issuer_store import IssuerStore
from credentials.origin import TokenVerifier
from credentials.spent_store import DatabaseSpentStore, MemorySpentStore


@pytest.fixture
def issuer(tmp_path: Path, live_server: Any) -> Any:
    db = str(tmp_path / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    server = live_server(create_app, db=db, issuer_name="issuer.test", rate_limit=1000,
                         rate_window=3600)
    server.credential = store.add_account("alice")
    server.store = store
    return server


def _instance(issuer: Any, spent_db: str) -> TokenVerifier:
    """One origin instance (its own directory cache) on the shared spent store."""
    return TokenVerifier(issuer_url=issuer.url, origin_info=["stickers.test"], spent_db=spent_db)


def _rotate_and_retire(store: IssuerStore) -> None:
    old = store.list_keys()
    store.generate_key()
    for key in old:
        store.retire_key(key.key_id)


def _with_unknown_key_id(authorization: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(authorization.split("=", 1)[1] + "=="))
    raw[66:98] = b"\x42" * 32  # token_key_id (RFC 9577 §2.2)
    return f"PrivateToken token={b64url_encode(bytes(raw))}"


def test_spent_tokens_stay_spent_after_retirement_across_instances(issuer: Any,
                                                                   tmp_path: Path) -> None:
    spent_db = str(tmp_path / "spent.db")
    first = _instance(issuer, spent_db)
    client = IssuerClient(issuer.url, issuer.credential, batch_size=8)
    header = first.challenge_header()
    tokens = [client.authorization_for(header) for _ in range(8)]
    for value in tokens:
        first.redeem(value)

    _rotate_and_retire(issuer.store)
    # Another instance starts (or re-reads the directory) and a client sends a token naming an
    # unknown key id: neither may make the shared store forget what was spent.
    second = _instance(issuer, spent_db)
    with pytest.raises(TokenRejected):
        second.redeem(_with_unknown_key_id(tokens[0]))
    second.challenge_header()

    # The first instance still holds the retired key in its directory cache.
    for value in tokens:
        with pytest.raises(TokenRejected, match="spent"):
            first.redeem(value)


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres"])
def test_spent_records_are_purged_only_after_the_longest_cache_lifetime(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    store: MemorySpentStore | DatabaseSpentStore
    if kind == "memory":
        store = MemorySpentStore()
    elif kind == "sqlite":
        store = DatabaseSpentStore(str(tmp_path / "s.db"))
    else:
        store = DatabaseSpentStore(request.getfixturevalue("pg_dsn"))
    old, new = b"o" * 32, b"n" * 32
    assert store.mark_spent(old, b"1" * 32)
    assert store.mark_spent(new, b"2" * 32)
    t0 = 1_000_000
    assert store.note_directory([old, new], now=t0) == 0
    assert store.note_directory([new], now=t0 + 1) == 0  # withdrawn: remembered, not purged
    assert store.note_directory([new], now=t0 + consts.SPENT_PURGE_DELAY) == 0
    assert not store.mark_spent(old, b"1" * 32)
    assert store.note_directory([], now=t0 + 10 * consts.SPENT_PURGE_DELAY) == 0  # a fault
    assert store.note_directory([new], now=t0 + 2 + consts.SPENT_PURGE_DELAY) == 1
    assert not store.mark_spent(new, b"2" * 32)


def test_a_key_seen_again_is_no_longer_counted_as_withdrawn(tmp_path: Path) -> None:
    store = DatabaseSpentStore(str(tmp_path / "s.db"))
    key = b"k" * 32
    store.mark_spent(key, b"1" * 32)
    store.note_directory([b"x" * 32], now=100)
    store.note_directory([key, b"x" * 32], now=101)  # a transient directory fault healed
    assert store.note_directory([b"x" * 32], now=102 + consts.SPENT_PURGE_DELAY) == 0
    assert not store.mark_spent(key, b"1" * 32)


def test_origins_cache_the_directory_briefly(issuer: Any, tmp_path: Path) -> None:
    verifier = _instance(issuer, str(tmp_path / "spent.db"))
    verifier.challenge_header()
    assert verifier.directory.max_age <= consts.ORIGIN_MAX_DIRECTORY_AGE
    assert "max-age=300" not in verifier.challenge_header()


def test_a_retired_key_stops_being_challenged_after_a_refresh(issuer: Any,
                                                             tmp_path: Path) -> None:
    verifier = _instance(issuer, str(tmp_path / "spent.db"))
    client = IssuerClient(issuer.url, issuer.credential, batch_size=1)
    stale = verifier.challenge_header()
    _rotate_and_retire(issuer.store)
    # A client given a challenge naming a key the issuer no longer publishes learns exactly
    # that (a transient state), not that the issuer refused it.
    with pytest.raises(StaleChallenge):
        client.authorization_for(stale)
    verifier.directory.expire()  # its max-age (at most ORIGIN_MAX_DIRECTORY_AGE) passes
    verifier.redeem(client.authorization_for(verifier.challenge_header()))


def test_directory_urls_come_from_configuration_never_from_the_request(
        tmp_path: Path, live_server: Any) -> None:
    db = str(tmp_path / "issuer.db")
    IssuerStore(db).ensure_key()
    plain = live_server(create_app, db=db, issuer_name="issuer.test")
    configured = live_server(create_app, db=db, issuer_name="issuer.test",
                             public_url="https://issuer.example/")
    spoof = {"Host": "evil.example", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "evil.example"}
    for server, expected in ((plain, consts.ISSUANCE_PATH),
                             (configured, "https://issuer.example" + consts.ISSUANCE_PATH)):
        r = requests.get(server.url + consts.DIRECTORY_PATH, headers=spoof, timeout=30)
        assert r.status_code == 200
        assert IssuerDirectory.from_json(r.content).issuer_request_uri == expected


def test_the_client_never_sends_its_credential_to_another_origin(
        issuer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = _instance(issuer, str(tmp_path / "spent.db"))
    client = IssuerClient(issuer.url, issuer.credential, batch_size=1)
    real = client.directory.get()
    elsewhere = IssuerDirectory("https://evil.example/token-request", real.token_keys)
    monkeypatch.setattr(client.directory, "get", lambda **_: elsewhere)
    sent: list[str] = []
    monkeypatch.setattr(client.session, "post", lambda url, **_: sent.append(url))
    with pytest.raises(Exception, match="another origin"):
        client.authorization_for(verifier.challenge_header())
    assert sent == []
