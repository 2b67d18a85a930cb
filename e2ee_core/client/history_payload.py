"""The plaintext of a history mailbox record (issue #15): :class:`HistoryPayload` (one stored
message as it is now, with its edited flag and reactions), its strict decoder, the queue's
deletion markers and the payload limits; the History errors are in
:mod:`e2ee_core.client.errors`. Sans I/O; used by :mod:`.history_saving`,
:mod:`.history_loading` and :mod:`.history_attachments`.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2ee_core.client.errors import InvalidHistoryPayload
from e2ee_core.content import MAX_EMOJI_BYTES, Content, ContentError

INBOX = "messages"  # the one inbox id this client uses
DELETION = b""  # a queued row with this payload deletes the message's record
# ... and one with 0x00 || attachment id also deletes the message's attachment reference
ATTACHMENT_DELETION = b"\x00"
PAYLOAD_VERSION = 2  # version 1 (no edited flag, no reactions) is still read
MAX_SENDER_LEN = 255
# Reactions kept in a message's record (the first by reactor): a record must stay under the
# server's blob limit (256 KiB) after padding; 128 * (2 + 255 + 64) bytes is 41 KiB at most,
# beside the largest text (80 KiB). A group of more reactors loses the rest in the mailbox.
MAX_HISTORY_REACTIONS = 128

Reactions = tuple[tuple[str, str], ...]
"""(reactor account, emoji) pairs, sorted by reactor, one per reactor."""


@dataclass(frozen=True)
class HistoryPayload:
    """What a mailbox record holds: one stored message, as it is now, of the conversation named
    by the record's thread id (bound by the record's aad). Version 2::

        0x02 || flags (bit 0: outgoing, bit 1: edited) || u32be(sender device)
        || u8 len || sender (UTF-8) || u16be n || n * (u8 len || reactor || u8 len || emoji)
        || Content.encode()

    (the content already carries an edit's text). Version 1, still read, is version 2 without
    the edited flag and the reactions: ``0x01 || flags (bit 0) || u32be || u8 len || sender
    || Content.encode()``. The reactors are strictly increasing (one canonical encoding).
    """

    sender: str
    sender_device: int
    outgoing: bool
    content: Content
    edited: bool = False
    reactions: Reactions = ()

    def encode(self) -> bytes:
        name = self.sender.encode("utf-8")
        if not 0 < len(name) <= MAX_SENDER_LEN or not 0 <= self.sender_device < 2**32:
            raise InvalidHistoryPayload("sender out of range")
        if len(self.reactions) > MAX_HISTORY_REACTIONS:
            raise InvalidHistoryPayload("too many reactions")
        out = [bytes([PAYLOAD_VERSION, int(self.outgoing) | int(self.edited) << 1]),
               self.sender_device.to_bytes(4, "big"), bytes([len(name)]), name,
               len(self.reactions).to_bytes(2, "big")]
        previous = b""
        for reactor, emoji in self.reactions:
            raw_reactor, raw_emoji = reactor.encode("utf-8"), emoji.encode("utf-8")
            if (not 0 < len(raw_reactor) <= MAX_SENDER_LEN or raw_reactor <= previous
                    or not 0 < len(raw_emoji) <= MAX_EMOJI_BYTES):
                raise InvalidHistoryPayload("reaction out of range")
            previous = raw_reactor
            out += [bytes([len(raw_reactor)]), raw_reactor, bytes([len(raw_emoji)]), raw_emoji]
        out.append(self.content.encode())
        return b"".join(out)

    @classmethod
    def decode(cls, data: bytes) -> HistoryPayload:
        """Strict decoder: :class:`InvalidHistoryPayload` on anything malformed."""
        if len(data) < 7 or data[0] not in (1, PAYLOAD_VERSION) or data[1] > (
                1 if data[0] == 1 else 3):
            raise InvalidHistoryPayload("unknown history payload")
        size = data[6]
        if size == 0 or len(data) < 7 + size:
            raise InvalidHistoryPayload("truncated history payload")
        pos = 7 + size
        reactions: list[tuple[str, str]] = []
        try:
            sender = data[7:pos].decode("utf-8")
            if data[0] == PAYLOAD_VERSION:
                if len(data) < pos + 2:
                    raise InvalidHistoryPayload("truncated history payload")
                count = int.from_bytes(data[pos:pos + 2], "big")
                pos += 2
                if count > MAX_HISTORY_REACTIONS:
                    raise InvalidHistoryPayload("too many reactions")
                previous = b""
                for _ in range(count):
                    raw_reactor, pos = _field(data, pos, MAX_SENDER_LEN)
                    raw_emoji, pos = _field(data, pos, MAX_EMOJI_BYTES)
                    if raw_reactor <= previous:
                        raise InvalidHistoryPayload("reactions out of order")
                    previous = raw_reactor
                    # Lengths and UTF-8 only: whether it is one emoji depends on the emoji
                    # data of the version that checks it, and a stored history must stay
                    # readable after an update (the reaction was checked when received).
                    reactions.append((raw_reactor.decode("utf-8"), raw_emoji.decode("utf-8")))
            content = Content.decode(data[pos:])
        except (UnicodeDecodeError, ContentError):
            raise InvalidHistoryPayload("malformed history payload") from None
        return cls(sender, int.from_bytes(data[2:6], "big"), bool(data[1] & 1), content,
                   edited=bool(data[1] & 2), reactions=tuple(reactions))


def _field(data: bytes, pos: int, limit: int) -> tuple[bytes, int]:
    """A u8-length-prefixed non-empty field of at most ``limit`` bytes at ``pos``."""
    if pos >= len(data) or not 0 < data[pos] <= limit or len(data) < pos + 1 + data[pos]:
        raise InvalidHistoryPayload("truncated history payload")
    end = pos + 1 + data[pos]
    return data[pos + 1:end], end


def is_deletion(payload: bytes) -> bool:
    return payload == DELETION or payload[:1] == ATTACHMENT_DELETION


def pointer_content(content: Content) -> Content:
    """What an attachment reference holds: the message's pointer alone (no group id, timer)."""
    return Content(content.body, content.message_id, content.sent_at_ms)


def kept_reactions(reactions: dict[str, str]) -> Reactions:
    """The reactions a record keeps: the first MAX_HISTORY_REACTIONS by reactor."""
    # str order is code-point order, which is UTF-8 byte order: the decoder's order
    return tuple(sorted((r, e) for r, e in reactions.items()
                        if 0 < len(r.encode("utf-8")) <= MAX_SENDER_LEN)[:MAX_HISTORY_REACTIONS])

