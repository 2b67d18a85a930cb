"""Official test vectors of RFC 9474, RFC 9577 and RFC 9578 reproduced byte for byte."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from credentials import blind_rsa, issuance
from credentials.errors import DecodeError, InvalidSignatureError
from credentials.headers import b64url_encode, parse_www_authenticate
from credentials.issuance import IssuerKey, IssuerKeys
from credentials.tokens import (
    Token,
    TokenChallenge,
    TokenRequest,
    TokenResponse,
    decode_token_key,
    encode_token_key,
    token_key_id,
)


def _h(v: dict[str, Any], k: str) -> bytes:
    return bytes.fromhex(v[k])


def _key_9474(v: dict[str, Any]) -> rsa.RSAPrivateKey:
    p, q, n, e, d = (int(v[k], 16) for k in ("p", "q", "n", "e", "d"))
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q),
                                 rsa.RSAPublicNumbers(e, n)).private_key()


def _9474(vectors: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = vectors("rfc9474")["vectors"]
    return data


@pytest.mark.parametrize("engine", ["openssl", "gmpy2"])
@pytest.mark.parametrize("index", range(4))
def test_rfc9474_vector(vectors: Any, index: int, engine: str) -> None:
    v = _9474(vectors)[index]
    sk = _key_9474(v)
    pk = sk.public_key()
    variant = blind_rsa.Variants.by_name(v["name"])
    prefix = _h(v, "msg_prefix") or None
    prepared = blind_rsa.prepare(_h(v, "msg"), variant, randomizer=prefix)
    assert prepared == _h(v, "input_msg")
    assert blind_rsa.emsa_pss_encode(prepared, pk.key_size - 1, _h(v, "salt")) == _h(
        v, "encoded_msg")
    r = pow(int(v["inv"], 16), -1, int(v["n"], 16))
    blinded, inv = blind_rsa.blind(pk, prepared, variant, salt=_h(v, "salt"), r=r)
    assert blinded == _h(v, "blinded_msg")
    assert inv == int(v["inv"], 16)
    signer = blind_rsa.BlindSigner(sk, engine=engine)
    assert signer.engine == engine
    blind_sig = signer.blind_sign(blinded)
    assert blind_sig == _h(v, "blind_sig")
    sig = blind_rsa.finalize(pk, prepared, blind_sig, inv, variant)
    assert sig == _h(v, "sig")
    blind_rsa.verify(pk, prepared, sig, variant)
    with pytest.raises(InvalidSignatureError):
        blind_rsa.verify(pk, prepared + b"x", sig, variant)


def test_rfc9474_a4_alternate_blind_from_cloudflare_json(vectors: Any) -> None:
    """The discrepancy entry: Cloudflare's A.4 blind is internally consistent too."""
    data = vectors("rfc9474")
    assert data["discrepancies"]
    for discrepancy in data["discrepancies"]:
        name = discrepancy["vector"].split(" (")[0]
        (v,) = [v for v in data["vectors"] if v["name"] == name]
        _check_alternate(v, discrepancy["alternate_values_from_cloudflare_json"])


def _check_alternate(v: dict[str, Any], alt: dict[str, Any]) -> None:
    sk = _key_9474(v)
    variant = blind_rsa.Variants.PSSZERO_DETERMINISTIC
    r = pow(int(alt["inv"], 16), -1, int(v["n"], 16))
    blinded, inv = blind_rsa.blind(sk.public_key(), _h(v, "input_msg"), variant, salt=b"", r=r)
    assert blinded.hex() == alt["blinded_msg"]
    blind_sig = blind_rsa.BlindSigner(sk).blind_sign(blinded)
    assert blind_sig.hex() == alt["blind_sig"]
    assert blind_rsa.finalize(sk.public_key(), _h(v, "input_msg"), blind_sig, inv,
                              variant) == _h(v, "sig")


def test_finalize_refuses_a_wrong_blind_signature(vectors: Any) -> None:
    v = _9474(vectors)[2]
    sk = _key_9474(v)
    variant = blind_rsa.Variants.PSS_DETERMINISTIC
    blinded, inv = blind_rsa.blind(sk.public_key(), b"message", variant)
    bad = bytearray(blind_rsa.BlindSigner(sk).blind_sign(blinded))
    bad[-1] ^= 1
    with pytest.raises(InvalidSignatureError):
        blind_rsa.finalize(sk.public_key(), b"message", bytes(bad), inv, variant)


def _9578(vectors: Any) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = vectors("rfc9578_type2")["vectors"]
    return data


@pytest.mark.parametrize("index", range(5))
def test_rfc9578_type2_vector(vectors: Any, index: int) -> None:
    v = _9578(vectors)[index]
    sk = load_pem_private_key(_h(v, "skS"), password=None)
    assert isinstance(sk, rsa.RSAPrivateKey)
    pk_s = _h(v, "pkS")
    assert encode_token_key(sk.public_key()) == pk_s
    assert decode_token_key(pk_s).public_numbers() == sk.public_key().public_numbers()
    # Client: TokenRequest
    pending = issuance.begin_issuance(_h(v, "token_challenge"), pk_s, nonce=_h(v, "nonce"),
                                      salt=_h(v, "salt"), blind=int(v["blind"], 16))
    assert pending.request.encode() == _h(v, "token_request")
    assert TokenRequest.decode(_h(v, "token_request")) == pending.request
    # Issuer: TokenResponse
    keys = IssuerKeys([IssuerKey.from_private_key(sk)])
    response = keys.evaluate(TokenRequest.decode(_h(v, "token_request")), now=0)
    assert response.encode() == _h(v, "token_response")
    # Client: Token
    token = pending.finalize(TokenResponse.decode(_h(v, "token_response")))
    assert token.encode() == _h(v, "token")
    assert Token.decode(_h(v, "token")) == token
    # Origin: verification
    digest = hashlib.sha256(_h(v, "token_challenge")).digest()
    issuance.verify_token(token, digest, {token_key_id(pk_s): sk.public_key()})


def _9577(vectors: Any, kind: str) -> list[dict[str, Any]]:
    return [v for v in vectors("rfc9577")["vectors"] if v["kind"] == kind]


@pytest.mark.parametrize("index", range(5))
def test_rfc9577_token_structure(vectors: Any, index: int) -> None:
    v = _9577(vectors, "token_structure")[index]
    origins = _h(v, "origin_info").decode()
    challenge = TokenChallenge(int(v["token_type"], 16), _h(v, "issuer_name").decode(),
                               _h(v, "redemption_context"),
                               tuple(origins.split(",")) if origins else ())
    encoded = challenge.encode()
    assert TokenChallenge.decode(encoded) == challenge
    token = Token(int(v["token_type"], 16), _h(v, "nonce"), challenge.digest(),
                  _h(v, "token_key_id"), b"")
    assert token.token_input() == _h(v, "token_authenticator_input")


def test_rfc9577_grease_token_input_layout(vectors: Any) -> None:
    v = _9577(vectors, "token_structure")[5]
    raw = _h(v, "token_authenticator_input")
    assert raw[:2] == b"\x00\x00"
    with pytest.raises(DecodeError):  # a grease token type is never accepted
        Token.decode(raw)


@pytest.mark.parametrize("index", range(3))
def test_rfc9577_www_authenticate_header(vectors: Any, index: int) -> None:
    v = _9577(vectors, "www_authenticate_header")[index]
    parsed = parse_www_authenticate(v["www_authenticate"])
    assert len(parsed) == len(v["challenges"])
    for got, want in zip(parsed, v["challenges"], strict=True):
        assert got.challenge.hex() == want["token_challenge"]
        assert got.token_key.hex() == want["token_key"]
        assert got.token_type == want["token_type"]
        assert got.max_age == want.get("max_age")
    # Folded lines joined give the same value.
    folded = "".join(v["www_authenticate_folded_lines"]).removeprefix("WWW-Authenticate: ")
    assert parse_www_authenticate(folded) == parsed
    # Building the header again from the parsed values round-trips.
    rebuilt = ", ".join(c.to_header() for c in parsed)
    assert parse_www_authenticate(rebuilt) == parsed
    if index < 2:
        first = v["challenges"][0]
        assert f'challenge="{b64url_encode(bytes.fromhex(first["token_challenge"]))}"' in \
            v["www_authenticate"]
