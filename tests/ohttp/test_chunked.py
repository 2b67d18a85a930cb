"""Chunked OHTTP (draft-ietf-ohai-chunked-ohttp-06): streaming, reordering, truncation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ohttp_relay import chunked, ohttp
from ohttp_relay.errors import DecodeError, DecryptError, OHTTPError

KEY = ohttp.GatewayKey.generate(4)


def _exchange(chunks: list[bytes], response_chunks: list[bytes]
              ) -> tuple[bytes, bytes, chunked.ChunkedResponseOpener]:
    message, opener = chunked.encapsulate_chunked_request(KEY.config, chunks)
    body, server = chunked.decapsulate_chunked_request(message, {4: KEY}.get)
    sealer = server.response_sealer()
    parts = [sealer.prefix()]
    parts += [sealer.seal(c) for c in response_chunks[:-1]]
    parts.append(sealer.seal(response_chunks[-1], final=True))
    return body, b"".join(parts), opener


@pytest.mark.parametrize("aead_id", [1, 2, 3])
def test_round_trip_streams_chunk_by_chunk(aead_id: int) -> None:
    suite = ohttp.SymmetricSuite(1, aead_id)
    sealer = chunked.ChunkedRequestSealer(KEY.config, suite=suite)
    wire = sealer.prefix() + sealer.seal(b"one") + sealer.seal(b"two") + \
        sealer.seal(b"three", final=True)
    opener = chunked.ChunkedRequestOpener({4: KEY}.get)
    seen = [piece for i in range(len(wire)) for piece in opener.feed(wire[i:i + 1])]
    assert seen == [b"one", b"two"]  # non-final chunks are released before the end
    assert opener.close() == b"three"
    response_sealer = opener.response_sealer()
    first = response_sealer.prefix() + response_sealer.seal(b"a" * 40000)
    last = response_sealer.seal(b"tail", final=True)
    client = sealer.response_opener()
    assert client.feed(first[:-1]) == []
    assert client.feed(first[-1:]) == [b"a" * 40000]  # released as soon as it is complete
    assert client.feed(last) == []
    assert client.close() == b"tail"


def test_truncation_at_every_length_is_detected() -> None:
    body, reply, _opener = _exchange([b"req-1", b"req-2"], [b"resp-1", b"resp-2"])
    assert body == b"req-1req-2"
    message, _ = chunked.encapsulate_chunked_request(KEY.config, [b"req-1", b"req-2"])
    for cut in range(len(message)):
        with pytest.raises((DecodeError, DecryptError)):
            chunked.decapsulate_chunked_request(message[:cut], {4: KEY}.get)
    for cut in range(len(reply)):
        _body, reply, opener = _exchange([b"x"], [b"resp-1", b"resp-2"])
        with pytest.raises((DecodeError, DecryptError)):
            opener.open_all(reply[:cut])


def test_non_final_chunk_used_as_final_is_rejected() -> None:
    """Dropping the final chunk and relabelling the last one as final fails (AAD "final")."""
    sealer = chunked.ChunkedRequestSealer(KEY.config)
    first = sealer.seal(b"one")
    sealer.seal(b"two", final=True)
    forged = sealer.prefix() + b"\x00" + first[1:]  # length varint of "one" is 1 byte
    with pytest.raises(DecryptError):
        chunked.decapsulate_chunked_request(forged, {4: KEY}.get)


def test_reordered_chunks_are_rejected() -> None:
    sealer = chunked.ChunkedRequestSealer(KEY.config)
    one, two = sealer.seal(b"one"), sealer.seal(b"two")
    last = sealer.seal(b"end", final=True)
    with pytest.raises(DecryptError):
        chunked.decapsulate_chunked_request(sealer.prefix() + two + one + last, {4: KEY}.get)


@settings(deadline=None, max_examples=100)
@given(st.binary(max_size=150))
def test_chunked_decoders_raise_only_ohttp_errors(data: bytes) -> None:
    try:
        chunked.decapsulate_chunked_request(bytes([4]) + data, {4: KEY}.get)
    except OHTTPError:
        pass
    _message, opener = chunked.encapsulate_chunked_request(KEY.config, [b"fixed"])
    try:
        opener.open_all(data)
    except OHTTPError:
        pass


@settings(deadline=None, max_examples=60)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=5),
       st.lists(st.binary(max_size=40), min_size=1, max_size=5))
def test_random_chunk_sequences_round_trip(req: list[bytes], resp: list[bytes]) -> None:
    body, reply, opener = _exchange(req, resp)
    assert body == b"".join(req)
    assert opener.open_all(reply) == b"".join(resp)
