"""The RFC 9577 header parsers: ``WWW-Authenticate: PrivateToken ...`` as a client reads it
(then each challenge decoded) and ``Authorization: PrivateToken token=...`` as an origin reads
it. Header values reach them as Latin-1 text (WSGI and http.client both decode so); the first
input byte picks the parser and, for library callers, UTF-8 text instead."""

from __future__ import annotations

from collections.abc import Iterator

from credentials.errors import CredentialsError
from credentials.headers import (
    authorization_header,
    b64url_decode,
    parse_authorization,
    parse_challenges,
    parse_www_authenticate,
)
from credentials.tokens import Token
from fuzz.targets._issuer import VECTORS
from fuzz.vectors import vectors

ACCEPTED: tuple[type[Exception], ...] = (CredentialsError,)
MAX_LEN = 4096


def _www_authenticate(value: str) -> None:
    for challenge in parse_www_authenticate(value):
        assert challenge.max_age is None or challenge.max_age >= 0
        try:
            challenge.token_challenge()
        except ACCEPTED:
            pass
        reparsed = parse_www_authenticate(challenge.to_header())
        assert [(c.challenge, c.token_key) for c in reparsed] == [
            (challenge.challenge, challenge.token_key)], "challenge does not round-trip"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    text = data[1:].decode("utf-8", "replace") if data[0] & 4 else data[1:].decode("latin-1")
    try:
        match data[0] % 4:
            case 0:
                _www_authenticate(text)
            case 1:
                parse_authorization(text)
            case 2:
                parse_challenges(text)
            case _:
                b64url_decode(text)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    for vector in vectors("rfc9577"):
        if vector["kind"] == "www_authenticate_header":
            yield b"\x00" + vector["www_authenticate"].encode()
    for vector in VECTORS[:2]:
        yield b"\x01" + authorization_header(Token.decode(bytes.fromhex(vector["token"]))).encode()
    yield b'\x02Basic realm="a\\"b", Bearer abc==, PrivateToken x=1, y="2"'
    yield b"\x03AAIADmlzc3Vlci5leGFtcGxl"
