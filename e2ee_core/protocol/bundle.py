"""The prekey bundle a server hands out, with JSON-able and byte serializations.

A server stores and forwards bundles as opaque data: :meth:`PreKeyBundle.to_dict` gives a
JSON-able dict (bytes as lowercase hex), :meth:`to_bytes` its canonical JSON encoding.
Signatures are checked by :meth:`verify` (``Device.start_session`` calls it), never trusted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from e2ee_core.errors import InvalidKey, InvalidMessage
from e2ee_core.protocol.keys import KemPublicKey, PublicKey, verify_signed_key


@dataclass(frozen=True)
class PreKeyBundle:
    """Everything needed to start a session with one device (keys in serialized form)."""

    registration_id: int
    device_id: int
    identity_key: bytes  # 33 bytes, 0x05 || key
    signed_pre_key_id: int
    signed_pre_key: bytes  # 33 bytes
    signed_pre_key_signature: bytes  # 64 bytes, XEdDSA by identity_key
    pre_key_id: int | None = None
    pre_key: bytes | None = None  # 33 bytes, optional one-time prekey
    kyber_pre_key_id: int | None = None
    kyber_pre_key: bytes | None = None  # 1569 bytes, 0x08 || ML-KEM-1024 key
    kyber_pre_key_signature: bytes | None = None

    @property
    def has_kyber(self) -> bool:
        return self.kyber_pre_key is not None

    def verify(self) -> None:
        """Check key encodings and both signatures; raise InvalidKey / InvalidSignature."""
        identity = PublicKey.deserialize(self.identity_key)
        PublicKey.deserialize(self.signed_pre_key)
        verify_signed_key(identity, self.signed_pre_key, self.signed_pre_key_signature)
        if (self.pre_key is None) != (self.pre_key_id is None):
            raise InvalidKey("one-time prekey and its id come together")
        if self.pre_key is not None:
            PublicKey.deserialize(self.pre_key)
        kyber = (self.kyber_pre_key, self.kyber_pre_key_id, self.kyber_pre_key_signature)
        if any(v is None for v in kyber) and any(v is not None for v in kyber):
            raise InvalidKey("KEM prekey, its id and its signature come together")
        if self.kyber_pre_key is not None and self.kyber_pre_key_signature is not None:
            KemPublicKey.deserialize(self.kyber_pre_key)
            verify_signed_key(identity, self.kyber_pre_key, self.kyber_pre_key_signature)

    # -- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if value is None:
                continue
            out[name] = value.hex() if isinstance(value, bytes) else value
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PreKeyBundle:
        """Parse :meth:`to_dict` output; malformed input is :class:`InvalidMessage`."""
        if not isinstance(data, dict):
            raise InvalidMessage("bundle must be an object")
        ints = ("registration_id", "device_id", "signed_pre_key_id", "pre_key_id",
                "kyber_pre_key_id")
        blobs = ("identity_key", "signed_pre_key", "signed_pre_key_signature", "pre_key",
                 "kyber_pre_key", "kyber_pre_key_signature")
        unknown = set(data) - set(ints) - set(blobs)
        if unknown:
            raise InvalidMessage("unknown bundle field")
        values: dict[str, Any] = {}
        for name in ints:
            value = data.get(name)
            if value is not None and (type(value) is not int or not 0 <= value < 2**32):
                raise InvalidMessage("bundle id fields must be 32-bit unsigned integers")
            values[name] = value
        for name in blobs:
            value = data.get(name)
            if value is not None:
                if not isinstance(value, str):
                    raise InvalidMessage("bundle keys must be hex strings")
                try:
                    value = bytes.fromhex(value)
                except ValueError as exc:
                    raise InvalidMessage("bundle keys must be hex strings") from exc
            values[name] = value
        for required in ("registration_id", "device_id", "signed_pre_key_id", "identity_key",
                         "signed_pre_key", "signed_pre_key_signature"):
            if values[required] is None:
                raise InvalidMessage("bundle lacks a required field")
        return cls(**values)

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeyBundle:
        try:
            decoded = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise InvalidMessage("bundle is not JSON") from exc
        return cls.from_dict(decoded)
