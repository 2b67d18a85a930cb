"""The one bounded byte reader and QUIC variable-length integer codec (RFC 9000 §16) that every
decoder of untrusted input uses (Binary HTTP, chunked OHTTP, RFC 9578 batched tokens, token
wire types, ratchet state). I/O-free.

A short read, a trailing byte or a non-minimal varint (where the format forbids one) raises the
caller's own error class (``error=``), so each package keeps its one exception hierarchy.
"""

from __future__ import annotations

import struct
from typing import Any

from service_kit.errors import ServiceKitError

#: Largest QUIC varint (62 bits).
VARINT_MAX = (1 << 62) - 1


class WireError(ServiceKitError):
    """Malformed input, when the caller names no error class of its own."""


def encode_varint(value: int) -> bytes:
    """The shortest QUIC varint encoding of ``value`` (``ValueError`` outside 0..2^62-1)."""
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
    """Sequential, bounds-checked reads over a byte string."""

    __slots__ = ("data", "error", "pos")

    def __init__(self, data: bytes, pos: int = 0, *,
                 error: type[Exception] = WireError) -> None:
        self.data = data
        self.pos = pos
        self.error = error

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int, what: str = "input") -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.error(f"truncated {what}")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk

    def uint(self, n: int, what: str = "integer") -> int:
        return int.from_bytes(self.take(n, what), "big")

    def u8(self, what: str = "integer") -> int:
        return self.take(1, what)[0]

    def u16(self, what: str = "integer") -> int:
        return self.uint(2, what)

    def unpack(self, layout: struct.Struct, what: str = "record") -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size, what))

    def varint(self, what: str = "varint", *, minimal: bool = False) -> int:
        if self.pos >= len(self.data):
            raise self.error(f"truncated {what}")
        size = 1 << (self.data[self.pos] >> 6)
        value = int.from_bytes(self.take(size, what), "big") & ((1 << (8 * size - 2)) - 1)
        if minimal and size > 1 and value < 1 << (8 * (size // 2) - 2):
            raise self.error(f"{what} not minimally encoded")
        return value

    def peek_varint(self, what: str = "varint") -> int:
        pos = self.pos
        try:
            return self.varint(what)
        finally:
            self.pos = pos

    def rest(self) -> bytes:
        chunk = self.data[self.pos:]
        self.pos = len(self.data)
        return chunk

    def end(self) -> None:
        """Refuse trailing bytes."""
        if self.pos != len(self.data):
            raise self.error("trailing bytes")
