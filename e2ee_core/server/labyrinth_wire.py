"""Wire types of the Labyrinth mailbox API (issue #15): JSON objects <-> typed values, sans I/O.

Same conventions as :mod:`e2ee_core.server.wire`: every type has ``to_json()`` and
``from_json(obj)``; decoders accept any decoded JSON value and raise only
:class:`~e2ee_core.server.errors.InvalidRequest` or
:class:`~e2ee_core.server.errors.PayloadTooLarge`. Keys, MACs, ciphertexts, bundles and epoch
heads are opaque bytes (padded standard base64), only bounded in size: the server parses none
of them. The API is documented in docs/labyrinth.md, "Server API".

Epoch members are named by a string: ``"d<device id>"`` for a device of the account,
``"v<32 hex digits>"`` for a virtual device (its 16-byte vdeviceId).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from e2ee_core.server import consts
from e2ee_core.server.errors import InvalidRequest
from e2ee_core.server.wire import (
    _field,
    _list,
    _object,
    _only,
    decode_bytes,
    decode_device_id,
    decode_int,
    encode_bytes,
)

_MEMBER_RE = re.compile(r"d([1-9][0-9]{0,9})|v([0-9a-f]{32})")
_HEX_RE = re.compile(r"[0-9a-f]+")
_DOMAIN_RE = re.compile(consts.LABYRINTH_ORF_DOMAIN_PATTERN)
#: JavaScript-safe integers: ids and timestamps the server hands out stay exact in any client.
MAX_EPOCH_ID = 2**53 - 1
TIMESTAMP_MAX = 2**63 - 1
SEQUENCE_MAX = 10**11 - 1  # e2ee_core.labyrinth.consts.EPOCH_SEQUENCE_MAX (11 digits)
CIPHER_VERSION_MAX = 2**31 - 1


# -- scalar decoders -----------------------------------------------------------------------------
def decode_member(value: Any, what: str = "member") -> str:
    """``"d<device id>"`` or ``"v<32 lowercase hex>"``."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string")
    match = _MEMBER_RE.fullmatch(value)
    if match is None:
        raise InvalidRequest(f"{what} must be d<device id> or v<32 hex digits>")
    if match.group(1) is not None:
        decode_device_id(int(match.group(1)), what)
    return value


def device_member(device_id: int) -> str:
    """The member name of a device."""
    return f"d{decode_device_id(device_id)}"


def member_device_id(member: str) -> int | None:
    """The device id a ``"d<id>"`` member names; None for a virtual device."""
    return int(member[1:]) if member.startswith("d") else None


def decode_hex_id(value: Any, what: str, length: int) -> str:
    """``length`` bytes as lowercase hex (vdeviceIds and attachment-reference indexes)."""
    if not isinstance(value, str) or len(value) != 2 * length or not _HEX_RE.fullmatch(value):
        raise InvalidRequest(f"{what} must be {2 * length} lowercase hex digits")
    return value


def decode_vdevice_id(value: Any) -> str:
    return decode_hex_id(value, "vdevice_id", consts.LABYRINTH_VDEVICE_ID_BYTES)


def decode_ref_index(value: Any) -> str:
    return decode_hex_id(value, "index", consts.LABYRINTH_REF_INDEX_BYTES)


def decode_text_id(value: Any, what: str) -> str:
    """An inbox, thread or message id: 1..128 printable characters (valid UTF-8)."""
    if not isinstance(value, str) or not 1 <= len(value) <= consts.LABYRINTH_MAX_ID_CHARS \
            or not value.isprintable():
        raise InvalidRequest(f"{what} must be 1..{consts.LABYRINTH_MAX_ID_CHARS} printable "
                             "characters")
    return value


def decode_domain(value: Any) -> str:
    if not isinstance(value, str) or not _DOMAIN_RE.fullmatch(value):
        raise InvalidRequest(f"domain must match {consts.LABYRINTH_ORF_DOMAIN_PATTERN}")
    return value


def decode_epoch_id(value: Any, what: str = "epoch_id") -> int:
    return decode_int(value, what, minimum=1, maximum=MAX_EPOCH_ID)


def decode_sequence(value: Any, what: str = "sequence_id") -> int:
    return decode_int(value, what, maximum=SEQUENCE_MAX)


def decode_query_int(value: str | None, what: str, *, minimum: int = 0,
                     maximum: int = TIMESTAMP_MAX) -> int | None:
    """An optional decimal query parameter (ASCII digits only, no sign, at most 19 digits)."""
    if value is None:
        return None
    if not 1 <= len(value) <= 19 or not value.isascii() or not value.isdigit():
        raise InvalidRequest(f"{what} must be a decimal integer")
    return decode_int(int(value), what, minimum=minimum, maximum=maximum)


def _mac(value: Any, what: str) -> bytes:
    raw = decode_bytes(value, what, max_len=consts.LABYRINTH_MAC_BYTES)
    if len(raw) != consts.LABYRINTH_MAC_BYTES:
        raise InvalidRequest(f"{what} must be {consts.LABYRINTH_MAC_BYTES} bytes")
    return raw


def _optional_bytes(obj: Mapping[str, Any], name: str, what: str, max_len: int) -> bytes | None:
    value = obj.get(name)
    return None if value is None else decode_bytes(value, f"{what}.{name}", max_len=max_len)


def _b64_or_none(data: bytes | None) -> str | None:
    return None if data is None else encode_bytes(data)


# -- member keys ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MemberKeys:
    """A member's Labyrinth public keys: deviceKeyPub, epochStorageKeyPub with its 0x30
    signature, epochStorageAuthKeyPub with its 0x31 signature (all opaque here)."""

    device_key_pub: bytes
    storage_key_pub: bytes
    storage_key_sig: bytes
    auth_key_pub: bytes
    auth_key_sig: bytes

    _KEYS = ("device_key_pub", "storage_key_pub", "auth_key_pub")
    _SIGS = ("storage_key_sig", "auth_key_sig")

    def to_json(self) -> dict[str, Any]:
        return {name: encode_bytes(getattr(self, name)) for name in self._KEYS + self._SIGS}

    @classmethod
    def from_json(cls, obj: Any, what: str = "keys") -> MemberKeys:
        o = _object(obj, what)
        _only(o, what, set(cls._KEYS + cls._SIGS))
        values = {n: decode_bytes(_field(o, n, what), f"{what}.{n}",
                                  max_len=consts.LABYRINTH_MAX_KEY_BYTES) for n in cls._KEYS}
        values.update({n: decode_bytes(_field(o, n, what), f"{what}.{n}",
                                       max_len=consts.LABYRINTH_MAX_SIGNATURE_BYTES)
                       for n in cls._SIGS})
        return cls(**values)


@dataclass(frozen=True)
class MemberInfo:
    """A current member of the account's mailbox, as listed to its devices: its keys and its
    membership MAC in the current epoch (None until one was written)."""

    member: str
    keys: MemberKeys
    membership_mac: bytes | None

    def to_json(self) -> dict[str, Any]:
        return {"member": self.member, "keys": self.keys.to_json(),
                "membership_mac": _b64_or_none(self.membership_mac)}

    @classmethod
    def from_json(cls, obj: Any, what: str = "member") -> MemberInfo:
        o = _object(obj, what)
        _only(o, what, {"member", "keys", "membership_mac"})
        mac = o.get("membership_mac")
        return cls(decode_member(_field(o, "member", what)),
                   MemberKeys.from_json(_field(o, "keys", what), f"{what}.keys"),
                   None if mac is None else _mac(mac, f"{what}.membership_mac"))


# -- epochs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpochMemberUpload:
    """One member of a new epoch: its new membership MAC and the entropy message addressed to
    it (None for a member that needs none, e.g. the first epoch's opener)."""

    member: str
    membership_mac: bytes
    entropy_message: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {"member": self.member, "membership_mac": encode_bytes(self.membership_mac),
                "entropy_message": _b64_or_none(self.entropy_message)}

    @classmethod
    def from_json(cls, obj: Any, what: str = "member") -> EpochMemberUpload:
        o = _object(obj, what)
        _only(o, what, {"member", "membership_mac", "entropy_message"})
        return cls(decode_member(_field(o, "member", what), f"{what}.member"),
                   _mac(_field(o, "membership_mac", what), f"{what}.membership_mac"),
                   _optional_bytes(o, "entropy_message", what,
                                   consts.LABYRINTH_MAX_ENTROPY_MESSAGE_BYTES))


@dataclass(frozen=True)
class OpenEpochRequest:
    """``POST /v1/labyrinth/epochs``: the opener's view of the new epoch.

    ``previous_epoch_id`` is None only for the account's first epoch (then the encrypted
    previous-epoch values are None too); otherwise it must be the current epoch and
    ``sequence_id`` its sequence id + 1 (compare-and-set: :class:`EpochConflict` otherwise).
    """

    sequence_id: int
    previous_epoch_id: int | None
    encrypted_previous_sequence_id: bytes | None
    encrypted_previous_root_key: bytes | None
    members: tuple[EpochMemberUpload, ...]
    head: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {"sequence_id": self.sequence_id, "previous_epoch_id": self.previous_epoch_id,
                "encrypted_previous_sequence_id": _b64_or_none(
                    self.encrypted_previous_sequence_id),
                "encrypted_previous_root_key": _b64_or_none(self.encrypted_previous_root_key),
                "members": [m.to_json() for m in self.members],
                "head": _b64_or_none(self.head)}

    @classmethod
    def from_json(cls, obj: Any) -> OpenEpochRequest:
        what = "epoch"
        o = _object(obj, what)
        _only(o, what, {"sequence_id", "previous_epoch_id", "encrypted_previous_sequence_id",
                        "encrypted_previous_root_key", "members", "head"})
        prev = o.get("previous_epoch_id")
        previous = None if prev is None else decode_epoch_id(prev, "previous_epoch_id")
        enc_seq = _optional_bytes(o, "encrypted_previous_sequence_id", what,
                                  consts.LABYRINTH_MAX_EPOCH_METADATA_BYTES)
        enc_root = _optional_bytes(o, "encrypted_previous_root_key", what,
                                   consts.LABYRINTH_MAX_EPOCH_METADATA_BYTES)
        if (previous is None) != (enc_seq is None) or (previous is None) != (enc_root is None):
            raise InvalidRequest("the previous epoch's id and encrypted values go together")
        raw_members = _list(_field(o, "members", what), "epoch.members",
                            consts.LABYRINTH_MAX_MEMBERS_PER_EPOCH)
        members = tuple(EpochMemberUpload.from_json(m, f"epoch.members[{i}]")
                        for i, m in enumerate(raw_members))
        if not members:
            raise InvalidRequest("an epoch needs at least one member")
        if len({m.member for m in members}) != len(members):
            raise InvalidRequest("epoch members are not distinct")
        return cls(decode_sequence(_field(o, "sequence_id", what)), previous, enc_seq,
                   enc_root, members, _optional_bytes(o, "head", what,
                                                      consts.LABYRINTH_MAX_EPOCH_HEAD_BYTES))


@dataclass(frozen=True)
class EpochRecord:
    """An epoch as the server keeps it. ``opener_*`` are the opening device's member name and
    keys at the time (what :func:`e2ee_core.labyrinth.epochs.receive_epoch_entropy` checks);
    ``entropy_message``/``membership_mac`` are those of the member a listing asked for."""

    epoch_id: int
    sequence_id: int
    previous_epoch_id: int | None
    encrypted_previous_sequence_id: bytes | None
    encrypted_previous_root_key: bytes | None
    head: bytes | None
    opener: str
    opener_keys: MemberKeys
    created_at_ms: int
    entropy_message: bytes | None = None
    membership_mac: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        return {"epoch_id": self.epoch_id, "sequence_id": self.sequence_id,
                "previous_epoch_id": self.previous_epoch_id,
                "encrypted_previous_sequence_id": _b64_or_none(
                    self.encrypted_previous_sequence_id),
                "encrypted_previous_root_key": _b64_or_none(self.encrypted_previous_root_key),
                "head": _b64_or_none(self.head), "opener": self.opener,
                "opener_keys": self.opener_keys.to_json(),
                "created_at_ms": self.created_at_ms,
                "entropy_message": _b64_or_none(self.entropy_message),
                "membership_mac": _b64_or_none(self.membership_mac)}

    @classmethod
    def from_json(cls, obj: Any, what: str = "epoch") -> EpochRecord:
        o = _object(obj, what)
        _only(o, what, {"epoch_id", "sequence_id", "previous_epoch_id",
                        "encrypted_previous_sequence_id", "encrypted_previous_root_key", "head",
                        "opener", "opener_keys", "created_at_ms", "entropy_message",
                        "membership_mac"})
        prev = o.get("previous_epoch_id")
        mac = o.get("membership_mac")
        return cls(
            decode_epoch_id(_field(o, "epoch_id", what)),
            decode_sequence(_field(o, "sequence_id", what)),
            None if prev is None else decode_epoch_id(prev, "previous_epoch_id"),
            _optional_bytes(o, "encrypted_previous_sequence_id", what,
                            consts.LABYRINTH_MAX_EPOCH_METADATA_BYTES),
            _optional_bytes(o, "encrypted_previous_root_key", what,
                            consts.LABYRINTH_MAX_EPOCH_METADATA_BYTES),
            _optional_bytes(o, "head", what, consts.LABYRINTH_MAX_EPOCH_HEAD_BYTES),
            decode_member(_field(o, "opener", what), f"{what}.opener"),
            MemberKeys.from_json(_field(o, "opener_keys", what), f"{what}.opener_keys"),
            decode_int(_field(o, "created_at_ms", what), f"{what}.created_at_ms"),
            _optional_bytes(o, "entropy_message", what,
                            consts.LABYRINTH_MAX_ENTROPY_MESSAGE_BYTES),
            None if mac is None else _mac(mac, f"{what}.membership_mac"),
        )


# -- mailbox records -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredRecord:
    """One row of the mailbox (the whitepaper's ``encrypted_messages``); the blob is opaque.
    Mirrors :class:`e2ee_core.labyrinth.mailbox.MailboxRecord` field for field."""

    inbox_id: str
    thread_id: str
    message_id: str
    timestamp: int
    epoch_id: int
    version: int
    blob: bytes

    def to_json(self) -> dict[str, Any]:
        return {"inbox_id": self.inbox_id, "thread_id": self.thread_id,
                "message_id": self.message_id, "timestamp": self.timestamp,
                "epoch_id": self.epoch_id, "version": self.version,
                "blob": encode_bytes(self.blob)}

    @classmethod
    def from_json(cls, obj: Any, what: str = "record") -> StoredRecord:
        o = _object(obj, what)
        _only(o, what, {"inbox_id", "thread_id", "message_id", "timestamp", "epoch_id",
                        "version", "blob"})
        return cls(
            decode_text_id(_field(o, "inbox_id", what), f"{what}.inbox_id"),
            decode_text_id(_field(o, "thread_id", what), f"{what}.thread_id"),
            decode_text_id(_field(o, "message_id", what), f"{what}.message_id"),
            decode_int(_field(o, "timestamp", what), f"{what}.timestamp",
                       maximum=TIMESTAMP_MAX),
            decode_epoch_id(_field(o, "epoch_id", what), f"{what}.epoch_id"),
            decode_int(_field(o, "version", what), f"{what}.version",
                       maximum=CIPHER_VERSION_MAX),
            decode_bytes(_field(o, "blob", what), f"{what}.blob",
                         max_len=consts.LABYRINTH_MAX_BLOB_BYTES),
        )


_T = TypeVar("_T")


def _batch(obj: Any, what: str, name: str, decode: Callable[[Any, str], _T]) -> tuple[_T, ...]:
    """A body ``{name: [...]}`` of 1..LABYRINTH_MAX_RECORDS_PER_SAVE items, each decoded."""
    o = _object(obj, what)
    _only(o, what, {name})
    items = _list(_field(o, name, what), name, consts.LABYRINTH_MAX_RECORDS_PER_SAVE)
    if not items:
        raise InvalidRequest(f"{name} is empty")
    return tuple(decode(item, f"{name}[{i}]") for i, item in enumerate(items))


def decode_records(obj: Any) -> tuple[StoredRecord, ...]:
    """The body of a save: ``{"records": [...]}``, 1..LABYRINTH_MAX_RECORDS_PER_SAVE."""
    return _batch(obj, "save", "records", StoredRecord.from_json)


@dataclass(frozen=True)
class RecordKey:
    """Which record: the mailbox row's key."""

    inbox_id: str
    thread_id: str
    message_id: str

    def to_json(self) -> dict[str, Any]:
        return {"inbox_id": self.inbox_id, "thread_id": self.thread_id,
                "message_id": self.message_id}

    @classmethod
    def from_json(cls, obj: Any, what: str = "key") -> RecordKey:
        o = _object(obj, what)
        _only(o, what, {"inbox_id", "thread_id", "message_id"})
        return cls(decode_text_id(_field(o, "inbox_id", what), f"{what}.inbox_id"),
                   decode_text_id(_field(o, "thread_id", what), f"{what}.thread_id"),
                   decode_text_id(_field(o, "message_id", what), f"{what}.message_id"))


def decode_record_keys(obj: Any) -> tuple[RecordKey, ...]:
    """The body of a delete: ``{"keys": [...]}``, 1..LABYRINTH_MAX_RECORDS_PER_SAVE."""
    return _batch(obj, "delete", "keys", RecordKey.from_json)


@dataclass(frozen=True)
class Cursor:
    """Where a newest-first load continues: strictly after (older than) this record."""

    timestamp: int
    inbox_id: str
    thread_id: str
    message_id: str

    def encode(self) -> str:
        raw = json.dumps([self.timestamp, self.inbox_id, self.thread_id, self.message_id],
                         separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @classmethod
    def decode(cls, value: Any) -> Cursor:
        """Our own token back; anything else is :class:`InvalidRequest`."""
        if not isinstance(value, str) or not 1 <= len(value) <= consts.LABYRINTH_MAX_CURSOR_CHARS:
            raise InvalidRequest("malformed cursor")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            items = json.loads(raw.decode("utf-8"))
        except (binascii.Error, ValueError, UnicodeError, RecursionError):
            raise InvalidRequest("malformed cursor") from None
        if not isinstance(items, list) or len(items) != 4:
            raise InvalidRequest("malformed cursor")
        return cls(decode_int(items[0], "cursor", maximum=TIMESTAMP_MAX),
                   decode_text_id(items[1], "cursor"), decode_text_id(items[2], "cursor"),
                   decode_text_id(items[3], "cursor"))


@dataclass(frozen=True)
class LoadQuery:
    """``GET /v1/labyrinth/messages``: filters (all optional) and the page."""

    inbox_id: str | None = None
    thread_id: str | None = None
    message_id: str | None = None
    since: int | None = None  # timestamp >= since
    until: int | None = None  # timestamp < until
    limit: int = consts.LABYRINTH_DEFAULT_PAGE
    cursor: Cursor | None = None

    def to_params(self) -> dict[str, str]:
        params: dict[str, str] = {"limit": str(self.limit)}
        for name in ("inbox_id", "thread_id", "message_id", "since", "until"):
            value = getattr(self, name)
            if value is not None:
                params[name] = str(value)
        if self.cursor is not None:
            params["cursor"] = self.cursor.encode()
        return params

    @classmethod
    def from_params(cls, args: Mapping[str, str]) -> LoadQuery:
        _only(args, "query", {"inbox_id", "thread_id", "message_id", "since", "until", "limit",
                              "cursor"})
        texts = {name: None if args.get(name) is None else decode_text_id(args.get(name), name)
                 for name in ("inbox_id", "thread_id", "message_id")}
        limit = decode_query_int(args.get("limit"), "limit", minimum=1,
                                 maximum=consts.LABYRINTH_MAX_PAGE)
        raw_cursor = args.get("cursor")
        return cls(texts["inbox_id"], texts["thread_id"], texts["message_id"],
                   decode_query_int(args.get("since"), "since"),
                   decode_query_int(args.get("until"), "until"),
                   consts.LABYRINTH_DEFAULT_PAGE if limit is None else limit,
                   None if raw_cursor is None else Cursor.decode(raw_cursor))


@dataclass(frozen=True)
class RecordPage:
    """A page of records, newest first; ``cursor`` continues it (None: nothing older)."""

    records: tuple[StoredRecord, ...]
    cursor: Cursor | None

    def to_json(self) -> dict[str, Any]:
        return {"records": [r.to_json() for r in self.records],
                "cursor": None if self.cursor is None else self.cursor.encode()}

    @classmethod
    def from_json(cls, obj: Any) -> RecordPage:
        o = _object(obj, "page")
        _only(o, "page", {"records", "cursor"})
        items = _list(_field(o, "records", "page"), "records", consts.LABYRINTH_MAX_PAGE)
        cursor = o.get("cursor")
        return cls(tuple(StoredRecord.from_json(r) for r in items),
                   None if cursor is None else Cursor.decode(cursor))


# -- ORF, virtual devices, attachment references -----------------------------------------------
@dataclass(frozen=True)
class EvolveRequest:
    """``POST /v1/labyrinth/orf/evolve``: store ``s / t`` of ``source``'s share for ``target``."""

    source: str
    target: str
    token: bytes

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "token": encode_bytes(self.token)}

    @classmethod
    def from_json(cls, obj: Any) -> EvolveRequest:
        o = _object(obj, "evolve")
        _only(o, "evolve", {"from", "to", "token"})
        source = decode_member(_field(o, "from", "evolve"), "from")
        target = decode_member(_field(o, "to", "evolve"), "to")
        if source == target:
            raise InvalidRequest("from and to are the same member")
        token = decode_bytes(_field(o, "token", "evolve"), "token", max_len=32)
        if len(token) != 32:
            raise InvalidRequest("token must be a 32-byte scalar")
        return cls(source, target, token)


@dataclass(frozen=True)
class EvaluateRequest:
    """``POST /v1/labyrinth/orf/evaluate``: blinded points under one server domain."""

    domain: str
    blinded: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {"domain": self.domain, "blinded": [encode_bytes(b) for b in self.blinded]}

    @classmethod
    def from_json(cls, obj: Any) -> EvaluateRequest:
        o = _object(obj, "evaluate")
        _only(o, "evaluate", {"domain", "blinded"})
        items = _list(_field(o, "blinded", "evaluate"), "blinded", consts.LABYRINTH_MAX_ORF_POINTS)
        if not items:
            raise InvalidRequest("blinded is empty")
        points = tuple(decode_bytes(p, f"blinded[{i}]", max_len=32) for i, p in enumerate(items))
        if any(len(p) != 32 for p in points):
            raise InvalidRequest("a blinded point must be 32 bytes")
        return cls(decode_domain(_field(o, "domain", "evaluate")), points)


@dataclass(frozen=True)
class VirtualDevice:
    """A virtual device's opaque read-only bundle, and who registered it when."""

    vdevice_id: str
    bundle: bytes
    created_by: int
    created_at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"vdevice_id": self.vdevice_id, "bundle": encode_bytes(self.bundle),
                "created_by": self.created_by, "created_at_ms": self.created_at_ms}

    @classmethod
    def from_json(cls, obj: Any) -> VirtualDevice:
        o = _object(obj, "vdevice")
        _only(o, "vdevice", {"vdevice_id", "bundle", "created_by", "created_at_ms"})
        return cls(decode_vdevice_id(_field(o, "vdevice_id", "vdevice")),
                   decode_bytes(_field(o, "bundle", "vdevice"), "bundle",
                                max_len=consts.LABYRINTH_MAX_VDEVICE_BUNDLE_BYTES),
                   decode_device_id(_field(o, "created_by", "vdevice"), "created_by"),
                   decode_int(_field(o, "created_at_ms", "vdevice"), "created_at_ms"))


def decode_bundle(obj: Any) -> bytes:
    """The body of a virtual-device registration: ``{"bundle": b64}``."""
    o = _object(obj, "vdevice")
    _only(o, "vdevice", {"bundle"})
    return decode_bytes(_field(o, "bundle", "vdevice"), "bundle",
                        max_len=consts.LABYRINTH_MAX_VDEVICE_BUNDLE_BYTES)


@dataclass(frozen=True)
class AttachmentReference:
    """An opaque, ORF-indexed attachment reference object and the ORF-keyed MAC over its
    (thread, message) that the core defines."""

    reference: bytes
    mac: bytes

    def to_json(self) -> dict[str, Any]:
        return {"reference": encode_bytes(self.reference), "mac": encode_bytes(self.mac)}

    @classmethod
    def from_json(cls, obj: Any) -> AttachmentReference:
        o = _object(obj, "reference")
        _only(o, "reference", {"reference", "mac"})
        return cls(decode_bytes(_field(o, "reference", "reference"), "reference",
                                max_len=consts.LABYRINTH_MAX_ATTACHMENT_REF_BYTES),
                   _mac(_field(o, "mac", "reference"), "mac"))


def decode_membership_mac(obj: Any) -> bytes:
    """The body of a membership-MAC write: ``{"membership_mac": b64}``."""
    o = _object(obj, "membership")
    _only(o, "membership", {"membership_mac"})
    return _mac(_field(o, "membership_mac", "membership"), "membership_mac")
