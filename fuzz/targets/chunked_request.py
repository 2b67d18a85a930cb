"""A chunked Encapsulated Request (draft-ietf-ohai-chunked-ohttp), opened incrementally by
the gateway. The first input byte sets the size of the pieces the stream arrives in."""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.targets._ohttp_keys import KEYS, lookup
from ohttp_relay import bhttp
from ohttp_relay.chunked import ChunkedRequestOpener, encapsulate_chunked_request
from ohttp_relay.errors import OHTTPError
from ohttp_relay.ohttp import DEFAULT_SYMMETRIC

ACCEPTED: tuple[type[Exception], ...] = (OHTTPError,)
MAX_LEN = 8192


def test_one_input(data: bytes) -> None:
    if not data:
        return
    piece = 1 + data[0] * 4
    body = data[1:]
    opener = ChunkedRequestOpener(lookup)
    try:
        for i in range(0, len(body), piece):
            opener.feed(body[i:i + piece])
        opener.close()
    except ACCEPTED:
        return
    sealer = opener.response_sealer()
    sealer.seal(b"", final=True)


def seeds() -> Iterator[bytes]:
    inner = bhttp.Request("POST", "https", "example.com", "/", (), b"x" * 40).to_bytes(
        bhttp.Mode.INDETERMINATE)
    for key in KEYS.values():
        for suite in DEFAULT_SYMMETRIC:
            chunks = [inner[:10], inner[10:], b""]
            yield b"\x03" + encapsulate_chunked_request(key.config, chunks, suite=suite)[0]
    yield b"\xff" + encapsulate_chunked_request(KEYS[1].config, [inner])[0]
