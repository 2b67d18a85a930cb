"""What the Messenger hands to apps: stored messages, chat summaries, a contact's devices with
their safety numbers, and group conversation ids. Plain frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

from e2ee_core.client.errors import UnknownGroup
from e2ee_core.content import Body, Content, Text

__all__ = ["ChatSummary", "ContactDevices", "DeviceSafety", "Message", "group_conversation",
           "group_id_of"]

_GROUP_PREFIX = "group:"


def group_conversation(group_id: bytes) -> str:
    """The conversation id under which a group's messages are stored."""
    return _GROUP_PREFIX + group_id.hex()


def group_id_of(conversation: str) -> bytes | None:
    """The group id of a group conversation, None for a conversation with an account."""
    if not conversation.startswith(_GROUP_PREFIX):
        return None
    try:
        return bytes.fromhex(conversation[len(_GROUP_PREFIX):])
    except ValueError:
        raise UnknownGroup("malformed group conversation id") from None


@dataclass(frozen=True)
class Message:
    """A stored message as the app shows it (edits applied; ``content`` None once deleted
    for everyone). ``conversation`` is the other account's name, or ``group:<hex id>``.
    For an outgoing message, ``delivered_to`` and ``read_by`` name the accounts whose delivery
    and read receipts arrived (``status`` sums them up)."""

    conversation: str
    message_id: bytes
    sender: str
    sender_device: int
    outgoing: bool
    content: Content | None
    received_at_ms: int
    read_at_ms: int | None
    expires_at_ms: int | None
    edited: bool
    deleted: bool
    reactions: dict[str, str]
    delivered_to: tuple[str, ...] = field(default=())
    read_by: tuple[str, ...] = field(default=())

    @property
    def body(self) -> Body | None:
        return None if self.content is None else self.content.body

    @property
    def text(self) -> str | None:
        """The text of a text message, else None."""
        body = self.body
        return body.text if isinstance(body, Text) else None

    @property
    def status(self) -> str | None:
        """An outgoing message's state: ``sent`` (the server has it), ``delivered`` (a
        recipient device received it) or ``read``; None for an incoming message."""
        if not self.outgoing:
            return None
        if self.read_by:
            return "read"
        return "delivered" if self.delivered_to else "sent"

    def __repr__(self) -> str:  # never print content
        kind = None if self.content is None else self.content.type_id
        return (f"Message(conversation=<{len(self.conversation)} chars>, type={kind}, "
                f"outgoing={self.outgoing}, deleted={self.deleted})")


@dataclass(frozen=True)
class ChatSummary:
    """One conversation in the chat list: its last activity, unread count and last message."""

    conversation: str
    last_at_ms: int
    unread: int
    last: Message


@dataclass(frozen=True)
class DeviceSafety:
    """One device of a contact with the safety number between it and this device."""

    device_id: int
    identity_key: bytes
    safety_number: str


@dataclass(frozen=True)
class ContactDevices:
    """A contact's current devices, the combined safety number over both accounts' device sets
    (see :mod:`e2ee_core.client.safety`), and the verification state."""

    username: str
    devices: tuple[DeviceSafety, ...]
    combined_safety_number: str
    verified: bool
    changed: bool
