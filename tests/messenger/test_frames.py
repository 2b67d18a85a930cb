"""The client's envelope and frame decoders: valid values round-trip; any bytes (and every
truncation or one-byte change of a valid frame) give a value or InvalidFrame, nothing else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from e2ee_core.client.frames import (
    GROUP,
    PAIRWISE,
    Frame,
    InvalidFrame,
    unwrap,
    wrap_group,
    wrap_pairwise,
)
from e2ee_core.content import Content, Text
from e2ee_core.errors import InvalidMessage

NAMES = st.from_regex(r"[a-z0-9_-]{1,32}", fullmatch=True)


@settings(deadline=None, max_examples=200)
@given(NAMES, st.text(max_size=200), st.integers(0, 2**62))
def test_frames_round_trip(destination: str, text: str, sent_at: int) -> None:
    frame = Frame(destination, Content.new(Text(text), sent_at_ms=sent_at))
    assert Frame.decode(frame.encode()) == frame
    assert unwrap(wrap_pairwise(frame.encode())) == (PAIRWISE, frame.encode())
    assert unwrap(wrap_group(b"sk")) == (GROUP, b"sk")


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_invalid_frame(data: bytes) -> None:
    for decode in (Frame.decode, unwrap):
        try:
            decode(data)
        except InvalidFrame:
            pass


@settings(deadline=None, max_examples=200)
@given(st.integers(0, 10_000), st.integers(0, 255), st.text(max_size=50))
def test_mutated_and_truncated_frames(position: int, value: int, text: str) -> None:
    encoded = Frame("bob", Content.new(Text(text), sent_at_ms=1)).encode()
    cut = encoded[:position % (len(encoded) + 1)]
    changed = bytearray(encoded)
    changed[position % len(encoded)] = value
    for data in (cut, bytes(changed)):
        try:
            Frame.decode(data)
        except InvalidFrame as exc:
            assert isinstance(exc, InvalidMessage)
