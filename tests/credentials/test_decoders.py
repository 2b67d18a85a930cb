"""Every decoder, fed any bytes or text, returns a value or raises DecodeError: nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credentials import batched, consts
from credentials.errors import DecodeError
from credentials.headers import (
    PrivateTokenChallenge,
    b64url_decode,
    parse_authorization,
    parse_challenges,
    parse_www_authenticate,
)
from credentials.issuance import IssuerDirectory
from credentials.tokens import (
    Token,
    TokenChallenge,
    TokenRequest,
    TokenResponse,
    decode_token_key,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

BYTE_DECODERS: list[Callable[[bytes], Any]] = [
    TokenChallenge.decode, TokenRequest.decode, TokenResponse.decode, Token.decode,
    decode_token_key, batched.decode_batch_request, batched.decode_batch_response,
    IssuerDirectory.from_json,
]
TEXT_DECODERS: list[Callable[[str], Any]] = [
    parse_challenges, parse_www_authenticate, parse_authorization, b64url_decode,
    IssuerDirectory.from_json,
]


@pytest.mark.parametrize("decoder", BYTE_DECODERS, ids=lambda f: f.__qualname__)
@FAST
@given(data=st.binary(max_size=700))
def test_byte_decoders_raise_only_decode_error(decoder: Callable[[bytes], Any],
                                               data: bytes) -> None:
    try:
        decoder(data)
    except DecodeError:
        pass


@pytest.mark.parametrize("decoder", TEXT_DECODERS, ids=lambda f: f.__qualname__)
@FAST
@given(text=st.text(max_size=400))
def test_text_decoders_raise_only_decode_error(decoder: Callable[[str], Any],
                                               text: str) -> None:
    try:
        decoder(text)
    except DecodeError:
        pass


_HEADER_ALPHABET = st.sampled_from(list('PrivateToken challenge="=,; \tBasic realm AAIA_-x0'))


@FAST
@given(text=st.text(_HEADER_ALPHABET, max_size=200))
def test_header_shaped_noise_never_crashes(text: str) -> None:
    try:
        parse_www_authenticate(text)
        parse_authorization(text)
    except DecodeError:
        pass


@FAST
@given(token_type=st.integers(0, 0xFFFF),
       issuer=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                    exclude_characters=","), min_size=1, max_size=40),
       context=st.sampled_from([b"", b"\x07" * 32]),
       origins=st.lists(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                              exclude_characters=","), min_size=1,
                                max_size=20), max_size=3))
def test_token_challenge_round_trips(token_type: int, issuer: str, context: bytes,
                                     origins: list[str]) -> None:
    challenge = TokenChallenge(token_type, issuer, context, tuple(origins))
    assert TokenChallenge.decode(challenge.encode()) == challenge


@FAST
@given(challenge=st.binary(min_size=2, max_size=120), key=st.binary(min_size=1, max_size=300),
       max_age=st.none() | st.integers(0, 10**6), other=st.booleans())
def test_www_authenticate_round_trips(challenge: bytes, key: bytes, max_age: int | None,
                                      other: bool) -> None:
    item = PrivateTokenChallenge(challenge, key, max_age)
    header = ('Basic realm="x", ' if other else "") + item.to_header()
    assert parse_www_authenticate(header) == [item]


@FAST
@given(st.integers(0, (1 << 62) - 1))
def test_varint_round_trips_and_is_minimal(value: int) -> None:
    encoded = batched.encode_varint(value)
    assert batched.decode_varint(encoded) == (value, len(encoded))


def test_varint_refuses_non_minimal_encoding() -> None:
    with pytest.raises(DecodeError):
        batched.decode_varint(b"\x40\x05")


@FAST
@given(items=st.lists(st.tuples(st.integers(0, 255), st.binary(min_size=consts.NK,
                                                                max_size=consts.NK)),
                      max_size=5),
       absent=st.lists(st.booleans(), max_size=5))
def test_batch_encodings_round_trip(items: list[tuple[int, bytes]], absent: list[bool]) -> None:
    requests = [TokenRequest(t, b) for t, b in items]
    assert batched.decode_batch_request(batched.encode_batch_request(requests)) == requests
    responses: list[tuple[int, bytes] | None] = [
        None if i < len(absent) and absent[i] else (consts.TOKEN_TYPE_BLIND_RSA, b)
        for i, (_, b) in enumerate(items)]
    assert batched.decode_batch_response(batched.encode_batch_response(responses)) == responses


def test_every_truncation_of_a_batch_is_a_clean_error() -> None:
    requests = [TokenRequest(i, bytes([i]) * consts.NK) for i in range(3)]
    encoded = batched.encode_batch_request(requests)
    for cut in range(len(encoded)):
        with pytest.raises(DecodeError):
            batched.decode_batch_request(encoded[:cut])
    response = batched.encode_batch_response([(2, b"\x01" * consts.NK), None])
    for cut in range(len(response)):
        with pytest.raises(DecodeError):
            batched.decode_batch_response(response[:cut])
