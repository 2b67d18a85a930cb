"""The shared reader and QUIC varint codec (:mod:`service_kit.wire`) with this package's errors."""

from __future__ import annotations

from ohttp_relay.errors import Truncated
from service_kit import wire
from service_kit.wire import encode_varint

__all__ = ["Reader", "encode_varint"]


class Reader(wire.Reader):
    """Every short read raises :class:`~ohttp_relay.errors.Truncated`."""

    __slots__ = ()

    def __init__(self, data: bytes, pos: int = 0) -> None:
        super().__init__(data, pos, error=Truncated)
