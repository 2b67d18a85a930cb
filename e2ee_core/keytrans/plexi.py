"""Auditor signatures in Cloudflare plexi's format (plexi_core/src/lib.rs), sans-I/O.

An auditor that has checked the append-only proofs up to an epoch signs that epoch's root hash
(the *digest*) with Ed25519 (RFC 8032, no prehash, no context) over plexi's SignatureMessage
``(ciphersuite, namespace, timestamp, epoch, digest)``, encoded as the ciphersuite says:

- ``0x0001`` ProtobufEd25519: the proto2 message of plexi's types.proto (every field present,
  in field order; ``epoch`` is a nested ``Epoch { inner = 1 }``);
- ``0x0002`` BincodeEd25519: bincode's legacy configuration, ``u32le(ciphersuite) ||
  u64le(len) namespace || u64le(timestamp) || u64le(epoch) || u64le(len) digest``.

Both reproduce plexi's test vectors byte for byte (tests/keytrans/test_plexi_vectors.py). The
auditor serves a :class:`SignatureResponse` as JSON; :func:`require_auditor_signature` is the
client's check that an epoch it accepts carries a valid signature of one auditor it trusts over
the same root hash (a server showing two roots for one epoch gets at most one signed).

Decoders (:meth:`SignatureMessage.from_bytes`, :meth:`SignatureResponse.from_json`) take
untrusted input and raise only :class:`AuditorSignatureError`. Verification is as strict as
plexi's ``verify_strict``: small-order keys and signature points are refused.
"""

from __future__ import annotations

import hmac
import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from e2ee_core import protobuf
from e2ee_core.keytrans import consts, ecvrf
from e2ee_core.keytrans.errors import AuditorSignatureError

CIPHERSUITES = (consts.PLEXI_PROTOBUF_ED25519, consts.PLEXI_BINCODE_ED25519)

# plexi_core/src/proto/specs/types.proto (package plexi_core.types). ``namespace`` is a proto
# string; it is declared bytes here (same wire type) so that invalid UTF-8 is our typed error.
_OPT = protobuf.OPT
_MESSAGES = protobuf.build_messages("plexi_types.proto", "plexi_core.types", {
    "Epoch": [("inner", 1, protobuf.U64, _OPT)],
    "SignatureMessage": [
        ("ciphersuite", 1, protobuf.U32, _OPT),
        ("namespace", 2, protobuf.BYTES, _OPT),
        ("timestamp", 3, protobuf.U64, _OPT),
        ("epoch", 4, protobuf.MSG, _OPT, "Epoch"),
        ("digest", 5, protobuf.BYTES, _OPT),
    ],
})
_BINCODE_HEAD = struct.Struct("<IQ")  # ciphersuite, namespace length
_BINCODE_MIDDLE = struct.Struct("<QQQ")  # timestamp, epoch, digest length
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def key_id(verifying_key: bytes) -> int:
    """plexi's key id: the last byte of the Ed25519 public key (crypto.rs)."""
    if len(verifying_key) != consts.ED25519_KEY_LEN:
        raise AuditorSignatureError("an auditor key is 32 bytes")
    return verifying_key[-1]


def public_key(signing_key: bytes) -> bytes:
    """The Ed25519 public key of a 32-byte secret key (seed)."""
    if len(signing_key) != consts.ED25519_KEY_LEN:
        raise AuditorSignatureError("an auditor signing key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(signing_key).public_key().public_bytes_raw()


def _valid_namespace(namespace: str) -> bytes:
    try:
        raw = namespace.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditorSignatureError("the namespace is not UTF-8") from None
    if not raw or len(raw) > consts.MAX_NAMESPACE_BYTES:
        raise AuditorSignatureError("the namespace is empty or too long")
    return raw


@dataclass(frozen=True, slots=True)
class SignatureMessage:
    """What an auditor signs: it audited ``epoch`` of log ``namespace`` and its root hash is
    ``digest``; ``timestamp`` is Unix milliseconds."""

    ciphersuite: int
    namespace: str
    timestamp: int
    epoch: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.ciphersuite not in CIPHERSUITES:
            raise AuditorSignatureError("unknown ciphersuite")
        _valid_namespace(self.namespace)
        for value in (self.timestamp, self.epoch):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 0 <= value <= consts.MAX_U64:
                raise AuditorSignatureError("timestamp and epoch are u64")
        if not isinstance(self.digest, bytes) or len(self.digest) > consts.MAX_DIGEST_BYTES:
            raise AuditorSignatureError("the digest is too long")

    def to_bytes(self) -> bytes:
        """The signed bytes (SignatureMessage::to_vec): the ciphersuite's encoding."""
        namespace = self.namespace.encode("utf-8")
        if self.ciphersuite == consts.PLEXI_BINCODE_ED25519:
            return (_BINCODE_HEAD.pack(self.ciphersuite, len(namespace)) + namespace
                    + _BINCODE_MIDDLE.pack(self.timestamp, self.epoch, len(self.digest))
                    + self.digest)
        msg: Any = _MESSAGES["SignatureMessage"]()
        msg.ciphersuite = self.ciphersuite
        msg.namespace = namespace
        msg.timestamp = self.timestamp
        msg.digest = self.digest
        msg.epoch.inner = self.epoch
        data: bytes = msg.SerializeToString(deterministic=True)
        return data

    @classmethod
    def from_bytes(cls, data: bytes, ciphersuite: int) -> SignatureMessage:
        """Decode the ``ciphersuite`` encoding strictly: the bytes must be exactly what
        :meth:`to_bytes` gives for the decoded fields (no unknown or repeated fields, no
        non-minimal varints, nothing trailing)."""
        if ciphersuite not in CIPHERSUITES:
            raise AuditorSignatureError("unknown ciphersuite")
        if len(data) > 2 * consts.MAX_NAMESPACE_BYTES + consts.MAX_DIGEST_BYTES:
            raise AuditorSignatureError("signature message too long")
        message = (cls._from_bincode(data) if ciphersuite == consts.PLEXI_BINCODE_ED25519
                   else cls._from_protobuf(data))
        if message.ciphersuite != ciphersuite or message.to_bytes() != data:
            raise AuditorSignatureError("the signature message is not in canonical form")
        return message

    @classmethod
    def _from_bincode(cls, data: bytes) -> SignatureMessage:
        try:
            suite, ns_len = _BINCODE_HEAD.unpack_from(data, 0)
            offset = _BINCODE_HEAD.size
            if ns_len > consts.MAX_NAMESPACE_BYTES:
                raise AuditorSignatureError("the namespace is too long")
            namespace = data[offset:offset + ns_len]
            offset += ns_len
            timestamp, epoch, digest_len = _BINCODE_MIDDLE.unpack_from(data, offset)
        except struct.error:
            raise AuditorSignatureError("truncated signature message") from None
        offset += _BINCODE_MIDDLE.size
        if len(namespace) != ns_len or digest_len != len(data) - offset:
            raise AuditorSignatureError("signature message lengths do not match")
        return cls(suite, _decode_namespace(namespace), timestamp, epoch, data[offset:])

    @classmethod
    def _from_protobuf(cls, data: bytes) -> SignatureMessage:
        msg = protobuf.parse(_MESSAGES, "SignatureMessage", data, AuditorSignatureError)
        for name in ("ciphersuite", "namespace", "timestamp", "epoch", "digest"):
            if not msg.HasField(name):
                raise AuditorSignatureError("a required field is missing")
        if not msg.epoch.HasField("inner"):
            raise AuditorSignatureError("a required field is missing")
        return cls(msg.ciphersuite, _decode_namespace(msg.namespace), msg.timestamp,
                   msg.epoch.inner, bytes(msg.digest))


def _decode_namespace(raw: bytes) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise AuditorSignatureError("the namespace is not UTF-8") from None


def sign(signing_key: bytes, message: SignatureMessage) -> bytes:
    """The auditor's 64-byte Ed25519 signature over ``message.to_bytes()``."""
    if len(signing_key) != consts.ED25519_KEY_LEN:
        raise AuditorSignatureError("an auditor signing key is 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(signing_key).sign(message.to_bytes())


def _not_small_order(point: bytes) -> bool:
    decoded = ecvrf.decode_point(point)
    return decoded is not None and ecvrf.times_cofactor(decoded) != ecvrf.IDENTITY


def verify(verifying_key: bytes, message: SignatureMessage, signature: bytes) -> None:
    """The signature is the auditor's over ``message``, else AuditorSignatureError.

    As ed25519-dalek's ``verify_strict`` (what plexi uses): the key and the signature's R must
    be canonical points of more than small order; OpenSSL (``cryptography``) checks the rest."""
    if len(verifying_key) != consts.ED25519_KEY_LEN \
            or len(signature) != consts.ED25519_SIGNATURE_LEN:
        raise AuditorSignatureError("wrong auditor key or signature length")
    if not _not_small_order(verifying_key) or not _not_small_order(signature[:32]):
        raise AuditorSignatureError("the auditor key or signature is a weak point")
    try:
        Ed25519PublicKey.from_public_bytes(verifying_key).verify(signature, message.to_bytes())
    except (InvalidSignature, ValueError):
        raise AuditorSignatureError("the auditor signature does not verify") from None


def _field(obj: dict[str, Any], name: str, kind: type, *, optional: bool = False) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise AuditorSignatureError(f"signature response field {name} is missing or mistyped")
    return value


def _hex(obj: dict[str, Any], name: str, *, optional: bool = False) -> bytes | None:
    text = _field(obj, name, str, optional=optional)
    if text is None:
        return None
    if len(text) > 2 * consts.MAX_SIGNATURE_RESPONSE_BYTES or not _HEX.fullmatch(text):
        raise AuditorSignatureError(f"signature response field {name} is not hex")
    return bytes.fromhex(text)


@dataclass(frozen=True, slots=True)
class SignatureResponse:
    """plexi's SignatureResponse: the message, its signature and the auditor's key id."""

    message: SignatureMessage
    signature: bytes
    key_id: int | None = None

    @property
    def epoch(self) -> int:
        return self.message.epoch

    @property
    def digest(self) -> bytes:
        return self.message.digest

    def to_json(self) -> dict[str, Any]:
        """plexi's JSON: version and ciphersuite (equal), hex digest, signature and
        serialized_message (the signed bytes)."""
        m = self.message
        body: dict[str, Any] = {
            "version": m.ciphersuite, "ciphersuite": m.ciphersuite, "namespace": m.namespace,
            "timestamp": m.timestamp, "epoch": m.epoch, "digest": m.digest.hex(),
            "signature": self.signature.hex(), "serialized_message": m.to_bytes().hex()}
        if self.key_id is not None:
            body["key_id"] = self.key_id
        return body

    @classmethod
    def from_json(cls, data: bytes | str | dict[str, Any]) -> SignatureResponse:
        """Decode an auditor's answer (bytes, text or an already parsed object)."""
        if isinstance(data, (bytes, str)):
            if len(data) > consts.MAX_SIGNATURE_RESPONSE_BYTES:
                raise AuditorSignatureError("signature response too long")
            try:
                obj = json.loads(data)
            except (ValueError, RecursionError):
                raise AuditorSignatureError("signature response is not JSON") from None
        else:
            obj = data
        if not isinstance(obj, dict):
            raise AuditorSignatureError("signature response is not a JSON object")
        version = _field(obj, "version", int)
        suite = _field(obj, "ciphersuite", int)
        if version != suite:
            raise AuditorSignatureError("signature response version and ciphersuite differ")
        message = SignatureMessage(suite, _field(obj, "namespace", str),
                                   _field(obj, "timestamp", int), _field(obj, "epoch", int),
                                   _hex(obj, "digest") or b"")
        signature = _hex(obj, "signature")
        assert signature is not None
        if len(signature) != consts.ED25519_SIGNATURE_LEN:
            raise AuditorSignatureError("the signature is not 64 bytes")
        kid = _field(obj, "key_id", int, optional=True)
        if kid is not None and not 0 <= kid <= 255:
            raise AuditorSignatureError("key_id is one byte")
        serialized = _hex(obj, "serialized_message", optional=True)
        if serialized is not None and serialized != message.to_bytes():
            raise AuditorSignatureError("serialized_message is not the signed message")
        return cls(message, signature, kid)

    def verify(self, verifying_key: bytes) -> None:
        """The signature verifies under ``verifying_key`` (and key_id, if given, matches)."""
        if self.key_id is not None and self.key_id != key_id(verifying_key):
            raise AuditorSignatureError("the signature is from another auditor key")
        verify(verifying_key, self.message, self.signature)

    def verify_any(self, verifying_keys: Iterable[bytes]) -> None:
        """The signature verifies under one of ``verifying_keys`` (trusted auditors)."""
        for key in verifying_keys:
            if len(key) != consts.ED25519_KEY_LEN \
                    or (self.key_id is not None and self.key_id != key[-1]):
                continue
            try:
                verify(key, self.message, self.signature)
            except AuditorSignatureError:
                continue
            return
        raise AuditorSignatureError("no trusted auditor signed this epoch")


def signature_response(signing_key: bytes, message: SignatureMessage) -> SignatureResponse:
    """Sign ``message`` as an auditor: the response to serve."""
    return SignatureResponse(message, sign(signing_key, message),
                             key_id(public_key(signing_key)))


def require_auditor_signature(response: SignatureResponse, auditor_keys: Iterable[bytes],
                              namespace: str, epoch: int, root_hash: bytes) -> None:
    """The client's check before it accepts ``root_hash`` as the root of ``epoch``: a trusted
    auditor signed exactly this (namespace, epoch, root). A server that shows another root to
    this client than the one the auditor audited (a forked view) fails here."""
    if response.message.namespace != namespace:
        raise AuditorSignatureError("the auditor signed another log")
    if response.epoch != epoch:
        raise AuditorSignatureError("the auditor signed another epoch")
    if not hmac.compare_digest(response.digest, root_hash):
        raise AuditorSignatureError("the auditor signed another root for this epoch")
    response.verify_any(auditor_keys)
