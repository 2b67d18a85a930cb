"""Malformed input to the issuer and an origin answers 4xx problems, never a 500."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credentials import consts
from credentials.issuer_service import create_app
from credentials.issuer_store import IssuerStore

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = str(tmp_path_factory.mktemp("fuzz") / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    credential = store.add_account("fuzz")
    app = create_app({"db": db, "issuer_name": "issuer.test"})
    return app.test_client(), credential


@SETTINGS
@given(body=st.binary(max_size=600),
       media=st.sampled_from([consts.MEDIA_TOKEN_REQUEST, consts.MEDIA_BATCH_REQUEST,
                              "text/plain", ""]),
       prefix=st.sampled_from([b"", b"\x00\x02", b"\x42\x03\x00\x02"]))
def test_issuer_answers_garbage_with_4xx(app_client: Any, body: bytes, media: str,
                                         prefix: bytes) -> None:
    client, credential = app_client
    r = client.post(consts.ISSUANCE_PATH, data=prefix + body,
                    headers={"Content-Type": media, "Authorization": f"Bearer {credential}"})
    assert 400 <= r.status_code < 500 or r.status_code in (200, 206)
    if r.status_code >= 400:
        assert r.headers["Content-Type"] == "application/problem+json"


@SETTINGS
@given(header=st.text(max_size=300))
def test_issuer_answers_garbage_credentials_with_401(app_client: Any, header: str) -> None:
    client, _ = app_client
    try:
        headers = {"Authorization": header, "Content-Type": consts.MEDIA_TOKEN_REQUEST}
        r = client.post(consts.ISSUANCE_PATH, data=b"\x00" * 259, headers=headers)
    except ValueError:  # werkzeug refuses header values with newlines before sending
        return
    assert r.status_code == 401


def test_issuer_unknown_routes_and_methods(app_client: Any) -> None:
    client, _ = app_client
    assert client.get("/nope").status_code == 404
    assert client.put(consts.DIRECTORY_PATH).status_code == 405
    assert client.get("/nope").headers["Content-Type"] == "application/problem+json"


def test_origin_answers_garbage_tokens_with_401(tmp_path: Path, live_server: Any) -> None:
    from tests.credentials.apps import create_origin_app

    db = str(tmp_path / "issuer.db")
    IssuerStore(db).ensure_key()
    issuer = live_server(create_app, db=db, issuer_name="issuer.test")
    origin = create_origin_app({"issuer_url": issuer.url, "origin": "o.test",
                                "spent_db": str(tmp_path / "spent.db")}).test_client()

    @SETTINGS
    @given(value=st.text(max_size=600) | st.binary(max_size=400).map(
        lambda b: "PrivateToken token=" + __import__("base64").urlsafe_b64encode(
            b"\x00\x02" + b).decode()))
    def check(value: str) -> None:
        try:
            r = origin.get("/feature", headers={"Authorization": value})
        except ValueError:
            return
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith("PrivateToken ")

    check()


def test_issuer_logs_carry_no_blinded_messages_signatures_or_keys(tmp_path: Path) -> None:
    import logging

    from cryptography.hazmat.primitives import serialization

    from credentials.batched import decode_batch_response, encode_batch_request
    from credentials.issuance import begin_issuance
    from credentials.tokens import TokenChallenge
    from service_kit.logging_filter import capture_logs

    db = str(tmp_path / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    credential = store.add_account("logs")
    key = store.list_keys()[0]
    pem = store.private_key(key.key_id).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with capture_logs() as logs:
        logging.getLogger("credentials").setLevel(logging.DEBUG)
        client = create_app({"db": db, "issuer_name": "issuer.test"}).test_client()
        challenge = TokenChallenge(2, "issuer.test", b"", ("o.test",)).encode()
        pendings = [begin_issuance(challenge, key.token_key) for _ in range(3)]
        r = client.post(consts.ISSUANCE_PATH,
                        data=encode_batch_request([p.request for p in pendings]),
                        headers={"Content-Type": consts.MEDIA_BATCH_REQUEST,
                                 "Authorization": f"Bearer {credential}"})
        assert r.status_code == 200
        signatures = [a[1] for a in decode_batch_response(r.data) if a is not None]
        client.post(consts.ISSUANCE_PATH, data=b"junk",
                    headers={"Content-Type": consts.MEDIA_TOKEN_REQUEST,
                             "Authorization": f"Bearer {credential}x"})
    assert any("issuance batch requested=3 issued=3" in line for line in logs.lines)
    secrets_used: list[bytes | str] = [credential, pem, key.key_id.hex()]
    secrets_used += [p.request.blinded_msg for p in pendings] + signatures
    assert logs.leaks(secrets_used) == []
