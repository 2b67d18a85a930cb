"""The issuer on the service stack, the Python client and an origin, end to end over HTTP."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from credentials import consts
from credentials.batched import decode_batch_response, encode_batch_request
from credentials.client import IssuerClient
from credentials.errors import CredentialsError, IssuanceRateLimited, TokenRejected
from credentials.headers import parse_www_authenticate
from credentials.issuance import IssuerDirectory, begin_issuance
from credentials.issuer_service import create_app
from credentials.issuer_store import IssuerStore
from credentials.origin import TokenVerifier
from service_kit.logging_filter import capture_logs
from tests.credentials.apps import create_origin_app

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def issuer(tmp_path: Path, live_server: Any) -> Any:
    db = str(tmp_path / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    credential = store.add_account("alice")
    server = live_server(create_app, db=db, issuer_name="issuer.test", rate_limit=100,
                         rate_window=3600)
    server.credential = credential
    server.db = db
    return server


def _verifier(issuer: Any, tmp_path: Path, origin: str = "stickers.test") -> TokenVerifier:
    return TokenVerifier(issuer_url=issuer.url, origin_info=[origin],
                         spent_db=str(tmp_path / "spent.db"))


def test_directory_is_rfc9578_json_with_caching_headers(issuer: Any) -> None:
    r = requests.get(issuer.url + consts.DIRECTORY_PATH, timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == consts.MEDIA_DIRECTORY
    assert "max-age=" in r.headers["Cache-Control"]
    directory = IssuerDirectory.from_json(r.content)
    assert directory.issuer_request_uri.endswith(consts.ISSUANCE_PATH)
    assert len(directory.blind_rsa_keys()) == 1
    again = requests.get(issuer.url + consts.DIRECTORY_PATH, timeout=30,
                         headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304


def test_client_and_verifier_redeem_each_token_exactly_once(issuer: Any, tmp_path: Path) -> None:
    verifier = _verifier(issuer, tmp_path)
    client = IssuerClient(issuer.url, issuer.credential, batch_size=4)
    header = verifier.challenge_header()
    assert "challenge=" in header and "token-key=" in header and "max-age=" in header
    authorizations = [client.authorization_for(header) for _ in range(5)]
    assert client.cached(header) == 3  # one batch of 4, then a second batch of 4; 5 spent
    for value in authorizations:
        assert value.startswith("PrivateToken token=")
        verifier.redeem(value)
    for value in authorizations:
        with pytest.raises(TokenRejected, match="spent"):
            verifier.redeem(value)


def test_tokens_for_another_origin_or_garbage_are_rejected(issuer: Any, tmp_path: Path) -> None:
    mine = _verifier(issuer, tmp_path, "stickers.test")
    other = TokenVerifier(issuer_url=issuer.url, origin_info=["other.test"],
                          spent_db=str(tmp_path / "other.db"))
    client = IssuerClient(issuer.url, issuer.credential, batch_size=1)
    value = client.authorization_for(other.challenge_header())
    with pytest.raises(TokenRejected, match="another challenge"):
        mine.redeem(value)
    for bad in (None, "", "Bearer x", "PrivateToken token=AAAA", "PrivateToken token=***"):
        with pytest.raises(TokenRejected):
            mine.redeem(bad)
    other.redeem(value)


def test_prefetch_fills_the_cache(issuer: Any, tmp_path: Path) -> None:
    header = _verifier(issuer, tmp_path).challenge_header()
    client = IssuerClient(issuer.url, issuer.credential, batch_size=8)
    assert client.prefetch(header, 10) == 10
    assert client.cached(header) == 10


def _post(issuer: Any, body: bytes, media: str, credential: str | None = None) -> Any:
    headers = {"Content-Type": media}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    return requests.post(issuer.url + consts.ISSUANCE_PATH, data=body, headers=headers,
                         timeout=30)


def _request(issuer: Any, tmp_path: Path) -> Any:
    directory = IssuerDirectory.from_json(
        requests.get(issuer.url + consts.DIRECTORY_PATH, timeout=30).content)
    challenge = _verifier(issuer, tmp_path).challenge.encode()
    return begin_issuance(challenge, directory.blind_rsa_keys()[0].token_key)


def test_bad_issuance_requests_get_4xx_problems(issuer: Any, tmp_path: Path) -> None:
    good = _request(issuer, tmp_path).request.encode()
    cases = [
        (good, consts.MEDIA_TOKEN_REQUEST, None, 401),
        (good, consts.MEDIA_TOKEN_REQUEST, "wrong-credential", 401),
        (good, "application/octet-stream", issuer.credential, 415),
        (good[:-1], consts.MEDIA_TOKEN_REQUEST, issuer.credential, 400),
        (good + b"\x00", consts.MEDIA_TOKEN_REQUEST, issuer.credential, 400),
        (b"\x00\x01" + good[2:], consts.MEDIA_TOKEN_REQUEST, issuer.credential, 400),
        (good[:2] + bytes([good[2] ^ 1]) + good[3:], consts.MEDIA_TOKEN_REQUEST,
         issuer.credential, 422),
        (good[:3] + b"\xff" * 256, consts.MEDIA_TOKEN_REQUEST, issuer.credential, 422),
        (b"\x05" + good, consts.MEDIA_BATCH_REQUEST, issuer.credential, 422),
        (b"\x00", consts.MEDIA_BATCH_REQUEST, issuer.credential, 400),
        (b"\x00" * 100_000, consts.MEDIA_BATCH_REQUEST, issuer.credential, 413),
    ]
    for body, media, credential, status in cases:
        r = _post(issuer, body, media, credential)
        assert r.status_code == status, (media, status, r.text)
        assert r.headers["Content-Type"] == "application/problem+json"
    r = requests.get(issuer.url + consts.ISSUANCE_PATH, timeout=30)
    assert r.status_code == 405
    # Nothing was charged to the account by the refused requests.
    store = IssuerStore(issuer.db)
    assert store.reserve("alice", 100, limit=100, window=3600) == 100


def test_batch_with_unknown_key_is_partial_206(issuer: Any, tmp_path: Path) -> None:
    good = [_request(issuer, tmp_path) for _ in range(3)]
    requests_ = [p.request for p in good]
    wrong = type(requests_[0])(requests_[0].truncated_token_key_id ^ 1, requests_[0].blinded_msg)
    r = _post(issuer, encode_batch_request([*requests_, wrong]), consts.MEDIA_BATCH_REQUEST,
              issuer.credential)
    assert r.status_code == 206
    answers = decode_batch_response(r.content)
    assert [a is None for a in answers] == [False, False, False, True]


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path, live_server: Any) -> None:
    db = str(tmp_path / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    credential = store.add_account("bob")
    server = live_server(create_app, db=db, issuer_name="issuer.test", rate_limit=5,
                         rate_window=600)
    verifier = TokenVerifier(issuer_url=server.url, origin_info=["o.test"],
                             spent_db=str(tmp_path / "spent.db"))
    client = IssuerClient(server.url, credential, batch_size=4)
    header = verifier.challenge_header()
    assert client.prefetch(header, 8) == 5  # 4, then 1 of the 4 asked (206 partial)
    with pytest.raises(IssuanceRateLimited) as info:
        client.prefetch(header, 6)
    assert 1 <= info.value.retry_after <= 600


def test_flask_origin_decorator(issuer: Any, tmp_path: Path, live_server: Any) -> None:
    origin = live_server(create_origin_app, issuer_url=issuer.url, origin="stickers.test",
                         spent_db=str(tmp_path / "origin-spent.db"))
    r = requests.get(origin.url + "/feature", timeout=30)
    assert r.status_code == 401
    assert r.headers["Content-Type"] == "application/problem+json"
    challenges = parse_www_authenticate(r.headers["WWW-Authenticate"])
    assert challenges[0].token_challenge().origin_info == ("stickers.test",)
    client = IssuerClient(issuer.url, issuer.credential, batch_size=2)
    auth = client.authorization_for(r.headers["WWW-Authenticate"])
    ok = requests.get(origin.url + "/feature", headers={"Authorization": auth}, timeout=30)
    assert ok.status_code == 200 and ok.json() == {"ok": True}
    replay = requests.get(origin.url + "/feature", headers={"Authorization": auth}, timeout=30)
    assert replay.status_code == 401
    garbage = requests.get(origin.url + "/feature", timeout=30,
                           headers={"Authorization": "PrivateToken token=" + "A" * 5000})
    assert garbage.status_code == 401


def test_key_rotation_and_retirement(issuer: Any, tmp_path: Path) -> None:
    verifier = _verifier(issuer, tmp_path)
    client = IssuerClient(issuer.url, issuer.credential, batch_size=2)
    old_auth = client.authorization_for(verifier.challenge_header())
    store = IssuerStore(issuer.db)
    old = store.list_keys()[0]
    new = store.generate_key(not_before=old.not_before)  # rotate, usable at once
    fresh = _verifier(issuer, tmp_path / "v2")
    header = fresh.challenge_header()
    assert parse_www_authenticate(header)[0].token_key == new.token_key
    new_auth = IssuerClient(issuer.url, issuer.credential, batch_size=1).authorization_for(
        header)
    fresh.redeem(new_auth)
    fresh.redeem(old_auth)  # the old key still verifies until retired
    store.retire_key(old.key_id)
    late = IssuerClient(issuer.url, issuer.credential, batch_size=1)
    with pytest.raises(CredentialsError):  # the client no longer sees the retired key
        late.authorization_for(verifier.challenge_header())
    # Spent records of the retired key are kept when the next verifier sees the directory
    # (other instances may still accept the key); they go SPENT_PURGE_DELAY later.
    spent_db = str(tmp_path / "v2" / "spent.db")
    from credentials.spent_store import DatabaseSpentStore
    assert DatabaseSpentStore(spent_db).count() == 2
    TokenVerifier(issuer_url=issuer.url, origin_info=["stickers.test"],
                  spent_db=spent_db).challenge_header()
    assert DatabaseSpentStore(spent_db).count() == 2
    # ... and the issuer no longer signs with it.
    pending = begin_issuance(verifier.challenge.encode(), old.token_key)
    r = _post(issuer, pending.request.encode(), consts.MEDIA_TOKEN_REQUEST, issuer.credential)
    assert r.status_code == 422


def test_logs_never_carry_tokens_or_credentials(issuer: Any, tmp_path: Path) -> None:
    verifier = _verifier(issuer, tmp_path)
    with capture_logs() as logs:
        logging.getLogger("credentials").setLevel(logging.DEBUG)
        client = IssuerClient(issuer.url, issuer.credential, batch_size=3)
        auths = [client.authorization_for(verifier.challenge_header()) for _ in range(3)]
        for a in auths:
            verifier.redeem(a)
        with pytest.raises(TokenRejected):
            verifier.redeem(auths[0])
    secrets_used = [issuer.credential] + [a.split("=", 1)[1] for a in auths]
    assert any("redemption" in line for line in logs.lines)
    assert logs.leaks(secrets_used) == []
    server_logs = issuer.logs().splitlines()
    assert any("issuance batch" in line for line in server_logs)
    from service_kit.logging_filter import find_leaks
    assert find_leaks(server_logs, secrets_used) == []


def test_cli_accounts_and_keys(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    key_dir = tmp_path / "keys"

    def run(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "credentials.cli", *args, "--db", db,
                              "--key-dir", str(key_dir)],
                             capture_output=True, text=True, check=True, cwd=REPO)
        return out.stdout

    credential = run("accounts", "add", "carol").strip()
    assert len(credential) >= 40 and "\n" not in credential
    assert credential.startswith("ppc_")  # never "-...", which argparse takes for an option
    assert IssuerStore(db).authenticate(credential) == "carol"
    first = run("keys", "generate").strip()
    assert (key_dir / f"{first}.pem").stat().st_mode & 0o777 == 0o600
    second = run("keys", "rotate", "--ahead", "0").strip()
    listing = run("keys", "list")
    assert first in listing and second in listing and "active" in listing
    assert run("keys", "retire", first[:12]).strip() == first
    assert not (key_dir / f"{first}.pem").exists()
    assert "retired" in run("keys", "list")
    third = run("keys", "rotate", "--ahead", "0").strip()
    assert run("keys", "retire").strip() == second  # the default: all but the newest in use
    assert [line.split()[1] for line in run("keys", "list").splitlines()
            if line.startswith(third)] == ["active"]


def test_key_published_ahead_is_used_only_after_not_before(issuer: Any, tmp_path: Path) -> None:
    import time

    store = IssuerStore(issuer.db)
    old = store.list_keys()[0]
    ahead = store.generate_key(not_before=int(time.time()) + 2)
    verifier = _verifier(issuer, tmp_path)
    # Published (origins and clients can see it) but not yet used by anyone.
    assert parse_www_authenticate(verifier.challenge_header())[0].token_key == old.token_key
    pending = begin_issuance(verifier.challenge.encode(), ahead.token_key)
    r = _post(issuer, pending.request.encode(), consts.MEDIA_TOKEN_REQUEST, issuer.credential)
    assert r.status_code == 422
    time.sleep(max(0.0, ahead.not_before + 1.1 - time.time()))
    # Same cached directory; the key's not-before has passed, so it takes over.
    header = verifier.challenge_header()
    assert parse_www_authenticate(header)[0].token_key == ahead.token_key
    verifier.redeem(IssuerClient(issuer.url, issuer.credential, batch_size=1)
                    .authorization_for(header))
