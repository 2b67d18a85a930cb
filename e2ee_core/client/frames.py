"""The bytes a Messenger puts in a server envelope, and inside a pairwise session. Sans I/O.

Envelope content (opaque to the server)::

    0x01 || Ciphertext.to_bytes()      a pairwise Signal message (e2ee_core.device)
    0x02 || SenderKeyMessage           a group message under the sender's Sender Key

Plaintext inside a pairwise message (the *frame*)::

    version (0x01) || len(destination) (1 byte) || destination (UTF-8) || Content.encode()

``destination`` is the account the message was addressed to: the recipient device learns it is
a message to itself, and the sender's own other devices learn which conversation a sent
message belongs to (the "sync transcript"). Two fixed fields do not justify a protobuf
schema: the content after them is already a versioned protobuf (e2ee_core.content).
"""

from __future__ import annotations

from dataclasses import dataclass

from e2ee_core.client.consts import FRAME_VERSION
from e2ee_core.content import Content, ContentError
from e2ee_core.errors import InvalidMessage

PAIRWISE = 0x01
GROUP = 0x02

_MAX_NAME = 255


class InvalidFrame(InvalidMessage):
    """An envelope or frame that is malformed (decrypted but not understood)."""


def wrap_pairwise(ciphertext: bytes) -> bytes:
    return bytes([PAIRWISE]) + ciphertext


def wrap_group(sender_key_message: bytes) -> bytes:
    return bytes([GROUP]) + sender_key_message


def unwrap(envelope_content: bytes) -> tuple[int, bytes]:
    """``(PAIRWISE | GROUP, payload)``; raises :class:`InvalidFrame` otherwise."""
    if len(envelope_content) < 2 or envelope_content[0] not in (PAIRWISE, GROUP):
        raise InvalidFrame("unknown envelope kind")
    return envelope_content[0], envelope_content[1:]


@dataclass(frozen=True)
class Frame:
    """A content addressed to the account ``destination``."""

    destination: str
    content: Content

    def encode(self) -> bytes:
        name = self.destination.encode("utf-8")
        if not 0 < len(name) <= _MAX_NAME:
            raise InvalidFrame("destination name out of range")
        return bytes([FRAME_VERSION, len(name)]) + name + self.content.encode()

    @classmethod
    def decode(cls, data: bytes) -> Frame:
        if len(data) < 3 or data[0] != FRAME_VERSION:
            raise InvalidFrame("unknown frame version")
        size = data[1]
        if size == 0 or len(data) < 2 + size:
            raise InvalidFrame("truncated frame")
        try:
            destination = data[2:2 + size].decode("utf-8")
            content = Content.decode(data[2 + size:])
        except (UnicodeDecodeError, ContentError):
            raise InvalidFrame("malformed frame") from None
        return cls(destination, content)
