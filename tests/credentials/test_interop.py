"""Cross-implementation tests with @cloudflare/blindrsa-ts 0.4.4 and privacypass-ts 0.8.1."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from credentials import blind_rsa
from credentials.client import IssuerClient
from credentials.errors import TokenRejected
from credentials.headers import parse_www_authenticate
from credentials.issuer_service import create_app
from credentials.issuer_store import IssuerStore
from credentials.origin import TokenVerifier
from credentials.tokens import Token

pytestmark = pytest.mark.interop

VARIANTS = [v.value.name for v in blind_rsa.Variants]
PEER = "credentials_peer.mjs"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def _token_bytes(authorization: str) -> bytes:
    value = authorization.split("=", 1)[1].strip('"')
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _spki(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).hex()


@pytest.mark.parametrize("variant", VARIANTS)
def test_their_client_our_signer(node_peer: Any, rsa_key: rsa.RSAPrivateKey,
                                 variant: str) -> None:
    peer = node_peer(PEER)
    msg = b"interop message".hex()
    blinded = peer.call(op="brsa_blind", variant=variant, spki=_spki(rsa_key), msg=msg)
    blind_sig = blind_rsa.BlindSigner(rsa_key).blind_sign(bytes.fromhex(blinded["blinded"]))
    sig = peer.call(op="brsa_finalize", variant=variant, spki=_spki(rsa_key),
                    prepared=blinded["prepared"], blind_sig=blind_sig.hex(),
                    inv=blinded["inv"])["sig"]
    v = blind_rsa.Variants.by_name(variant)
    blind_rsa.verify(rsa_key.public_key(), bytes.fromhex(blinded["prepared"]),
                     bytes.fromhex(sig), v)


@pytest.mark.parametrize("variant", VARIANTS)
def test_our_client_their_signer(node_peer: Any, variant: str) -> None:
    peer = node_peer(PEER)
    keys = peer.call(op="brsa_keygen")
    pk = serialization.load_der_public_key(bytes.fromhex(keys["spki"]))
    assert isinstance(pk, rsa.RSAPublicKey)
    v = blind_rsa.Variants.by_name(variant)
    prepared = blind_rsa.prepare(b"interop message", v)
    blinded, inv = blind_rsa.blind(pk, prepared, v)
    blind_sig = peer.call(op="brsa_sign", variant=variant, pkcs8=keys["pkcs8"],
                          blinded=blinded.hex())["blind_sig"]
    sig = blind_rsa.finalize(pk, prepared, bytes.fromhex(blind_sig), inv, v)
    assert peer.call(op="brsa_verify", variant=variant, spki=keys["spki"],
                     prepared=prepared.hex(), sig=sig.hex())["ok"] is True


@pytest.fixture
def our_issuer(tmp_path: Path, live_server: Any) -> Any:
    db = str(tmp_path / "issuer.db")
    store = IssuerStore(db)
    store.ensure_key()
    server = live_server(create_app, db=db, issuer_name="issuer.test")
    server.credential = store.add_account("node")
    return server


@pytest.mark.parametrize("n", [1, 5])
def test_their_client_against_our_issuer_and_verifier(node_peer: Any, our_issuer: Any,
                                                      tmp_path: Path, n: int) -> None:
    peer = node_peer(PEER)
    verifier = TokenVerifier(issuer_url=our_issuer.url, origin_info=["o.test"],
                             spent_db=str(tmp_path / "spent.db"))
    header = verifier.challenge_header()
    # privacypass-ts parses our WWW-Authenticate header to the same challenge.
    theirs = peer.call(op="pp_parse_www_authenticate", header=header)["challenges"]
    ours = parse_www_authenticate(header)
    assert [(c["challenge"], c["token_key"]) for c in theirs] == [
        (c.challenge.hex(), c.token_key.hex()) for c in ours]
    got = peer.call(op="pp_fetch", issuer_url=our_issuer.url, credential=our_issuer.credential,
                    challenge=ours[0].challenge.hex(), token_key=ours[0].token_key.hex(), n=n)
    assert len(got["tokens"]) == n
    for item in got["tokens"]:
        verifier.redeem(item["authorization"])  # their Authorization header, our verifier
        with pytest.raises(TokenRejected):
            verifier.redeem(item["authorization"])


def test_our_tokens_verify_at_their_origin(node_peer: Any, our_issuer: Any,
                                           tmp_path: Path) -> None:
    peer = node_peer(PEER)
    verifier = TokenVerifier(issuer_url=our_issuer.url, origin_info=["o.test"],
                             spent_db=str(tmp_path / "spent.db"))
    header = verifier.challenge_header()
    token_key = parse_www_authenticate(header)[0].token_key
    client = IssuerClient(our_issuer.url, our_issuer.credential, batch_size=3)
    for _ in range(3):
        raw = _token_bytes(client.authorization_for(header))
        assert peer.call(op="pp_verify", token=raw.hex(), token_key=token_key.hex())["ok"]
        tampered = bytearray(raw)
        tampered[-1] ^= 1
        assert not peer.call(op="pp_verify", token=bytes(tampered).hex(),
                             token_key=token_key.hex())["ok"]


@pytest.mark.parametrize("batch", [1, 4])
def test_our_client_against_their_issuer(node_peer: Any, tmp_path: Path, batch: int) -> None:
    peer = node_peer(PEER)
    issuer = peer.call(op="pp_issuer_start")
    verifier = TokenVerifier(issuer_url=issuer["url"], origin_info=["o.test"],
                             spent_db=str(tmp_path / "spent.db"))
    header = verifier.challenge_header()
    client = IssuerClient(issuer["url"], "unused-credential", batch_size=batch)
    for _ in range(batch + 1):
        value = client.authorization_for(header)
        verifier.redeem(value)
        token = Token.decode(_token_bytes(value))
        assert peer.call(op="pp_verify", token=token.encode().hex(),
                         token_key=issuer["token_key"])["ok"]
