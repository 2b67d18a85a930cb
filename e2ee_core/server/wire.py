"""The delivery server's wire types: JSON objects <-> typed values, sans I/O.

Every type has ``to_json()`` and ``from_json(obj)``; ``from_json`` accepts any decoded JSON
value and raises only :class:`~e2ee_core.server.errors.InvalidRequest` (or
:class:`~e2ee_core.server.errors.PayloadTooLarge` for an oversized field). Byte strings travel
as standard padded base64 and are opaque to the server: keys, signatures and envelope contents
are never parsed here, only bounded in size.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from e2ee_core.server import consts
from e2ee_core.server.errors import InvalidRequest, PayloadTooLarge

_USERNAME_RE = re.compile(consts.USERNAME_PATTERN)
_CREDENTIAL_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")

EnvelopeKind = Literal["message", "device_added", "device_removed"]
ENVELOPE_KINDS: tuple[EnvelopeKind, ...] = ("message", "device_added", "device_removed")


# -- primitive decoders --------------------------------------------------------------------------
def _object(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise InvalidRequest(f"{what} must be a JSON object")
    return obj


def _only(obj: Mapping[str, Any], what: str, allowed: set[str]) -> None:
    if not set(obj) <= allowed:
        raise InvalidRequest(f"{what} has unknown fields")


def _field(obj: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in obj:
        raise InvalidRequest(f"{what} lacks field {name!r}")
    return obj[name]


def decode_int(value: Any, what: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """A JSON integer (never a bool or float) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{what} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{what} is out of range")
    return value


def decode_bytes(value: Any, what: str, *, max_len: int, min_len: int = 1) -> bytes:
    """Strict, padded standard base64 of ``min_len..max_len`` bytes."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a base64 string")
    # 4/3 expansion: refuse to decode a string that cannot fit (cheap bound before the work).
    if len(value) > (max_len + 2) // 3 * 4:
        raise PayloadTooLarge(f"{what} is too large")
    try:
        raw = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidRequest(f"{what} is not valid base64") from None
    if len(raw) < min_len:
        raise InvalidRequest(f"{what} is too short")
    if len(raw) > max_len:
        raise PayloadTooLarge(f"{what} is too large")
    return raw


def encode_bytes(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def decode_username(value: Any, what: str = "username") -> str:
    if not isinstance(value, str) or not _USERNAME_RE.fullmatch(value):
        raise InvalidRequest(f"{what} must match {consts.USERNAME_PATTERN}")
    return value


def decode_device_id(value: Any, what: str = "device_id") -> int:
    return decode_int(value, what, minimum=1, maximum=consts.MAX_DEVICE_ID)


def decode_password(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("password must be a string")
    if not consts.MIN_PASSWORD_LENGTH <= len(value) <= consts.MAX_PASSWORD_LENGTH:
        raise InvalidRequest("password length is out of range")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        raise InvalidRequest("password is not valid text") from None
    return value


def _list(value: Any, what: str, max_items: int) -> Sequence[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{what} must be a list")
    if len(value) > max_items:
        raise InvalidRequest(f"{what} has too many items")
    return value


# -- keys ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Acknowledgement:
    """One device's acknowledgement: envelope ids processed, those refused among them."""

    username: str
    device_id: int
    ids: tuple[int, ...]
    refused: tuple[int, ...] = ()


@dataclass(frozen=True)
class PreKey:
    """A one-time (EC) prekey: id and opaque public key."""

    key_id: int
    public_key: bytes

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "public_key": encode_bytes(self.public_key)}

    @classmethod
    def from_json(cls, obj: Any, what: str = "prekey") -> PreKey:
        o = _object(obj, what)
        _only(o, what, {"key_id", "public_key"})
        return cls(
            decode_int(_field(o, "key_id", what), f"{what}.key_id", maximum=consts.MAX_KEY_ID),
            decode_bytes(_field(o, "public_key", what), f"{what}.public_key",
                         max_len=consts.MAX_PUBLIC_KEY_BYTES),
        )


@dataclass(frozen=True)
class SignedPreKey:
    """A signed prekey (EC signed prekey, or a KEM prekey): id, public key, signature."""

    key_id: int
    public_key: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "public_key": encode_bytes(self.public_key),
                "signature": encode_bytes(self.signature)}

    @classmethod
    def from_json(cls, obj: Any, what: str = "signed_prekey") -> SignedPreKey:
        o = _object(obj, what)
        _only(o, what, {"key_id", "public_key", "signature"})
        return cls(
            decode_int(_field(o, "key_id", what), f"{what}.key_id", maximum=consts.MAX_KEY_ID),
            decode_bytes(_field(o, "public_key", what), f"{what}.public_key",
                         max_len=consts.MAX_PUBLIC_KEY_BYTES),
            decode_bytes(_field(o, "signature", what), f"{what}.signature",
                         max_len=consts.MAX_SIGNATURE_BYTES),
        )


def _unique_ids(keys: Sequence[PreKey | SignedPreKey], what: str) -> None:
    if len({k.key_id for k in keys}) != len(keys):
        raise InvalidRequest(f"{what} repeats a key id")


def _prekeys(value: Any, what: str) -> tuple[PreKey, ...]:
    items = _list(value, what, consts.MAX_PREKEYS_PER_UPLOAD)
    keys = tuple(PreKey.from_json(item, what) for item in items)
    _unique_ids(keys, what)
    return keys


def _signed_prekeys(value: Any, what: str) -> tuple[SignedPreKey, ...]:
    items = _list(value, what, consts.MAX_PREKEYS_PER_UPLOAD)
    keys = tuple(SignedPreKey.from_json(item, what) for item in items)
    _unique_ids(keys, what)
    return keys


@dataclass(frozen=True)
class DeviceKeys:
    """Everything a new device publishes: identity key, signed prekeys and one-time prekeys."""

    registration_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    last_resort_kem_prekey: SignedPreKey
    one_time_prekeys: tuple[PreKey, ...] = ()
    kem_prekeys: tuple[SignedPreKey, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "registration_id": self.registration_id,
            "identity_key": encode_bytes(self.identity_key),
            "signed_prekey": self.signed_prekey.to_json(),
            "last_resort_kem_prekey": self.last_resort_kem_prekey.to_json(),
            "one_time_prekeys": [k.to_json() for k in self.one_time_prekeys],
            "kem_prekeys": [k.to_json() for k in self.kem_prekeys],
        }

    @classmethod
    def from_json(cls, obj: Any, what: str = "device") -> DeviceKeys:
        o = _object(obj, what)
        _only(o, what, {"registration_id", "identity_key", "signed_prekey",
                        "last_resort_kem_prekey", "one_time_prekeys", "kem_prekeys"})
        return cls(
            registration_id=decode_int(_field(o, "registration_id", what),
                                       f"{what}.registration_id",
                                       maximum=consts.MAX_REGISTRATION_ID),
            identity_key=decode_bytes(_field(o, "identity_key", what), f"{what}.identity_key",
                                      max_len=consts.MAX_PUBLIC_KEY_BYTES),
            signed_prekey=SignedPreKey.from_json(_field(o, "signed_prekey", what),
                                                 f"{what}.signed_prekey"),
            last_resort_kem_prekey=SignedPreKey.from_json(
                _field(o, "last_resort_kem_prekey", what), f"{what}.last_resort_kem_prekey"),
            one_time_prekeys=_prekeys(o.get("one_time_prekeys", []), f"{what}.one_time_prekeys"),
            kem_prekeys=_signed_prekeys(o.get("kem_prekeys", []), f"{what}.kem_prekeys"),
        )


@dataclass(frozen=True)
class AccountRequest:
    """``POST /v1/accounts`` (register) and ``POST /v1/accounts/NAME/devices`` (add a device)."""

    username: str
    password: str
    device: DeviceKeys

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password,
                "device": self.device.to_json()}

    @classmethod
    def from_json(cls, obj: Any) -> AccountRequest:
        o = _object(obj, "body")
        _only(o, "body", {"username", "password", "device"})
        return cls(decode_username(_field(o, "username", "body")),
                   decode_password(_field(o, "password", "body")),
                   DeviceKeys.from_json(_field(o, "device", "body")))


@dataclass(frozen=True)
class DeviceCredential:
    """What registration returns: the device's address and its bearer credential."""

    username: str
    device_id: int
    credential: str

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "device_id": self.device_id,
                "credential": self.credential}

    @classmethod
    def from_json(cls, obj: Any) -> DeviceCredential:
        o = _object(obj, "credential")
        token = _field(o, "credential", "credential")
        username, device_id, _secret = parse_credential(token)
        if (username, device_id) != (decode_username(_field(o, "username", "credential")),
                                     decode_device_id(_field(o, "device_id", "credential"))):
            raise InvalidRequest("credential does not match its device")
        return cls(username, device_id, token)

    def __repr__(self) -> str:  # never print the secret
        return f"DeviceCredential(username={self.username!r}, device_id={self.device_id})"


def format_credential(username: str, device_id: int, secret: str) -> str:
    return f"{username}.{device_id}.{secret}"


def parse_credential(token: Any) -> tuple[str, int, str]:
    """Split a bearer credential ``NAME.DEVICE.SECRET`` (secret: 43 base64url characters)."""
    if not isinstance(token, str) or len(token) > 128:
        raise InvalidRequest("malformed credential")
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit():
        raise InvalidRequest("malformed credential")
    if len(parts[1]) > 10 or not _CREDENTIAL_SECRET_RE.fullmatch(parts[2]):
        raise InvalidRequest("malformed credential")
    return decode_username(parts[0]), decode_device_id(int(parts[1])), parts[2]


@dataclass(frozen=True)
class PreKeyUpload:
    """``PUT /v1/keys``: replenish one-time prekeys, optionally rotate the signed prekeys."""

    one_time_prekeys: tuple[PreKey, ...] = ()
    kem_prekeys: tuple[SignedPreKey, ...] = ()
    signed_prekey: SignedPreKey | None = None
    last_resort_kem_prekey: SignedPreKey | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "one_time_prekeys": [k.to_json() for k in self.one_time_prekeys],
            "kem_prekeys": [k.to_json() for k in self.kem_prekeys],
        }
        if self.signed_prekey is not None:
            out["signed_prekey"] = self.signed_prekey.to_json()
        if self.last_resort_kem_prekey is not None:
            out["last_resort_kem_prekey"] = self.last_resort_kem_prekey.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Any) -> PreKeyUpload:
        o = _object(obj, "body")
        _only(o, "body", {"one_time_prekeys", "kem_prekeys", "signed_prekey",
                          "last_resort_kem_prekey"})
        spk = o.get("signed_prekey")
        lr = o.get("last_resort_kem_prekey")
        return cls(
            _prekeys(o.get("one_time_prekeys", []), "one_time_prekeys"),
            _signed_prekeys(o.get("kem_prekeys", []), "kem_prekeys"),
            None if spk is None else SignedPreKey.from_json(spk, "signed_prekey"),
            None if lr is None else SignedPreKey.from_json(lr, "last_resort_kem_prekey"),
        )


@dataclass(frozen=True)
class PreKeyCount:
    """``GET /v1/keys/count``: unused one-time prekeys left on the server for this device."""

    one_time_prekeys: int
    kem_prekeys: int

    def to_json(self) -> dict[str, Any]:
        return {"one_time_prekeys": self.one_time_prekeys, "kem_prekeys": self.kem_prekeys}

    @classmethod
    def from_json(cls, obj: Any) -> PreKeyCount:
        o = _object(obj, "count")
        return cls(decode_int(_field(o, "one_time_prekeys", "count"), "one_time_prekeys"),
                   decode_int(_field(o, "kem_prekeys", "count"), "kem_prekeys"))


@dataclass(frozen=True)
class PreKeyBundle:
    """One device's bundle. One-time keys in it were consumed on the server when it was served.

    ``kem_prekey`` is a one-time KEM prekey when one was left, else the last-resort KEM prekey
    (``kem_prekey_last_resort``); ``one_time_prekey`` is None when the device ran out.
    """

    username: str
    device_id: int
    registration_id: int
    identity_key: bytes
    signed_prekey: SignedPreKey
    kem_prekey: SignedPreKey
    kem_prekey_last_resort: bool
    one_time_prekey: PreKey | None

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "device_id": self.device_id,
            "registration_id": self.registration_id,
            "identity_key": encode_bytes(self.identity_key),
            "signed_prekey": self.signed_prekey.to_json(),
            "kem_prekey": self.kem_prekey.to_json(),
            "kem_prekey_last_resort": self.kem_prekey_last_resort,
            "one_time_prekey": None if self.one_time_prekey is None
            else self.one_time_prekey.to_json(),
        }

    @classmethod
    def from_json(cls, obj: Any) -> PreKeyBundle:
        o = _object(obj, "bundle")
        last_resort = _field(o, "kem_prekey_last_resort", "bundle")
        if not isinstance(last_resort, bool):
            raise InvalidRequest("bundle.kem_prekey_last_resort must be a boolean")
        otk = o.get("one_time_prekey")
        return cls(
            decode_username(_field(o, "username", "bundle")),
            decode_device_id(_field(o, "device_id", "bundle")),
            decode_int(_field(o, "registration_id", "bundle"), "registration_id",
                       maximum=consts.MAX_REGISTRATION_ID),
            decode_bytes(_field(o, "identity_key", "bundle"), "identity_key",
                         max_len=consts.MAX_PUBLIC_KEY_BYTES),
            SignedPreKey.from_json(_field(o, "signed_prekey", "bundle")),
            SignedPreKey.from_json(_field(o, "kem_prekey", "bundle"), "kem_prekey"),
            last_resort,
            None if otk is None else PreKey.from_json(otk, "one_time_prekey"),
        )


@dataclass(frozen=True)
class DeviceInfo:
    """A current device of an account, as ``GET /v1/devices/NAME`` lists it."""

    device_id: int
    registration_id: int
    identity_key: bytes
    created_at_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"device_id": self.device_id, "registration_id": self.registration_id,
                "identity_key": encode_bytes(self.identity_key),
                "created_at_ms": self.created_at_ms}

    @classmethod
    def from_json(cls, obj: Any) -> DeviceInfo:
        o = _object(obj, "device")
        return cls(decode_device_id(_field(o, "device_id", "device")),
                   decode_int(_field(o, "registration_id", "device"), "registration_id",
                              maximum=consts.MAX_REGISTRATION_ID),
                   decode_bytes(_field(o, "identity_key", "device"), "identity_key",
                                max_len=consts.MAX_PUBLIC_KEY_BYTES),
                   decode_int(_field(o, "created_at_ms", "device"), "created_at_ms"))


# -- messages -----------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class DeviceAddress:
    """An account name and one of its device ids."""

    username: str
    device_id: int

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "device_id": self.device_id}

    @classmethod
    def from_json(cls, obj: Any, what: str = "address") -> DeviceAddress:
        o = _object(obj, what)
        return cls(decode_username(_field(o, "username", what)),
                   decode_device_id(_field(o, "device_id", what)))


@dataclass(frozen=True)
class OutgoingEnvelope:
    """One opaque ciphertext for one destination device."""

    username: str
    device_id: int
    content: bytes = field(repr=False)

    @property
    def address(self) -> DeviceAddress:
        return DeviceAddress(self.username, self.device_id)

    def to_json(self) -> dict[str, Any]:
        return {"username": self.username, "device_id": self.device_id,
                "content": encode_bytes(self.content)}

    @classmethod
    def from_json(cls, obj: Any) -> OutgoingEnvelope:
        o = _object(obj, "message")
        _only(o, "message", {"username", "device_id", "content"})
        return cls(decode_username(_field(o, "username", "message")),
                   decode_device_id(_field(o, "device_id", "message")),
                   decode_bytes(_field(o, "content", "message"), "message.content",
                                max_len=consts.MAX_ENVELOPE_BYTES))


@dataclass(frozen=True)
class SendRequest:
    """``POST /v1/messages``: one envelope per device of ``recipient`` and per other own device.

    ``expires_at_ms`` (optional) asks the server to drop undelivered copies after that time,
    e.g. for disappearing messages; the server never keeps them beyond its own TTL anyway.
    """

    recipient: str
    messages: tuple[OutgoingEnvelope, ...]
    expires_at_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipient": self.recipient,
                               "messages": [m.to_json() for m in self.messages]}
        if self.expires_at_ms is not None:
            out["expires_at_ms"] = self.expires_at_ms
        return out

    @classmethod
    def from_json(cls, obj: Any) -> SendRequest:
        o = _object(obj, "body")
        _only(o, "body", {"recipient", "messages", "expires_at_ms"})
        items = _list(_field(o, "messages", "body"), "messages", consts.MAX_ENVELOPES_PER_SEND)
        messages = tuple(OutgoingEnvelope.from_json(item) for item in items)
        if len({m.address for m in messages}) != len(messages):
            raise InvalidRequest("messages repeat a destination device")
        expires = o.get("expires_at_ms")
        return cls(decode_username(_field(o, "recipient", "body"), "recipient"), messages,
                   None if expires is None else decode_int(expires, "expires_at_ms"))


@dataclass(frozen=True)
class MultiSendRequest:
    """``POST /v1/messages/multi``: one message (a group message) to several accounts in one
    request, accepted or refused as a whole: one envelope per device of every recipient and
    per other own device (those once)."""

    recipients: tuple[str, ...]
    messages: tuple[OutgoingEnvelope, ...]
    expires_at_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recipients": list(self.recipients),
                               "messages": [m.to_json() for m in self.messages]}
        if self.expires_at_ms is not None:
            out["expires_at_ms"] = self.expires_at_ms
        return out

    @classmethod
    def from_json(cls, obj: Any) -> MultiSendRequest:
        o = _object(obj, "body")
        _only(o, "body", {"recipients", "messages", "expires_at_ms"})
        names = _list(_field(o, "recipients", "body"), "recipients",
                      consts.MAX_RECIPIENTS_PER_MULTI_SEND)
        recipients = tuple(decode_username(n, "recipients[]") for n in names)
        if not recipients or len(set(recipients)) != len(recipients):
            raise InvalidRequest("recipients must be distinct and not empty")
        items = _list(_field(o, "messages", "body"), "messages",
                      consts.MAX_ENVELOPES_PER_MULTI_SEND)
        messages = tuple(OutgoingEnvelope.from_json(item) for item in items)
        if len({m.address for m in messages}) != len(messages):
            raise InvalidRequest("messages repeat a destination device")
        if sum(len(m.content) for m in messages) > consts.MAX_MULTI_SEND_CONTENT_BYTES:
            raise PayloadTooLarge()
        expires = o.get("expires_at_ms")
        return cls(recipients, messages,
                   None if expires is None else decode_int(expires, "expires_at_ms"))


@dataclass(frozen=True)
class Envelope:
    """A queued envelope as a device receives it.

    ``kind`` is ``message`` (``content`` is the sender's opaque ciphertext; ``source`` and
    ``source_device`` are the authenticated sender) or a server notice ``device_added`` /
    ``device_removed`` (``content`` is None; ``source``/``source_device`` name the device that
    was added or removed).
    """

    id: int
    kind: EnvelopeKind
    source: str
    source_device: int
    server_timestamp_ms: int
    expires_at_ms: int
    content: bytes | None = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "source": self.source,
                "source_device": self.source_device,
                "server_timestamp_ms": self.server_timestamp_ms,
                "expires_at_ms": self.expires_at_ms,
                "content": None if self.content is None else encode_bytes(self.content)}

    @classmethod
    def from_json(cls, obj: Any) -> Envelope:
        o = _object(obj, "envelope")
        kind = _field(o, "kind", "envelope")
        if kind not in ENVELOPE_KINDS:
            raise InvalidRequest("envelope.kind is unknown")
        content = o.get("content")
        if (content is None) != (kind != "message"):
            raise InvalidRequest("envelope.content does not match its kind")
        return cls(
            decode_int(_field(o, "id", "envelope"), "envelope.id", minimum=1),
            kind,
            decode_username(_field(o, "source", "envelope"), "envelope.source"),
            decode_device_id(_field(o, "source_device", "envelope"), "envelope.source_device"),
            decode_int(_field(o, "server_timestamp_ms", "envelope"), "server_timestamp_ms"),
            decode_int(_field(o, "expires_at_ms", "envelope"), "expires_at_ms"),
            None if content is None else decode_bytes(content, "envelope.content",
                                                      max_len=consts.MAX_ENVELOPE_BYTES),
        )


@dataclass(frozen=True)
class AckRequest:
    """``POST /v1/messages/ack``: envelope ids this device has processed; they are deleted.
    ``refused`` (a subset of ``ids``): envelopes the device could not open or will not accept
    (garbage, a blocked sender): their senders do not become contacts that hear of this
    account's device changes."""

    ids: tuple[int, ...]
    refused: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ids": list(self.ids)}
        if self.refused:
            out["refused"] = list(self.refused)
        return out

    @classmethod
    def from_json(cls, obj: Any) -> AckRequest:
        o = _object(obj, "body")
        _only(o, "body", {"ids", "refused"})
        items = _list(_field(o, "ids", "body"), "ids", consts.MAX_ACKS_PER_REQUEST)
        ids = tuple(decode_int(i, "ids[]", minimum=1) for i in items)
        refused: tuple[int, ...] = ()
        if "refused" in o:
            raw = _list(o["refused"], "refused", consts.MAX_ACKS_PER_REQUEST)
            refused = tuple(decode_int(i, "refused[]", minimum=1) for i in raw)
            if not set(refused) <= set(ids):
                raise InvalidRequest("refused ids must be among the acknowledged ids")
        return cls(ids, refused)


@dataclass(frozen=True)
class SendFrame:
    """A send over the push channel (as Signal's clients send over their WebSocket):
    ``{"type": "send", "id": N, "message": SendRequest}`` or ``{"type": "send_multi", "id":
    N, "message": MultiSendRequest}``. The server answers ``{"type": "send_result", "id": N,
    "accepted": count}`` or ``{"type": "send_result", "id": N, "status": S, "problem": {...}}``
    (the problem document an HTTP send would get, ``retry_after`` in it), in order."""

    id: int
    request: SendRequest | MultiSendRequest

    def to_json(self) -> dict[str, Any]:
        kind = "send" if isinstance(self.request, SendRequest) else "send_multi"
        return {"type": kind, "id": self.id, "message": self.request.to_json()}


def decode_client_frame(text: str) -> AckRequest | SendFrame:
    """A frame a device sends on the push channel: an acknowledgement
    ``{"type": "ack", "ids": [...], "refused": [...]}`` or a :class:`SendFrame`."""
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the C stack
        raise InvalidRequest("frame is not JSON") from None
    if not isinstance(frame, dict):
        raise InvalidRequest("unknown frame")
    kind = frame.get("type")
    if kind == "ack":
        return AckRequest.from_json({k: v for k, v in frame.items() if k != "type"})
    if kind in ("send", "send_multi"):
        _only(frame, "frame", {"type", "id", "message"})
        request_id = decode_int(_field(frame, "id", "frame"), "id", maximum=2**53 - 1)
        message = _field(frame, "message", "frame")
        request: SendRequest | MultiSendRequest = (
            SendRequest.from_json(message) if kind == "send"
            else MultiSendRequest.from_json(message))
        return SendFrame(request_id, request)
    raise InvalidRequest("unknown frame")


def decode_ack_frame(text: str) -> AckRequest:
    """A push channel acknowledgement frame (see :func:`decode_client_frame`)."""
    frame = decode_client_frame(text)
    if not isinstance(frame, AckRequest):
        raise InvalidRequest("unknown frame")
    return frame



def bearer_credential(authorization: str) -> str:
    """The credential of an ``Authorization: Bearer <credential>`` value ("" otherwise; the
    service refuses an empty one like a wrong one)."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
