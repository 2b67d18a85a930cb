"""The typed, versioned message content that travels *inside* the end-to-end encryption.

Everything in a :class:`Content` is encrypted: the server relays it as an opaque, padded blob and
never learns whether a message is a text, a reaction, a read receipt or a timer change. What the
server does see (routing metadata) is listed in docs/e2ee-features.md, "What the server sees".

Wire format: a protobuf ``Content`` envelope (version, message id, sent time, expire timer,
optional group id, body type number, body bytes) whose body is a type-specific protobuf message.
The schemas are proto2, built at run time from ``descriptor_pb2`` in a private descriptor pool
(no generated code, no clash with other packages' definitions).

Why protobuf rather than a home-made TLV codec: Signal's own ``Content``/``DataMessage`` are
protobuf, so the layout is familiar to anyone who knows the Signal model; proto2 gives field
presence and tolerates fields added by newer clients; and the parser is a maintained C library,
so untrusted bytes never meet hand-written length arithmetic. ``SerializeToString(
deterministic=True)`` plus our fixed field order makes :meth:`Content.encode` deterministic.
Text fields travel as ``bytes`` and are decoded as strict UTF-8 here, so malformed text is a
typed error rather than whatever the runtime's proto2 string handling would do.

Forward compatibility: a body type number this client does not know decodes to
:class:`Unknown` (type number and raw body kept) so an app can show "update to see this message";
an envelope with a *newer version* than :data:`CONTENT_VERSION` raises
:class:`UnsupportedContentVersion`.

Usage::

    >>> c = Content.new(Text("hello"), sent_at_ms=1_700_000_000_000)
    >>> Content.decode(c.encode()) == c
    True
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, TypeAlias

import emoji as emoji_data

from e2ee_core import protobuf
from e2ee_core.errors import (  # noqa: F401 - part of this module's API
    ContentDecodeError,
    ContentError,
    E2EEError,
    InvalidContent,
    UnsupportedContentVersion,
)

__all__ = [
    "CONTENT_VERSION",
    "DEFAULT_TIMER_SECONDS",
    "MAX_CONTENT_BYTES",
    "MAX_EMOJI_BYTES",
    "MAX_EXPIRE_TIMER_SECONDS",
    "MAX_FILE_NAME_BYTES",
    "MAX_GROUP_MEMBERS",
    "MAX_RECEIPT_IDS",
    "MAX_TEXT_CHARS",
    "MESSAGE_ID_LENGTH",
    "AttachmentPointer",
    "Body",
    "Content",
    "ContentDecodeError",
    "ContentError",
    "ContentType",
    "Delete",
    "DeliveryReceipt",
    "Edit",
    "GroupMembershipChange",
    "InvalidContent",
    "Reaction",
    "ReadReceipt",
    "SenderKeyDistribution",
    "Sticker",
    "Text",
    "TimerChange",
    "Unknown",
    "UnsupportedContentVersion",
    "new_message_id",
]

# ---------------------------------------------------------------------------------------------
# Limits (the reason beside each). Decoding enforces every one of them.
# ---------------------------------------------------------------------------------------------
CONTENT_VERSION = 1
"""The envelope version this client writes and the newest it reads."""
MESSAGE_ID_LENGTH = 16
"""Random 128-bit message ids: collision-free without coordination between devices."""
MAX_CONTENT_BYTES = 256 * 1024
"""Whole encoded content; bigger payloads go out as attachments (bounds parser work)."""
MAX_TEXT_CHARS = 20_000
"""Messenger's text limit, in code points; longer texts are sent as attachments."""
MAX_EMOJI_BYTES = 64
"""A reaction is one emoji; the longest RGI sequences (tag flags, ZWJ families) fit in 64."""
MAX_STICKER_ID_CHARS = 64
"""Sticker catalog ids are short ASCII identifiers."""
MAX_RECEIPT_IDS = 100
"""Ids per read receipt; clients batch larger backlogs into several receipts."""
MAX_FILE_NAME_BYTES = 255
"""A file name on common file systems."""
MAX_CONTENT_TYPE_CHARS = 127
"""RFC 6838 caps type and subtype at 127 characters each; we cap the whole string."""
MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024
"""Largest attachment plaintext (Signal's limit); padding buckets stay below 2**32."""
MAX_BLOB_ID_LENGTH = 64
"""Opaque blob ids chosen by the uploader or the server."""
ATTACHMENT_KEY_LENGTH = 32
"""AES-256 key (see e2ee_core.attachments)."""
ATTACHMENT_DIGEST_LENGTH = 32
"""SHA-256 of the blob."""
MAX_EXPIRE_TIMER_SECONDS = 90 * 24 * 3600
"""Longest disappearing-message timer offered (WhatsApp's 90 days)."""
DEFAULT_TIMER_SECONDS = 24 * 3600
"""The timer a conversation gets when disappearing messages are switched on without a value."""
MAX_GROUP_MEMBERS = 1024
"""Members per group (WhatsApp's cap); bounds membership-change messages."""
MAX_MEMBER_ID_CHARS = 128
"""Account ids are short opaque strings."""
MAX_GROUP_ID_LENGTH = 32
MIN_GROUP_ID_LENGTH = 16
MAX_DISTRIBUTION_BYTES = 1024
"""A serialized SenderKeyDistributionMessage is ~130 bytes; leave room for future fields."""
MAX_UNKNOWN_TYPE = 2**16 - 1

_STICKER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
# Format characters that emoji sequences use: ZWJ, variation selectors, tag characters.
_EMOJI_JOINERS = frozenset(["\u200d", "\ufe0e", "\ufe0f", *map(chr, range(0xE0020, 0xE0080))])
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*"
                           r"(;[ -~]*)?")


# ---------------------------------------------------------------------------------------------
# Errors. Messages name the field and the rule, never the value.
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Schemas (proto2) built at run time in a private pool.
# ---------------------------------------------------------------------------------------------
_OPT, _REP = protobuf.OPT, protobuf.REP
_BYTES, _U32, _U64, _BOOL = protobuf.BYTES, protobuf.U32, protobuf.U64, protobuf.BOOL

_SCHEMA: dict[str, list[protobuf.Field]] = {
    "Content": [("version", 1, _U32, _OPT), ("message_id", 2, _BYTES, _OPT),
                ("sent_at_ms", 3, _U64, _OPT), ("expire_timer", 4, _U32, _OPT),
                ("group_id", 5, _BYTES, _OPT), ("type", 6, _U32, _OPT),
                ("body", 7, _BYTES, _OPT)],
    "Text": [("text", 1, _BYTES, _OPT)],
    "Sticker": [("sticker_id", 1, _BYTES, _OPT)],
    "Reaction": [("target_id", 1, _BYTES, _OPT), ("emoji", 2, _BYTES, _OPT),
                 ("remove", 3, _BOOL, _OPT)],
    "Edit": [("target_id", 1, _BYTES, _OPT), ("text", 2, _BYTES, _OPT)],
    "Delete": [("target_id", 1, _BYTES, _OPT)],
    "ReadReceipt": [("message_ids", 1, _BYTES, _REP)],
    "AttachmentPointer": [("blob_id", 1, _BYTES, _OPT), ("key", 2, _BYTES, _OPT),
                          ("digest", 3, _BYTES, _OPT), ("size", 4, _U64, _OPT),
                          ("content_type", 5, _BYTES, _OPT), ("file_name", 6, _BYTES, _OPT)],
    "TimerChange": [("seconds", 1, _U32, _OPT)],
    "SenderKeyDistribution": [("message", 1, _BYTES, _OPT)],
    "GroupMembershipChange": [("epoch", 1, _U64, _OPT), ("members", 2, _BYTES, _REP),
                              ("added", 3, _BYTES, _REP), ("removed", 4, _BYTES, _REP)],
}


_PB = protobuf.build_messages("e2ee_core/content.proto", "e2ee.content", _SCHEMA)


def _parse(kind: str, data: bytes) -> Any:
    return protobuf.parse(_PB, kind, data, ContentDecodeError)


def _serialize(kind: str, **fields: Any) -> bytes:
    msg: Any = _PB[kind]()
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            getattr(msg, name).extend(value)
        else:
            setattr(msg, name, value)
    return protobuf.serialize(msg)


def _opt(msg: Any, name: str) -> Any:
    return getattr(msg, name) if msg.HasField(name) else None


def _req(msg: Any, kind: str, name: str) -> Any:
    return protobuf.require(msg, name, ContentDecodeError, kind)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ContentDecodeError(f"{what} is not UTF-8") from None


# ---------------------------------------------------------------------------------------------
# Validation helpers
# ---------------------------------------------------------------------------------------------
def _check_id(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != MESSAGE_ID_LENGTH:
        raise InvalidContent(f"{what} must be {MESSAGE_ID_LENGTH} bytes")


def _check_text(value: str, what: str, max_chars: int) -> None:
    if not isinstance(value, str):
        raise InvalidContent(f"{what} must be a str")
    if len(value) > max_chars:
        raise InvalidContent(f"{what} is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidContent(f"{what} contains unpaired surrogates") from None


def _check_member(value: str) -> None:
    _check_text(value, "member id", MAX_MEMBER_ID_CHARS)
    if not value or not value.isprintable():
        raise InvalidContent("member id must be non-empty printable text")


def new_message_id() -> bytes:
    """A fresh random 16-byte message id."""
    return secrets.token_bytes(MESSAGE_ID_LENGTH)


# ---------------------------------------------------------------------------------------------
# Bodies
# ---------------------------------------------------------------------------------------------
class ContentType(IntEnum):
    """Body type numbers on the wire. Never reuse a number; add new types at the end."""

    TEXT = 1
    STICKER = 2
    REACTION = 3
    EDIT = 4
    DELETE = 5
    READ_RECEIPT = 6
    ATTACHMENT = 7
    TIMER_CHANGE = 8
    SENDER_KEY_DISTRIBUTION = 9
    GROUP_MEMBERSHIP_CHANGE = 10
    DELIVERY_RECEIPT = 11


@dataclass(frozen=True)
class Text:
    """A text message."""

    text: str
    TYPE: ClassVar[ContentType] = ContentType.TEXT

    def __post_init__(self) -> None:
        _check_text(self.text, "text", MAX_TEXT_CHARS)

    def __repr__(self) -> str:  # plaintext stays out of logs and tracebacks
        return f"Text(<{len(self.text)} chars>)"

    def _encode_body(self) -> bytes:
        return _serialize("Text", text=self.text.encode("utf-8"))

    @classmethod
    def _decode_body(cls, data: bytes) -> Text:
        msg = _parse("Text", data)
        return cls(_utf8(_req(msg, "Text", "text"), "text"))


@dataclass(frozen=True)
class Sticker:
    """A sticker, by its id in the sticker catalog (``sticker_search``)."""

    sticker_id: str
    TYPE: ClassVar[ContentType] = ContentType.STICKER

    def __post_init__(self) -> None:
        _check_text(self.sticker_id, "sticker id", MAX_STICKER_ID_CHARS)
        if not self.sticker_id.isascii() or not _STICKER_ID.fullmatch(self.sticker_id):
            raise InvalidContent("sticker id must match [A-Za-z0-9][A-Za-z0-9._:-]*")

    def _encode_body(self) -> bytes:
        return _serialize("Sticker", sticker_id=self.sticker_id.encode("ascii"))

    @classmethod
    def _decode_body(cls, data: bytes) -> Sticker:
        msg = _parse("Sticker", data)
        return cls(_utf8(_req(msg, "Sticker", "sticker_id"), "sticker id"))


@dataclass(frozen=True)
class Reaction:
    """An emoji reaction to ``target_id``; ``emoji=None`` removes the sender's reaction."""

    target_id: bytes
    emoji: str | None
    TYPE: ClassVar[ContentType] = ContentType.REACTION

    def __post_init__(self) -> None:
        _check_id(self.target_id, "reaction target id")
        if self.emoji is not None:
            _check_text(self.emoji, "emoji", MAX_EMOJI_BYTES)
            if (not self.emoji or len(self.emoji.encode("utf-8")) > MAX_EMOJI_BYTES
                    or any(unicodedata.category(c)[0] in "CZ" and c not in _EMOJI_JOINERS
                           for c in self.emoji)):
                raise InvalidContent(f"emoji must be 1..{MAX_EMOJI_BYTES} bytes, no controls "
                                     "or spaces")
            # One emoji (a sequence with modifiers, ZWJ or tags counts as one), by the Unicode
            # emoji data the maintained `emoji` package carries: a reaction is not free text.
            if not emoji_data.is_emoji(self.emoji):
                raise InvalidContent("a reaction must be one emoji")

    @property
    def is_removal(self) -> bool:
        return self.emoji is None

    def _encode_body(self) -> bytes:
        if self.emoji is None:
            return _serialize("Reaction", target_id=self.target_id, remove=True)
        return _serialize("Reaction", target_id=self.target_id, emoji=self.emoji.encode("utf-8"))

    @classmethod
    def _decode_body(cls, data: bytes) -> Reaction:
        msg = _parse("Reaction", data)
        target = _req(msg, "Reaction", "target_id")
        emoji = _opt(msg, "emoji")
        remove = bool(_opt(msg, "remove"))
        if remove == (emoji is not None):
            raise ContentDecodeError("Reaction needs exactly one of emoji and remove")
        return cls(target, None if remove else _utf8(emoji, "emoji"))


@dataclass(frozen=True)
class Edit:
    """Replace the text of the sender's own earlier message ``target_id``."""

    target_id: bytes
    text: str
    TYPE: ClassVar[ContentType] = ContentType.EDIT

    def __post_init__(self) -> None:
        _check_id(self.target_id, "edit target id")
        _check_text(self.text, "text", MAX_TEXT_CHARS)

    def __repr__(self) -> str:
        return f"Edit(target_id={self.target_id.hex()}, <{len(self.text)} chars>)"

    def _encode_body(self) -> bytes:
        return _serialize("Edit", target_id=self.target_id, text=self.text.encode("utf-8"))

    @classmethod
    def _decode_body(cls, data: bytes) -> Edit:
        msg = _parse("Edit", data)
        return cls(_req(msg, "Edit", "target_id"), _utf8(_req(msg, "Edit", "text"), "text"))


@dataclass(frozen=True)
class Delete:
    """Delete-for-everyone of the sender's own earlier message ``target_id``."""

    target_id: bytes
    TYPE: ClassVar[ContentType] = ContentType.DELETE

    def __post_init__(self) -> None:
        _check_id(self.target_id, "delete target id")

    def _encode_body(self) -> bytes:
        return _serialize("Delete", target_id=self.target_id)

    @classmethod
    def _decode_body(cls, data: bytes) -> Delete:
        return cls(_req(_parse("Delete", data), "Delete", "target_id"))


@dataclass(frozen=True)
class ReadReceipt:
    """The sender has read these messages (at the content's ``sent_at_ms``)."""

    message_ids: tuple[bytes, ...]
    TYPE: ClassVar[ContentType] = ContentType.READ_RECEIPT

    def __post_init__(self) -> None:
        if not isinstance(self.message_ids, tuple):
            raise InvalidContent("message ids must be a tuple")
        if not 1 <= len(self.message_ids) <= MAX_RECEIPT_IDS:
            raise InvalidContent(f"a receipt holds 1..{MAX_RECEIPT_IDS} message ids")
        for mid in self.message_ids:
            _check_id(mid, "receipt message id")
        if len(set(self.message_ids)) != len(self.message_ids):
            raise InvalidContent("receipt message ids must be distinct")

    def _encode_body(self) -> bytes:
        return _serialize("ReadReceipt", message_ids=list(self.message_ids))

    @classmethod
    def _decode_body(cls, data: bytes) -> ReadReceipt:
        msg = _parse("ReadReceipt", data)
        if len(msg.message_ids) > MAX_RECEIPT_IDS:  # before copying a huge list
            raise ContentDecodeError("too many receipt ids")
        return cls(tuple(msg.message_ids))


@dataclass(frozen=True)
class DeliveryReceipt:
    """A device of the sender has received these messages (at the content's ``sent_at_ms``).
    Same body encoding and limits as :class:`ReadReceipt`; only the type number differs (not a
    subclass: a delivery is never taken for a read)."""

    message_ids: tuple[bytes, ...]
    TYPE: ClassVar[ContentType] = ContentType.DELIVERY_RECEIPT

    def __post_init__(self) -> None:
        ReadReceipt(self.message_ids)  # the same checks

    def _encode_body(self) -> bytes:
        return ReadReceipt(self.message_ids)._encode_body()

    @classmethod
    def _decode_body(cls, data: bytes) -> DeliveryReceipt:
        return cls(ReadReceipt._decode_body(data).message_ids)


@dataclass(frozen=True)
class AttachmentPointer:
    """Where an encrypted attachment blob lives and how to open it (see e2ee_core.attachments).

    ``size`` is the plaintext size (the blob is padded); ``digest`` is SHA-256 of the blob and is
    checked before decrypting; ``key`` is the attachment's own fresh AES-256 key.
    """

    blob_id: bytes
    key: bytes
    digest: bytes
    size: int
    content_type: str
    file_name: str | None = None
    TYPE: ClassVar[ContentType] = ContentType.ATTACHMENT

    def __post_init__(self) -> None:
        if not isinstance(self.blob_id, bytes) or not 1 <= len(self.blob_id) <= MAX_BLOB_ID_LENGTH:
            raise InvalidContent(f"blob id must be 1..{MAX_BLOB_ID_LENGTH} bytes")
        if not isinstance(self.key, bytes) or len(self.key) != ATTACHMENT_KEY_LENGTH:
            raise InvalidContent(f"attachment key must be {ATTACHMENT_KEY_LENGTH} bytes")
        if not isinstance(self.digest, bytes) or len(self.digest) != ATTACHMENT_DIGEST_LENGTH:
            raise InvalidContent(f"attachment digest must be {ATTACHMENT_DIGEST_LENGTH} bytes")
        if (not isinstance(self.size, int) or isinstance(self.size, bool)
                or not 0 <= self.size <= MAX_ATTACHMENT_BYTES):
            raise InvalidContent(f"attachment size must be 0..{MAX_ATTACHMENT_BYTES}")
        _check_text(self.content_type, "content type", MAX_CONTENT_TYPE_CHARS)
        if not self.content_type.isascii() or not _CONTENT_TYPE.fullmatch(self.content_type):
            raise InvalidContent("content type must be a type/subtype media type")
        if self.file_name is not None:
            _check_text(self.file_name, "file name", MAX_FILE_NAME_BYTES)
            if (not self.file_name or len(self.file_name.encode("utf-8")) > MAX_FILE_NAME_BYTES
                    or not self.file_name.isprintable() or "/" in self.file_name
                    or "\\" in self.file_name or self.file_name in (".", "..")):
                raise InvalidContent("file name must be a plain printable name, no path")

    def __repr__(self) -> str:  # never print the key
        return (f"AttachmentPointer(blob_id={self.blob_id.hex()}, size={self.size}, "
                f"content_type={self.content_type!r}, key=<redacted>)")

    def _encode_body(self) -> bytes:
        return _serialize(
            "AttachmentPointer", blob_id=self.blob_id, key=self.key, digest=self.digest,
            size=self.size, content_type=self.content_type.encode("ascii"),
            file_name=None if self.file_name is None else self.file_name.encode("utf-8"))

    @classmethod
    def _decode_body(cls, data: bytes) -> AttachmentPointer:
        msg = _parse("AttachmentPointer", data)
        kind = "AttachmentPointer"
        name = _opt(msg, "file_name")
        return cls(_req(msg, kind, "blob_id"), _req(msg, kind, "key"), _req(msg, kind, "digest"),
                   _req(msg, kind, "size"), _utf8(_req(msg, kind, "content_type"), "content type"),
                   None if name is None else _utf8(name, "file name"))


@dataclass(frozen=True)
class TimerChange:
    """Set the conversation's disappearing-message timer; ``seconds=None`` turns it off."""

    seconds: int | None
    TYPE: ClassVar[ContentType] = ContentType.TIMER_CHANGE

    def __post_init__(self) -> None:
        if self.seconds is not None and (
                not isinstance(self.seconds, int) or isinstance(self.seconds, bool)
                or not 1 <= self.seconds <= MAX_EXPIRE_TIMER_SECONDS):
            raise InvalidContent(f"timer must be None or 1..{MAX_EXPIRE_TIMER_SECONDS} seconds")

    def _encode_body(self) -> bytes:
        return _serialize("TimerChange", seconds=self.seconds or 0)

    @classmethod
    def _decode_body(cls, data: bytes) -> TimerChange:
        seconds = _req(_parse("TimerChange", data), "TimerChange", "seconds")
        return cls(seconds or None)


@dataclass(frozen=True)
class SenderKeyDistribution:
    """A serialized SenderKeyDistributionMessage for the group named in the envelope.

    Sent over the pairwise (1:1) sessions only, never with the group's sender key.
    """

    message: bytes
    TYPE: ClassVar[ContentType] = ContentType.SENDER_KEY_DISTRIBUTION

    def __post_init__(self) -> None:
        if (not isinstance(self.message, bytes)
                or not 1 <= len(self.message) <= MAX_DISTRIBUTION_BYTES):
            raise InvalidContent(f"distribution message must be 1..{MAX_DISTRIBUTION_BYTES} bytes")

    def __repr__(self) -> str:  # holds a chain key
        return "SenderKeyDistribution(<redacted>)"

    def _encode_body(self) -> bytes:
        return _serialize("SenderKeyDistribution", message=self.message)

    @classmethod
    def _decode_body(cls, data: bytes) -> SenderKeyDistribution:
        msg = _parse("SenderKeyDistribution", data)
        return cls(_req(msg, "SenderKeyDistribution", "message"))


def _members(values: Iterable[str], what: str) -> None:
    values = tuple(values)
    if len(values) > MAX_GROUP_MEMBERS:
        raise InvalidContent(f"{what}: more than {MAX_GROUP_MEMBERS} members")
    for value in values:
        _check_member(value)
    if list(values) != sorted(set(values)):
        raise InvalidContent(f"{what} must be sorted and distinct")


@dataclass(frozen=True)
class GroupMembershipChange:
    """The group (named in the envelope) moves to ``epoch`` with ``members``.

    ``added`` and ``removed`` say what changed; every tuple is sorted and distinct so that the
    encoding is canonical.
    """

    epoch: int
    members: tuple[str, ...]
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    TYPE: ClassVar[ContentType] = ContentType.GROUP_MEMBERSHIP_CHANGE

    def __post_init__(self) -> None:
        if (not isinstance(self.epoch, int) or isinstance(self.epoch, bool)
                or not 0 <= self.epoch < 2**63):
            raise InvalidContent("epoch must be 0..2**63-1")
        for what, values in (("members", self.members), ("added", self.added),
                             ("removed", self.removed)):
            if not isinstance(values, tuple):
                raise InvalidContent(f"{what} must be a tuple")
            _members(values, what)
        if not self.members:
            raise InvalidContent("a group has at least one member")
        if not set(self.added) <= set(self.members):
            raise InvalidContent("added members must be members")
        if set(self.removed) & set(self.members):
            raise InvalidContent("removed members cannot be members")

    def _encode_body(self) -> bytes:
        return _serialize("GroupMembershipChange", epoch=self.epoch,
                          members=[m.encode("utf-8") for m in self.members],
                          added=[m.encode("utf-8") for m in self.added],
                          removed=[m.encode("utf-8") for m in self.removed])

    @classmethod
    def _decode_body(cls, data: bytes) -> GroupMembershipChange:
        msg = _parse("GroupMembershipChange", data)
        kind = "GroupMembershipChange"
        lists = []
        for name in ("members", "added", "removed"):
            raw = getattr(msg, name)
            if len(raw) > MAX_GROUP_MEMBERS:
                raise ContentDecodeError(f"{kind}.{name} too long")
            lists.append(tuple(_utf8(m, "member id") for m in raw))
        return cls(_req(msg, kind, "epoch"), lists[0], lists[1], lists[2])


@dataclass(frozen=True)
class Unknown:
    """A body type this client does not know (written by a newer client); kept verbatim."""

    type_id: int
    body: bytes

    def __post_init__(self) -> None:
        if self.type_id in _BODY_TYPES or not 0 < self.type_id <= MAX_UNKNOWN_TYPE:
            raise InvalidContent("unknown type id must be an unassigned number 1..65535")
        if not isinstance(self.body, bytes):
            raise InvalidContent("unknown body must be bytes")

    def __repr__(self) -> str:
        return f"Unknown(type_id={self.type_id}, body=<{len(self.body)} bytes>)"


KnownBody: TypeAlias = (Text | Sticker | Reaction | Edit | Delete | ReadReceipt | AttachmentPointer
                        | TimerChange | SenderKeyDistribution | GroupMembershipChange
                        | DeliveryReceipt)
Body: TypeAlias = KnownBody | Unknown

_BODY_TYPES: dict[int, type[KnownBody]] = {
    cls.TYPE: cls for cls in (Text, Sticker, Reaction, Edit, Delete, ReadReceipt,
                              AttachmentPointer, TimerChange, SenderKeyDistribution,
                              GroupMembershipChange, DeliveryReceipt)
}


# ---------------------------------------------------------------------------------------------
# The envelope
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Content:
    """One message's encrypted content: a body plus the fields every message carries.

    ``message_id`` is random (16 bytes); ``sent_at_ms`` is the sender's clock in milliseconds
    since the Unix epoch; ``expire_timer`` is the disappearing timer in seconds the sender applied
    (``None``: does not disappear); ``group_id`` names the group for group messages.
    """

    body: Body
    message_id: bytes
    sent_at_ms: int
    expire_timer: int | None = None
    group_id: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.body, (*_BODY_TYPES.values(), Unknown)):
            raise InvalidContent("body must be a content body type")
        _check_id(self.message_id, "message id")
        if (not isinstance(self.sent_at_ms, int) or isinstance(self.sent_at_ms, bool)
                or not 0 <= self.sent_at_ms < 2**63):
            raise InvalidContent("sent time must be 0..2**63-1 ms")
        TimerChange(self.expire_timer)  # same rule as a timer change
        if self.group_id is not None and (
                not isinstance(self.group_id, bytes)
                or not MIN_GROUP_ID_LENGTH <= len(self.group_id) <= MAX_GROUP_ID_LENGTH):
            raise InvalidContent(
                f"group id must be {MIN_GROUP_ID_LENGTH}..{MAX_GROUP_ID_LENGTH} bytes")

    @classmethod
    def new(cls, body: Body, *, sent_at_ms: int, expire_timer: int | None = None,
            group_id: bytes | None = None) -> Content:
        """A content with a fresh random message id."""
        return cls(body, new_message_id(), sent_at_ms, expire_timer, group_id)

    @property
    def type_id(self) -> int:
        return self.body.type_id if isinstance(self.body, Unknown) else int(self.body.TYPE)

    def encode(self) -> bytes:
        """Deterministic protobuf encoding (the plaintext handed to the session/group cipher)."""
        body = self.body.body if isinstance(self.body, Unknown) else self.body._encode_body()
        out = _serialize("Content", version=CONTENT_VERSION, message_id=self.message_id,
                         sent_at_ms=self.sent_at_ms, expire_timer=self.expire_timer,
                         group_id=self.group_id, type=self.type_id, body=body)
        if len(out) > MAX_CONTENT_BYTES:
            raise InvalidContent(f"encoded content exceeds {MAX_CONTENT_BYTES} bytes")
        return out

    @classmethod
    def decode(cls, data: bytes) -> Content:
        """Parse and validate; raises only :class:`ContentError` subclasses on bad input."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ContentDecodeError("content must be bytes")
        data = bytes(data)
        if len(data) > MAX_CONTENT_BYTES:
            raise ContentDecodeError(f"content exceeds {MAX_CONTENT_BYTES} bytes")
        try:
            return cls._decode(data)
        except InvalidContent as exc:  # a field broke a rule: the bytes are malformed content
            raise ContentDecodeError(str(exc)) from None

    @classmethod
    def _decode(cls, data: bytes) -> Content:
        msg = _parse("Content", data)
        version = _req(msg, "Content", "version")
        if version > CONTENT_VERSION:
            raise UnsupportedContentVersion(f"content version {version} is newer than supported")
        if version < 1:
            raise ContentDecodeError("content version 0 is invalid")
        type_id = _req(msg, "Content", "type")
        raw_body = _opt(msg, "body") or b""
        body_cls = _BODY_TYPES.get(type_id)
        body: Body
        if body_cls is None:
            if not 0 < type_id <= MAX_UNKNOWN_TYPE:
                raise ContentDecodeError("content type number out of range")
            body = Unknown(type_id, raw_body)
        else:
            body = body_cls._decode_body(raw_body)
        expire = _opt(msg, "expire_timer")
        return cls(body, _req(msg, "Content", "message_id"), _req(msg, "Content", "sent_at_ms"),
                   expire or None, _opt(msg, "group_id"))

