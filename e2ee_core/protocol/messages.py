"""Wire formats: SignalMessage and PreKeySignalMessage (libsignal's WhisperTextProtocol).

The protobuf schemas are built at run time from a ``FileDescriptorProto`` (``protoc`` is not
needed), field numbers as in libsignal's ``wire.proto``::

    SignalMessage       { 1 ratchet_key, 2 counter, 3 previous_counter, 4 ciphertext }
    PreKeySignalMessage { 5 registration_id, 1 pre_key_id, 6 signed_pre_key_id,
                          7 kyber_pre_key_id, 8 kyber_ciphertext, 2 base_key,
                          3 identity_key, 4 message }

A SignalMessage on the wire is ``version || protobuf || MAC[:8]`` with
``MAC = HMAC-SHA256(mac_key, sender_identity || receiver_identity || version || protobuf)``;
a PreKeySignalMessage is ``version || protobuf`` and carries a whole SignalMessage.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from e2ee_core.errors import InvalidKey, InvalidMac, InvalidMessage, InvalidVersion
from e2ee_core.protocol.consts import (
    KYBER_1024_TYPE,
    MAC_LEN,
    MAX_CIPHERTEXT_LEN,
    MLKEM1024_CIPHERTEXT_LEN,
    SERIALIZED_CURVE_KEY_LEN,
    SUPPORTED_VERSIONS,
    VERSION_PQXDH,
)
from e2ee_core.protocol.kdf import hmac_sha256
from e2ee_core.protocol.keys import PublicKey

_BYTES = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
_UINT32 = descriptor_pb2.FieldDescriptorProto.TYPE_UINT32
_MESSAGE = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL


def _build() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="e2ee_core/signal_wire.proto", package="e2ee_core.signal", syntax="proto2")

    def add(name: str, fields: list[tuple[str, int, int, str | None]]) -> None:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, type_name in fields:
            f = msg.field.add(name=fname, number=number, type=ftype, label=_OPTIONAL)
            if type_name:
                f.type_name = type_name

    add("SignalMessage", [("ratchet_key", 1, _BYTES, None), ("counter", 2, _UINT32, None),
                          ("previous_counter", 3, _UINT32, None), ("ciphertext", 4, _BYTES, None)])
    add("PreKeySignalMessage", [
        ("pre_key_id", 1, _UINT32, None), ("base_key", 2, _BYTES, None),
        ("identity_key", 3, _BYTES, None), ("message", 4, _BYTES, None),
        ("registration_id", 5, _UINT32, None), ("signed_pre_key_id", 6, _UINT32, None),
        ("kyber_pre_key_id", 7, _UINT32, None), ("kyber_ciphertext", 8, _BYTES, None)])
    # fingerprint.proto: the scannable safety number.
    add("LogicalFingerprint", [("content", 1, _BYTES, None)])
    add("CombinedFingerprints", [
        ("version", 1, _UINT32, None),
        ("local_fingerprint", 2, _MESSAGE, ".e2ee_core.signal.LogicalFingerprint"),
        ("remote_fingerprint", 3, _MESSAGE, ".e2ee_core.signal.LogicalFingerprint")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"e2ee_core.signal.{name}"))
        for name in ("SignalMessage", "PreKeySignalMessage", "LogicalFingerprint",
                     "CombinedFingerprints")}


PROTO: dict[str, Any] = _build()


def _parse(name: str, data: bytes) -> Any:
    msg = PROTO[name]()
    try:
        msg.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError and friends on hostile bytes
        raise InvalidMessage("malformed protobuf") from exc
    return msg


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_signal_message_proto(ratchet_key: bytes, counter: int, previous_counter: int,
                                ciphertext: bytes) -> bytes:
    """The ``SignalMessage`` protobuf, byte for byte what ``SerializeToString`` gives.

    A minimal encoder because it runs for every message sent and building a protobuf object
    costs more than the rest of the framing; it writes the four fields in field-number order,
    as protobuf does (tests/e2ee/test_primitives.py compares it with the library for random
    values). Parsing hostile input stays with the protobuf library.
    """
    if not (0 <= counter < 1 << 32 and 0 <= previous_counter < 1 << 32):
        raise ValueError("counters are uint32")
    return b"".join((b"\x0a", _varint(len(ratchet_key)), ratchet_key,
                     b"\x10", _varint(counter), b"\x18", _varint(previous_counter),
                     b"\x22", _varint(len(ciphertext)), ciphertext))


def version_byte(version: int) -> int:
    return (version << 4) | version


def _check_version(data: bytes) -> int:
    if not data:
        raise InvalidMessage("empty message")
    if len(data) > MAX_CIPHERTEXT_LEN:
        raise InvalidMessage("message too large")
    version = data[0] >> 4
    if data[0] != version_byte(version) or version not in SUPPORTED_VERSIONS:
        raise InvalidVersion("unsupported message version")
    return version


def compute_mac(mac_key: bytes, sender_identity: bytes, receiver_identity: bytes,
                body: bytes) -> bytes:
    """libsignal's truncated MAC over sender id || receiver id || version || protobuf."""
    return hmac_sha256(mac_key, sender_identity + receiver_identity + body)[:MAC_LEN]


@dataclass(frozen=True)
class SignalMessage:
    """A Double Ratchet message (libsignal-node's "WhisperMessage")."""

    version: int
    ratchet_key: PublicKey
    counter: int
    previous_counter: int
    ciphertext: bytes
    serialized: bytes

    @classmethod
    def create(cls, version: int, *, mac_key: bytes, ratchet_key: PublicKey, counter: int,
               previous_counter: int, ciphertext: bytes, sender_identity: bytes,
               receiver_identity: bytes) -> SignalMessage:
        body = bytes([version_byte(version)]) + encode_signal_message_proto(
            ratchet_key.serialize(), counter, previous_counter, ciphertext)
        mac = compute_mac(mac_key, sender_identity, receiver_identity, body)
        return cls(version, ratchet_key, counter, previous_counter, ciphertext, body + mac)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignalMessage:
        """Parse (without checking the MAC); every failure is an :class:`InvalidMessage`."""
        version = _check_version(data)
        if len(data) < 1 + MAC_LEN + 1:
            raise InvalidMessage("message too short")
        proto = _parse("SignalMessage", data[1:-MAC_LEN])
        if not (proto.HasField("ratchet_key") and proto.HasField("counter")
                and proto.HasField("ciphertext")):
            raise InvalidMessage("incomplete SignalMessage")
        try:
            ratchet_key = PublicKey.deserialize(proto.ratchet_key)
        except InvalidKey as exc:
            raise InvalidMessage("invalid ratchet key") from exc
        return cls(version, ratchet_key, proto.counter, proto.previous_counter,
                   bytes(proto.ciphertext), bytes(data))

    def verify_mac(self, mac_key: bytes, sender_identity: bytes, receiver_identity: bytes) -> None:
        expected = compute_mac(mac_key, sender_identity, receiver_identity,
                               self.serialized[:-MAC_LEN])
        if not hmac.compare_digest(expected, self.serialized[-MAC_LEN:]):
            raise InvalidMac("message MAC does not verify")


@dataclass(frozen=True)
class PreKeySignalMessage:
    """The first messages of a session: X3DH/PQXDH inputs plus a SignalMessage."""

    version: int
    registration_id: int
    pre_key_id: int | None
    signed_pre_key_id: int
    base_key: PublicKey
    identity_key: PublicKey
    message: SignalMessage
    kyber_pre_key_id: int | None
    kyber_ciphertext: bytes | None
    serialized: bytes

    @classmethod
    def create(cls, version: int, *, registration_id: int, pre_key_id: int | None,
               signed_pre_key_id: int, base_key: PublicKey, identity_key: PublicKey,
               message: SignalMessage, kyber_pre_key_id: int | None = None,
               kyber_ciphertext: bytes | None = None) -> PreKeySignalMessage:
        proto = PROTO["PreKeySignalMessage"](
            registration_id=registration_id, signed_pre_key_id=signed_pre_key_id,
            base_key=base_key.serialize(), identity_key=identity_key.serialize(),
            message=message.serialized)
        if pre_key_id is not None:
            proto.pre_key_id = pre_key_id
        if kyber_pre_key_id is not None and kyber_ciphertext is not None:
            proto.kyber_pre_key_id = kyber_pre_key_id
            proto.kyber_ciphertext = kyber_ciphertext
        body = bytes([version_byte(version)]) + proto.SerializeToString()
        return cls(version, registration_id, pre_key_id, signed_pre_key_id, base_key,
                   identity_key, message, kyber_pre_key_id, kyber_ciphertext, body)

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeySignalMessage:
        version = _check_version(data)
        proto = _parse("PreKeySignalMessage", data[1:])
        if not (proto.HasField("signed_pre_key_id") and proto.HasField("base_key")
                and proto.HasField("identity_key") and proto.HasField("message")):
            raise InvalidMessage("incomplete PreKeySignalMessage")
        try:
            base_key = PublicKey.deserialize(proto.base_key)
            identity_key = PublicKey.deserialize(proto.identity_key)
        except InvalidKey as exc:
            raise InvalidMessage("invalid key in PreKeySignalMessage") from exc
        inner = SignalMessage.from_bytes(bytes(proto.message))
        if inner.version != version:
            raise InvalidVersion("inner and outer versions differ")
        kyber_id: int | None = None
        kyber_ct: bytes | None = None
        if version >= VERSION_PQXDH:
            if not (proto.HasField("kyber_pre_key_id") and proto.HasField("kyber_ciphertext")):
                raise InvalidMessage("PQXDH message without KEM ciphertext")
            kyber_id = proto.kyber_pre_key_id
            kyber_ct = bytes(proto.kyber_ciphertext)
            if len(kyber_ct) != MLKEM1024_CIPHERTEXT_LEN:
                raise InvalidMessage("KEM ciphertext has the wrong length")
        return cls(version, proto.registration_id,
                   proto.pre_key_id if proto.HasField("pre_key_id") else None,
                   proto.signed_pre_key_id, base_key, identity_key, inner, kyber_id, kyber_ct,
                   bytes(data))


assert SERIALIZED_CURVE_KEY_LEN == 33 and KYBER_1024_TYPE == 8  # layouts above rely on these
