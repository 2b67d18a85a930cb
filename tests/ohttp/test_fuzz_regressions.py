"""Untrusted-input decoders of ohttp_relay that raised something other than an OHTTPError: each
input here is refused with a typed error now (fuzz/ has the targets, fuzz/corpus/ the inputs)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from ohttp_relay import bhttp, ohttp
from ohttp_relay.client import ObliviousClient
from ohttp_relay.errors import LimitExceeded, RequestRejected

DEEP = b"[" * 100_000


class _Answer(requests.adapters.BaseAdapter):
    """The relay's side at requests' adapter layer: one fixed answer to every request."""

    def __init__(self, status: int, media: str, body: bytes) -> None:
        super().__init__()
        self.status, self.media, self.body = status, media, body

    def send(self, request: requests.PreparedRequest, *args: Any,  # type: ignore[override]
             **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = self.status
        response.headers["Content-Type"] = self.media
        response._content = self.body
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_a_deeply_nested_problem_from_the_relay_is_a_rejection() -> None:
    # json.loads raises RecursionError, not ValueError, past the interpreter's nesting limit.
    session = requests.Session()
    session.mount("http://", _Answer(400, "application/problem+json", DEEP))
    key = ohttp.GatewayKey.generate(1)
    client = ObliviousClient("http://relay.example", ohttp.encode_key_configs([key.config]),
                             session=session)
    with pytest.raises(RequestRejected):
        client.request("GET", "http://target.example/")


@pytest.mark.parametrize("mode", list(bhttp.Mode))
def test_a_streamed_response_cannot_grow_without_bound_after_its_content(
        mode: bhttp.Mode) -> None:
    # ResponseStream kept every byte after the content (trailers, then padding) until close():
    # a peer sending zero padding forever grew the client's memory without limit.
    limits = bhttp.Limits(max_section_bytes=1024, max_content_bytes=4096)
    stream = bhttp.ResponseStream(limits)
    assert stream.feed(bhttp.Response(200, content=b"hi").to_bytes(mode)) == [b"hi"]
    with pytest.raises(LimitExceeded):
        for _ in range(100):
            stream.feed(bytes(1024))


def test_a_streamed_response_with_padding_within_the_bound_still_decodes() -> None:
    limits = bhttp.Limits(max_section_bytes=1024, max_content_bytes=4096)
    stream = bhttp.ResponseStream(limits)
    raw = bhttp.Response(200, content=b"hi", trailers=(("x-t", "1"),)).to_bytes(padding=4000)
    pieces = [piece for i in range(0, len(raw), 100) for piece in stream.feed(raw[i:i + 100])]
    assert b"".join(pieces) == b"hi"
    assert stream.close().trailers == (("x-t", "1"),)


@pytest.mark.parametrize("mode", list(bhttp.Mode))
def test_a_head_sent_in_one_byte_pieces_is_parsed_once_per_field_line(
        mode: bhttp.Mode, monkeypatch: pytest.MonkeyPatch) -> None:
    # ResponseStream re-parsed the whole buffer on every feed until the head was complete: a
    # peer sending a large head a byte at a time made the client's work quadratic (a 0.9 MB
    # head took minutes). It now resumes where the last read fell short.
    checked: list[bytes] = []
    real_check = bhttp._check_field

    def counting_check(name: bytes, value: bytes) -> bhttp.Field:
        checked.append(name)
        return real_check(name, value)

    monkeypatch.setattr(bhttp, "_check_field", counting_check)
    fields = tuple((f"x-{i:03d}", "v" * 20) for i in range(200))
    interim = (bhttp.InformationalResponse(103, fields[:50]),)
    raw = bhttp.Response(200, headers=fields, content=b"hi", informational=interim).to_bytes(mode)
    stream = bhttp.ResponseStream()
    content = [piece for i in range(len(raw)) for piece in stream.feed(raw[i:i + 1])]
    assert b"".join(content) == b"hi"
    assert stream.head is not None and stream.head.headers == fields
    assert stream.head.informational == interim
    assert len(checked) == len(fields) + 50
