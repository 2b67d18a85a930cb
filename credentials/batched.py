"""Generic batched issuance: draft-ietf-privacypass-batched-tokens-05 §6, sans-I/O.

Encoding chosen (the one ``@cloudflare/privacypass-ts`` 0.8.1 speaks, media types
``application/private-token-generic-batch-request`` / ``-response``)::

    GenericBatchTokenRequest  = varint(len) || TokenRequest*            (RFC 9578 TokenRequests)
    GenericBatchTokenResponse = varint(len) || OptionalTokenResponse*
    OptionalTokenResponse     = 0x00                                    (not issued)
                              | 0x01 || uint16 token_type || TokenResponse

``varint`` is the QUIC variable-length integer (RFC 9000 §16) in its minimal encoding, and
counts bytes, not elements. Only token type 0x0002 is issued here; requests of the other
registered types are parsed (their sizes are fixed) and answered "absent".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from credentials import consts
from credentials.errors import DecodeError
from credentials.tokens import TokenRequest
from service_kit import wire

# Serialized TokenRequest / TokenResponse sizes per registered token type (RFC 9578, draft §5).
_REQUEST_SIZES = {0x0001: 2 + 1 + 49, 0x0002: consts.TOKEN_REQUEST_LENGTH, 0x0005: 2 + 1 + 32}
_RESPONSE_SIZES = {0x0001: 49 + 48 + 48, 0x0002: consts.NK, 0x0005: 32 + 32 + 32}


def encode_varint(value: int) -> bytes:
    """RFC 9000 §16 variable-length integer, minimal size."""
    try:
        return wire.encode_varint(value)
    except ValueError:
        raise DecodeError("length out of range") from None


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """Return ``(value, new_pos)``; non-minimal encodings are refused (draft §3.2)."""
    reader = wire.Reader(data, pos, error=DecodeError)
    value = reader.varint("varint", minimal=True)
    return value, reader.pos


def _vector(data: bytes) -> bytes:
    length, pos = decode_varint(data)
    if pos + length != len(data):
        raise DecodeError("vector length does not match the content")
    return data[pos:]


@dataclass(frozen=True)
class OtherTokenRequest:
    """A well-formed request of a registered token type this issuer does not issue."""

    token_type: int
    raw: bytes


BatchItem = TokenRequest | OtherTokenRequest


def encode_batch_request(requests: Sequence[TokenRequest]) -> bytes:
    """A GenericBatchTokenRequest carrying ``requests`` in order."""
    body = b"".join(r.encode() for r in requests)
    return encode_varint(len(body)) + body


def decode_batch_request(data: bytes) -> list[BatchItem]:
    """Split a GenericBatchTokenRequest; unknown token types are a DecodeError (422)."""
    body = _vector(bytes(data))
    items: list[BatchItem] = []
    pos = 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise DecodeError("truncated token request")
        token_type = struct.unpack(">H", body[pos:pos + 2])[0]
        size = _REQUEST_SIZES.get(token_type)
        if size is None:
            raise DecodeError("unknown token type in batch")
        chunk = body[pos:pos + size]
        if len(chunk) != size:
            raise DecodeError("truncated token request")
        if token_type == consts.TOKEN_TYPE_BLIND_RSA:
            items.append(TokenRequest.decode(chunk))
        else:
            items.append(OtherTokenRequest(token_type, chunk))
        pos += size
    return items


def encode_batch_response(responses: Sequence[tuple[int, bytes] | None]) -> bytes:
    """``responses[i]`` is ``(token_type, TokenResponse bytes)`` or ``None`` (not issued)."""
    parts = []
    for item in responses:
        if item is None:
            parts.append(b"\x00")
        else:
            token_type, body = item
            parts.append(b"\x01" + struct.pack(">H", token_type) + body)
    body = b"".join(parts)
    return encode_varint(len(body)) + body


def decode_batch_response(data: bytes) -> list[tuple[int, bytes] | None]:
    """``(token_type, TokenResponse bytes)`` or ``None`` per request, in request order."""
    body = _vector(bytes(data))
    out: list[tuple[int, bytes] | None] = []
    pos = 0
    while pos < len(body):
        present = body[pos]
        pos += 1
        if present == 0:
            out.append(None)
            continue
        if present != 1:
            raise DecodeError("optional presence octet must be 0 or 1")
        if pos + 2 > len(body):
            raise DecodeError("truncated token response")
        token_type = struct.unpack(">H", body[pos:pos + 2])[0]
        size = _RESPONSE_SIZES.get(token_type)
        if size is None:
            raise DecodeError("unknown token type in batch response")
        chunk = body[pos + 2:pos + 2 + size]
        if len(chunk) != size:
            raise DecodeError("truncated token response")
        out.append((token_type, chunk))
        pos += 2 + size
    return out
