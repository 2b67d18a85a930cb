"""Privacy Pass wire types (RFC 9577 §2, RFC 9578 §6): TokenChallenge, TokenRequest (then the
issuer's BlindSign), TokenResponse, Token (then the origin's verification), the token-key SPKI
and the issuer directory. The first input byte picks the decoder."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from credentials.errors import CredentialsError
from credentials.issuance import DirectoryKey, IssuerDirectory, public_keys, verify_token
from credentials.tokens import (
    Token,
    TokenChallenge,
    TokenRequest,
    TokenResponse,
    decode_token_key,
    encode_token_key,
)
from fuzz.targets._issuer import ISSUER_KEY, ISSUER_KEYS, PUBLIC_KEYS, VECTORS
from fuzz.targets._select import select
from fuzz.vectors import vectors

ACCEPTED: tuple[type[Exception], ...] = (CredentialsError,)
MAX_LEN = 2048


def _challenge(data: bytes) -> None:
    challenge = TokenChallenge.decode(data)
    assert TokenChallenge.decode(challenge.encode()) == challenge, "challenge round trip"


def _request(data: bytes) -> None:
    request = TokenRequest.decode(data)
    assert request.encode() == data, "request round trip"
    ISSUER_KEYS.evaluate(request, now=0)


def _response(data: bytes) -> None:
    assert TokenResponse.decode(data).encode() == data, "response round trip"


def _token(data: bytes) -> None:
    token = Token.decode(data)
    assert token.encode() == data, "token round trip"
    verify_token(token, token.challenge_digest, PUBLIC_KEYS)


def _token_key(data: bytes) -> None:
    key = decode_token_key(data)
    assert decode_token_key(encode_token_key(key)).public_numbers() == key.public_numbers()


def _directory(data: bytes) -> None:
    directory = IssuerDirectory.from_json(data)
    public_keys(directory.blind_rsa_keys(now=0))
    assert IssuerDirectory.from_json(directory.to_json()) == directory, "directory round trip"


_DECODERS: tuple[Callable[[bytes], None], ...] = (
    _challenge, _request, _response, _token, _token_key, _directory)


def test_one_input(data: bytes) -> None:
    select(_DECODERS, ACCEPTED, data)


def seeds() -> Iterator[bytes]:
    for vector in VECTORS:
        yield b"\x00" + bytes.fromhex(vector["token_challenge"])
        yield b"\x01" + bytes.fromhex(vector["token_request"])
        yield b"\x02" + bytes.fromhex(vector["token_response"])
        yield b"\x03" + bytes.fromhex(vector["token"])
    for vector in vectors("rfc9577"):
        if vector["kind"] == "token_structure" and int(vector["token_type"], 16) == 2:
            challenge = TokenChallenge(
                2, bytes.fromhex(vector["issuer_name"]).decode(),
                bytes.fromhex(vector["redemption_context"]),
                tuple(bytes.fromhex(vector["origin_info"]).decode().split(","))
                if vector["origin_info"] else ())
            yield b"\x00" + challenge.encode()
    yield b"\x04" + ISSUER_KEY.token_key
    directory = IssuerDirectory("https://issuer.example/token-request",
                                (DirectoryKey(2, ISSUER_KEY.token_key, 1700000000),
                                 DirectoryKey(2, hashlib.sha256(b"x").digest())))
    yield b"\x05" + directory.to_json()
