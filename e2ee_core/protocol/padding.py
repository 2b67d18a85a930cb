"""Signal's transport padding: message || 0x80 || 0x00..., hiding lengths in 160-byte steps.

The padded length is ``ceil((len + 2) / 160) * 160 - 1`` exactly as Signal's apps compute it
(the "- 1" is historical: a version byte once took that place), so a 100-byte message becomes
159 bytes before AES-CBC, and CBC's own PKCS#7 padding brings it to 160.
"""

from __future__ import annotations

from e2ee_core.errors import InvalidMessage
from e2ee_core.protocol.consts import PADDING_BLOCK, PADDING_TERMINATOR


def padded_length(message_length: int) -> int:
    with_terminator = message_length + 1
    parts = -(-with_terminator // PADDING_BLOCK)
    return parts * PADDING_BLOCK


def pad(message: bytes) -> bytes:
    """Append 0x80 and zeros up to Signal's padded length."""
    total = padded_length(len(message) + 1) - 1
    return message + bytes([PADDING_TERMINATOR]) + b"\x00" * (total - len(message) - 1)


def unpad(padded: bytes) -> bytes:
    """Strip the zeros and the 0x80 terminator; anything else is :class:`InvalidMessage`."""
    stripped = padded.rstrip(b"\x00")
    if not stripped or stripped[-1] != PADDING_TERMINATOR:
        raise InvalidMessage("invalid plaintext padding")
    return stripped[:-1]
