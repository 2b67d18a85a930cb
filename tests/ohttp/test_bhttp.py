"""Binary HTTP (RFC 9292): the four RFC messages, both framings, truncation, limits, fuzzing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ohttp_relay import bhttp
from ohttp_relay._wire import Reader, encode_varint
from ohttp_relay.errors import DecodeError, LimitExceeded

KNOWN = bhttp.Mode.KNOWN_LENGTH
INDET = bhttp.Mode.INDETERMINATE

FIGURE7_HEADERS = (
    ("user-agent", "curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"),
    ("host", "www.example.com"),
    ("accept-language", "en, mi"),
)


def _rfc9292(vectors: Callable[[str], dict[str, Any]]) -> dict[str, bytes]:
    return {v["figure"]: bytes.fromhex(v["encoded"]) for v in vectors("rfc9292")["vectors"]}


def test_figure8_known_length_request(vectors: Callable[[str], dict[str, Any]]) -> None:
    raw = _rfc9292(vectors)["Figure 8"]
    request = bhttp.decode_request(raw)
    assert request == bhttp.Request("GET", "https", "", "/hello.txt", FIGURE7_HEADERS)
    assert request.header("Host") == "www.example.com"  # Host stays a header field
    assert request.to_bytes(KNOWN) == raw
    # §3.8: the last two bytes (empty content and trailers) may be dropped.
    assert request.to_bytes(KNOWN, truncate=True) == raw[:-2]
    assert bhttp.decode_request(raw[:-2]) == request
    assert bhttp.decode_request(raw[:-1]) == request


def test_figure9_indeterminate_request_with_padding(
        vectors: Callable[[str], dict[str, Any]]) -> None:
    raw = _rfc9292(vectors)["Figure 9"]
    assert raw.endswith(b"\x00" * 12)
    request = bhttp.decode_request(raw)
    assert request == bhttp.Request("GET", "https", "", "/hello.txt", FIGURE7_HEADERS)
    assert request.to_bytes(INDET, padding=10) == raw
    for cut in range(13):  # up to 12 bytes can be lost without changing the meaning
        assert bhttp.decode_request(raw[:len(raw) - cut]) == request


def test_figure11_informational_responses(vectors: Callable[[str], dict[str, Any]]) -> None:
    raw = _rfc9292(vectors)["Figure 11"]
    response = bhttp.decode_response(raw)
    assert [i.status for i in response.informational] == [102, 103]
    assert response.informational[0].headers == (("running", '"sleep 15"'),)
    assert [v for _n, v in response.informational[1].headers] == [
        "</style.css>; rel=preload; as=style", "</script.js>; rel=preload; as=script"]
    assert response.status == 200
    assert response.header("content-type") == "text/plain"
    assert response.content == b"Hello World! My content includes a trailing CRLF.\r\n"
    assert response.trailers == ()
    assert response.to_bytes(INDET) == raw


def test_figure13_known_length_response_with_trailer(
        vectors: Callable[[str], dict[str, Any]]) -> None:
    raw = _rfc9292(vectors)["Figure 13"]
    response = bhttp.decode_response(raw)
    assert response == bhttp.Response(200, (), b"This content contains CRLF.\r\n",
                                      (("trailer", "text"),))
    assert response.to_bytes(KNOWN) == raw


def test_rfc9458_inner_messages_are_truncated_forms(
        vectors: Callable[[str], dict[str, Any]]) -> None:
    vector = vectors("rfc9458")["vectors"][0]
    request = bhttp.decode_request(bytes.fromhex(vector["request_bhttp"]))
    assert request == bhttp.Request("GET", "https", "example.com", "/")
    assert request.to_bytes(truncate=True).hex() == vector["request_bhttp"]
    response = bhttp.decode_response(bytes.fromhex(vector["response_bhttp"]))
    assert response == bhttp.Response(200)
    assert response.to_bytes(truncate=True).hex() == vector["response_bhttp"]


def test_query_string_is_kept_in_the_path() -> None:
    request = bhttp.Request("GET", "https", "a.example", "/search?q=caf%C3%A9&n=2")
    for mode in (KNOWN, INDET):
        assert bhttp.decode_request(request.to_bytes(mode)).path == "/search?q=caf%C3%A9&n=2"


FULL_REQUEST = bhttp.Request("POST", "https", "a.example", "/p?q=1",
                             (("content-type", "text/plain"), ("x-a", "b")), b"hello world",
                             (("x-checksum", "abc"),))
FULL_RESPONSE = bhttp.Response(
    201, (("content-type", "text/plain"),), b"some content", (("x-t", "v"),),
    (bhttp.InformationalResponse(103, (("link", "</a>"),)),))


def _emptied(message: bhttp.Request | bhttp.Response, keep: int) -> Any:
    """``message`` with the sections after the first ``keep`` of (headers, content, trailers)
    emptied: what a decoder must return for a message cut at that section boundary (§3.8)."""
    from dataclasses import replace

    changes: dict[str, Any] = {}
    if keep >= 3:
        return message
    if keep < 1:
        changes["headers"] = ()
    if keep < 2:
        changes["content"] = b""
    if keep < 3:
        changes["trailers"] = ()
    return replace(message, **changes)


@pytest.mark.parametrize("mode", [KNOWN, INDET])
@pytest.mark.parametrize("message", [FULL_REQUEST, FULL_RESPONSE], ids=["request", "response"])
def test_every_truncation_is_a_typed_error(mode: bhttp.Mode,
                                           message: bhttp.Request | bhttp.Response) -> None:
    """Every field of every message, cut at every length, gives a DecodeError, except the three
    section boundaries where RFC 9292 §3.8 reads the missing sections as empty."""
    raw = message.to_bytes(mode)
    boundaries = {len(_emptied(message, keep).to_bytes(mode, truncate=True)): keep
                  for keep in range(3)}
    assert len(boundaries) == 3
    for cut in range(len(raw)):
        if cut in boundaries:
            assert bhttp.decode(raw[:cut]) == _emptied(message, boundaries[cut])
        else:
            with pytest.raises(DecodeError):
                bhttp.decode(raw[:cut])
    assert bhttp.decode(raw) == message


def test_rfc_messages_truncated_at_every_length(vectors: Callable[[str], dict[str, Any]]) -> None:
    """Each prefix of each RFC message is a DecodeError or, at a section boundary (§3.8), the
    same message with its trailing sections empty: never anything else."""
    messages = list(_rfc9292(vectors).values())
    vector = vectors("rfc9458")["vectors"][0]
    messages += [bytes.fromhex(vector["request_bhttp"]), bytes.fromhex(vector["response_bhttp"])]
    for raw in messages:
        message = bhttp.decode(raw)
        allowed = [_emptied(message, keep) for keep in range(4)]
        failures = 0
        for cut in range(len(raw)):
            try:
                assert bhttp.decode(raw[:cut]) in allowed
            except DecodeError:
                failures += 1
        assert failures >= 1


@pytest.mark.parametrize("mode", [KNOWN, INDET])
def test_truncated_empty_sections_decode(mode: bhttp.Mode) -> None:
    no_trailers = bhttp.Request("GET", "https", "a", "/", (("a", "b"),), b"xyz")
    raw = no_trailers.to_bytes(mode, truncate=True)
    assert len(raw) < len(no_trailers.to_bytes(mode))
    assert bhttp.decode_request(raw) == no_trailers


def test_non_zero_padding_is_rejected() -> None:
    raw = FULL_REQUEST.to_bytes(KNOWN, padding=4)
    assert bhttp.decode_request(raw) == FULL_REQUEST
    with pytest.raises(DecodeError):
        bhttp.decode_request(raw[:-1] + b"\x01")


def test_uppercase_and_injected_fields_are_rejected() -> None:
    bad_name = bytearray(FULL_REQUEST.to_bytes(KNOWN))
    index = bytes(bad_name).index(b"x-a")
    bad_name[index] = ord("X")
    with pytest.raises(DecodeError):
        bhttp.decode_request(bytes(bad_name))
    smuggled = bhttp.Request("GET", "https", "a", "/", (("x-a", "b\r\nx-evil: 1"),))
    with pytest.raises(DecodeError):
        bhttp.decode_request(smuggled.to_bytes())
    with pytest.raises(ValueError):
        bhttp.normalize_fields([("x-a", "b\nc")])
    assert bhttp.normalize_fields([("X-Mixed-Case", "v")]) == (("x-mixed-case", "v"),)


def test_limits() -> None:
    many = bhttp.Request("GET", "https", "a", "/", tuple((f"h{i}", "v") for i in range(20)))
    with pytest.raises(LimitExceeded):
        bhttp.decode_request(many.to_bytes(), bhttp.Limits(max_field_lines=10))
    big = bhttp.Response(200, (), b"x" * 1000)
    for mode in (KNOWN, INDET):
        with pytest.raises(LimitExceeded):
            bhttp.decode_response(big.to_bytes(mode), bhttp.Limits(max_content_bytes=999))
    interim = bhttp.Response(200, informational=tuple(
        bhttp.InformationalResponse(100) for _ in range(5)))
    with pytest.raises(LimitExceeded):
        bhttp.decode_response(interim.to_bytes(), bhttp.Limits(max_informational=4))


def test_framing_and_status_errors() -> None:
    with pytest.raises(DecodeError):
        bhttp.decode(b"\x04")
    with pytest.raises(DecodeError):
        bhttp.decode_request(bhttp.Response(200).to_bytes())
    with pytest.raises(DecodeError):
        bhttp.decode_response(bhttp.Request("GET", "https", "a", "/").to_bytes())
    with pytest.raises(DecodeError):
        bhttp.decode_response(b"\x01" + encode_varint(600) + b"\x00\x00\x00")
    with pytest.raises(DecodeError):
        bhttp.decode_response(b"\x01" + encode_varint(199))  # interim with no final response


@given(st.integers(min_value=0, max_value=(1 << 62) - 1))
def test_varint_round_trip(value: int) -> None:
    encoded = encode_varint(value)
    assert Reader(encoded).varint("v") == value
    assert len(encoded) in (1, 2, 4, 8)


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12)
_value = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)
_fields = st.lists(st.tuples(_token, _value), max_size=6).map(tuple)
_visible = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)

requests_st = st.builds(bhttp.Request, _token.map(str.upper), st.sampled_from(["http", "https"]),
                        _visible, _visible.map(lambda p: "/" + p), _fields,
                        st.binary(max_size=64), _fields)
responses_st = st.builds(
    bhttp.Response, st.integers(200, 599), _fields, st.binary(max_size=64), _fields,
    st.lists(st.builds(bhttp.InformationalResponse, st.integers(100, 199), _fields),
             max_size=3).map(tuple))


@settings(deadline=None, max_examples=150)
@given(message=st.one_of(requests_st, responses_st), mode=st.sampled_from([KNOWN, INDET]),
       padding=st.integers(0, 8), truncate=st.booleans())
def test_round_trip(message: bhttp.Request | bhttp.Response, mode: bhttp.Mode, padding: int,
                    truncate: bool) -> None:
    assert bhttp.decode(message.to_bytes(mode, padding=padding, truncate=truncate)) == message


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=200))
def test_decoder_raises_only_decode_error(data: bytes) -> None:
    try:
        bhttp.decode(data)
    except DecodeError:
        pass


@settings(deadline=None, max_examples=150)
@given(message=st.one_of(requests_st, responses_st), mode=st.sampled_from([KNOWN, INDET]),
       data=st.data())
def test_mutated_messages_raise_only_decode_error(message: bhttp.Request | bhttp.Response,
                                                  mode: bhttp.Mode, data: st.DataObject) -> None:
    raw = bytearray(message.to_bytes(mode))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] = data.draw(st.integers(0, 255))
    try:
        bhttp.decode(bytes(raw))
    except DecodeError:
        pass


def _stream_decode(raw: bytes, splits: list[int]) -> bhttp.Response:
    stream = bhttp.ResponseStream()
    content = bytearray()
    position = 0
    for size in [*splits, len(raw)]:
        content += b"".join(stream.feed(raw[position:position + size]))
        position += size
    final = stream.close()
    from dataclasses import replace

    return replace(final, content=bytes(content))


@settings(deadline=None, max_examples=150)
@given(message=responses_st, mode=st.sampled_from([KNOWN, INDET]),
       padding=st.integers(0, 4), truncate=st.booleans(),
       splits=st.lists(st.integers(0, 12), max_size=10))
def test_stream_decoder_matches_whole_decoder(message: bhttp.Response, mode: bhttp.Mode,
                                              padding: int, truncate: bool,
                                              splits: list[int]) -> None:
    raw = message.to_bytes(mode, padding=padding, truncate=truncate)
    assert _stream_decode(raw, splits) == message


@settings(deadline=None, max_examples=100)
@given(message=responses_st, mode=st.sampled_from([KNOWN, INDET]), data=st.data())
def test_stream_decoder_truncation_agrees_with_whole_decoder(
        message: bhttp.Response, mode: bhttp.Mode, data: st.DataObject) -> None:
    raw = message.to_bytes(mode)
    cut = data.draw(st.integers(0, len(raw)))
    try:
        whole: bhttp.Response | None = bhttp.decode_response(raw[:cut])
    except DecodeError:
        whole = None
    try:
        streamed: bhttp.Response | None = _stream_decode(raw[:cut], [3, 5])
    except DecodeError:
        streamed = None
    assert streamed == whole


def test_stream_decoder_releases_content_before_the_end() -> None:
    head = bhttp.encode_response_head(200, (("content-type", "text/plain"),))
    stream = bhttp.ResponseStream()
    assert stream.feed(head[:-1]) == [] and stream.head is None
    assert stream.feed(head[-1:]) == [] and stream.head is not None
    assert stream.head.header("content-type") == "text/plain"
    assert stream.feed(bhttp.encode_content_chunk(b"first")) == [b"first"]
    assert stream.feed(bhttp.encode_content_chunk(b"second")) == [b"second"]
    stream.feed(bhttp.encode_indeterminate_tail((("x-t", "1"),)))
    assert stream.close().trailers == (("x-t", "1"),)
