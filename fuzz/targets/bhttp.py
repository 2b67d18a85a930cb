"""Binary HTTP (RFC 9292), both framings: the gateway's and the client's inner-message decoder.

The first input byte picks the path: whole-message decoding (``bhttp.decode``, then the
gateway's ``request_target`` on a request), or the client's incremental ``ResponseStream`` fed
in pieces of ``1 + byte % 16`` bytes. A decoded message must re-encode to one that decodes to
the same value.
"""

from __future__ import annotations

from collections.abc import Iterator

from fuzz.vectors import vectors
from ohttp_relay import bhttp
from ohttp_relay.errors import OHTTPError
from ohttp_relay.gateway import request_target

ACCEPTED: tuple[type[Exception], ...] = (OHTTPError,)
MAX_LEN = 4096


def _whole(data: bytes) -> None:
    message = bhttp.decode(data)
    for mode in bhttp.Mode:
        again = bhttp.decode(message.to_bytes(mode))
        assert again == message, "a decoded message does not survive re-encoding"
    if isinstance(message, bhttp.Request):
        request_target(message)


def _stream(data: bytes, piece: int) -> None:
    stream = bhttp.ResponseStream()
    content = bytearray()
    for i in range(0, len(data), piece):
        content += b"".join(stream.feed(data[i:i + piece]))
    response = stream.close()
    whole = bhttp.decode_response(data)
    assert (response.status, response.headers, response.trailers) == (
        whole.status, whole.headers, whole.trailers), "stream and whole decoding disagree"
    assert bytes(content) == whole.content, "stream and whole decoding disagree on content"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    try:
        if data[0] & 0x80:
            _stream(data[1:], 1 + data[0] % 16)
        else:
            _whole(data[1:])
    except ACCEPTED:
        pass


def seeds() -> Iterator[bytes]:
    for vector in vectors("rfc9292"):
        raw = bytes.fromhex(vector["encoded"])
        yield b"\x00" + raw
        if vector["message"] == "response":
            yield b"\x83" + raw
    request = bhttp.Request("POST", "https", "search.example", "/search?q=cat",
                            (("content-type", "application/json"), ("x-a", "1")),
                            b'{"q":"cat"}', (("x-t", "t"),))
    response = bhttp.Response(200, (("content-type", "text/plain"),), b"hello" * 10,
                              (("x-t", "t"),), (bhttp.InformationalResponse(103),))
    for mode in bhttp.Mode:
        for message in (request, response):
            yield b"\x00" + message.to_bytes(mode, padding=3)
            yield b"\x00" + message.to_bytes(mode, truncate=True)
        yield b"\x85" + response.to_bytes(mode)
