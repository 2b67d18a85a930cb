"""A chunked Encapsulated Response, opened incrementally by the client (fixed secret and enc).

The first input byte picks the AEAD and the size of the pieces the stream arrives in."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from ohttp_relay.chunked import ChunkedResponseOpener, ChunkedResponseSealer
from ohttp_relay.errors import OHTTPError
from ohttp_relay.ohttp import response_nonce_length

ACCEPTED: tuple[type[Exception], ...] = (OHTTPError,)
MAX_LEN = 8192

_AEADS = (1, 2, 3)
_ENC = hashlib.sha256(b"fuzz enc").digest()


def _secret(aead_id: int) -> bytes:
    return hashlib.sha256(b"fuzz secret").digest()[:response_nonce_length(aead_id)]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    aead_id = _AEADS[data[0] % 3]
    piece = 1 + (data[0] // 3) * 8
    body = data[1:]
    opener = ChunkedResponseOpener(aead_id, _secret(aead_id), _ENC)
    try:
        for i in range(0, len(body), piece):
            opener.feed(body[i:i + piece])
        opener.close()
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    for index, aead_id in enumerate(_AEADS):
        for selector in (index, index + 3 * 10, index + 3 * 80):
            sealer = ChunkedResponseSealer(aead_id, _secret(aead_id), _ENC)
            yield (bytes([selector]) + sealer.prefix() + sealer.seal(b"\x01\x40\xc8")
                   + sealer.seal(b"content" * 5) + sealer.seal(b"", final=True))
