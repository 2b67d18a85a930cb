"""Batched token issuance (draft-ietf-privacypass-batched-tokens §6): the issuer's request
decoder (then BlindSign of each item) and the client's response decoder."""

from __future__ import annotations

from collections.abc import Iterator

from credentials.batched import (
    decode_batch_request,
    decode_batch_response,
    encode_batch_request,
    encode_batch_response,
)
from credentials.errors import CredentialsError
from credentials.tokens import TokenRequest
from fuzz.targets._issuer import ISSUER_KEYS, VECTORS

ACCEPTED: tuple[type[Exception], ...] = (CredentialsError,)
MAX_LEN = 4096


def test_one_input(data: bytes) -> None:
    if not data:
        return
    try:
        if data[0] & 1:
            decode_batch_response(data[1:])
        else:
            items = decode_batch_request(data[1:])
            ISSUER_KEYS.evaluate_many([i for i in items if isinstance(i, TokenRequest)], now=0)
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    requests = [TokenRequest.decode(bytes.fromhex(v["token_request"])) for v in VECTORS]
    yield b"\x00" + encode_batch_request(requests[:2])
    yield b"\x00" + encode_batch_request([])
    other = b"\x00\x05\x01" + bytes(32)
    body = requests[0].encode() + other if requests else other
    yield b"\x00" + bytes([0x40 | len(body) >> 8, len(body) & 0xFF]) + body
    responses = [(2, bytes.fromhex(v["token_response"])) for v in VECTORS[:2]]
    yield b"\x01" + encode_batch_response([*responses, None, (5, bytes(96))])
