"""QUIC variable-length integers (RFC 9000 §16) and a bounds-checked byte reader."""

from __future__ import annotations

from ohttp_relay.consts import VARINT_MAX
from ohttp_relay.errors import Truncated


def encode_varint(value: int) -> bytes:
    """Shortest QUIC varint encoding of ``value``."""
    if value < 0 or value > VARINT_MAX:
        raise ValueError("varint out of range")
    if value < 1 << 6:
        return value.to_bytes(1, "big")
    if value < 1 << 14:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 1 << 30:
        return (value | 0x8000_0000).to_bytes(4, "big")
    return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")


class Reader:
    """Reads fields from a buffer; every short read raises :class:`DecodeError`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise Truncated(f"truncated {what}")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def varint(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise Truncated(f"truncated {what}")
        first = self.data[self.pos]
        size = 1 << (first >> 6)
        raw = self.take(size, what)
        return int.from_bytes(raw, "big") & ((1 << (8 * size - 2)) - 1)

    def peek_varint(self, what: str) -> int:
        pos = self.pos
        try:
            return self.varint(what)
        finally:
            self.pos = pos

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk
