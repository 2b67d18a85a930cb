"""Curve25519 and ML-KEM-1024 keys, serialized as libsignal does (0x05 / 0x08 type bytes)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from e2ee_core.errors import InvalidKey, InvalidSignature
from e2ee_core.protocol import xeddsa
from e2ee_core.protocol.consts import (
    CURVE_KEY_LEN,
    DJB_TYPE,
    KYBER_1024_TYPE,
    MLKEM1024_CIPHERTEXT_LEN,
    MLKEM1024_PUBLIC_LEN,
    MLKEM_SEED_LEN,
    SERIALIZED_CURVE_KEY_LEN,
)


class PublicKey:
    """A Curve25519 public key; ``serialize()`` is libsignal's 33-byte 0x05-prefixed form.

    The ``cryptography`` key object is built lazily: most public keys on the hot path (ratchet
    keys in messages) are only compared and re-serialized, never used in an agreement.
    """

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes, key: X25519PublicKey | None = None) -> None:
        self.raw = raw
        self._key = key

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        if len(raw) != CURVE_KEY_LEN:
            raise InvalidKey("Curve25519 public key must be 32 bytes")
        return cls(bytes(raw))

    @classmethod
    def deserialize(cls, data: bytes) -> PublicKey:
        """Parse the 33-byte 0x05 || key form; anything else is :class:`InvalidKey`."""
        if len(data) != SERIALIZED_CURVE_KEY_LEN or data[0] != DJB_TYPE:
            raise InvalidKey("public key must be 0x05 followed by 32 bytes")
        return cls(bytes(data[1:]))

    def x25519(self) -> X25519PublicKey:
        if self._key is None:
            self._key = X25519PublicKey.from_public_bytes(self.raw)
        return self._key

    def serialize(self) -> bytes:
        return bytes([DJB_TYPE]) + self.raw

    def verify(self, message: bytes, signature: bytes) -> bool:
        """XEdDSA-verify ``signature`` over ``message``."""
        return xeddsa.verify(self.raw, message, signature)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"PublicKey({self.raw.hex()[:8]}...)"


@dataclass(frozen=True, eq=False)
class PrivateKey:
    """A Curve25519 private key (32 raw bytes). ``repr`` never shows the key."""

    raw: bytes = field(repr=False)
    _key: X25519PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls.from_raw(os.urandom(CURVE_KEY_LEN))

    @classmethod
    def from_raw(cls, raw: bytes) -> PrivateKey:
        if len(raw) != CURVE_KEY_LEN:
            raise InvalidKey("Curve25519 private key must be 32 bytes")
        return cls(bytes(raw), X25519PrivateKey.from_private_bytes(bytes(raw)))

    def public_key(self) -> PublicKey:
        pub = self._key.public_key()
        return PublicKey(pub.public_bytes_raw(), pub)

    def agree(self, their: PublicKey) -> bytes:
        """X25519; a low-order peer key (all-zero output) is :class:`InvalidKey`."""
        try:
            return self._key.exchange(their.x25519())
        except ValueError as exc:
            raise InvalidKey("key agreement with a low-order point") from exc

    def sign(self, message: bytes) -> bytes:
        """XEdDSA signature (64 bytes)."""
        return xeddsa.sign(self.raw, message)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)


@dataclass(frozen=True)
class KeyPair:
    """A Curve25519 key pair (identity, signed prekey, one-time prekey or ratchet key)."""

    private: PrivateKey
    public: PublicKey

    @classmethod
    def generate(cls) -> KeyPair:
        private = PrivateKey.generate()
        return cls(private, private.public_key())

    @classmethod
    def from_private(cls, raw: bytes) -> KeyPair:
        private = PrivateKey.from_raw(raw)
        return cls(private, private.public_key())


IdentityKeyPair = KeyPair


def verify_signed_key(identity: PublicKey, serialized_key: bytes, signature: bytes) -> None:
    """Raise :class:`InvalidSignature` unless the identity signed this serialized key."""
    if not identity.verify(serialized_key, signature):
        raise InvalidSignature("prekey signature does not verify")


@dataclass(frozen=True, eq=False)
class KemPublicKey:
    """An ML-KEM-1024 public key; ``serialize()`` is 0x08 || 1568 bytes."""

    raw: bytes
    _key: mlkem.MLKEM1024PublicKey = field(repr=False, compare=False)

    @classmethod
    def deserialize(cls, data: bytes) -> KemPublicKey:
        if len(data) != MLKEM1024_PUBLIC_LEN + 1 or data[0] != KYBER_1024_TYPE:
            raise InvalidKey("KEM public key must be 0x08 followed by 1568 bytes")
        try:
            key = mlkem.MLKEM1024PublicKey.from_public_bytes(bytes(data[1:]))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise InvalidKey("malformed ML-KEM-1024 public key") from exc
        return cls(bytes(data[1:]), key)

    def serialize(self) -> bytes:
        return bytes([KYBER_1024_TYPE]) + self.raw

    def encapsulate(self) -> tuple[bytes, bytes]:
        """``(shared_secret, ciphertext)``."""
        shared, ciphertext = self._key.encapsulate()
        return shared, ciphertext

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KemPublicKey) and self.raw == other.raw

    def __hash__(self) -> int:
        return hash(self.raw)


@dataclass(frozen=True, eq=False)
class KemKeyPair:
    """An ML-KEM-1024 key pair, stored as its 64-byte seed."""

    seed: bytes = field(repr=False)
    public: KemPublicKey
    _key: mlkem.MLKEM1024PrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls) -> KemKeyPair:
        return cls.from_seed(os.urandom(MLKEM_SEED_LEN))

    @classmethod
    def from_seed(cls, seed: bytes) -> KemKeyPair:
        if len(seed) != MLKEM_SEED_LEN:
            raise InvalidKey("ML-KEM seed must be 64 bytes")
        key = mlkem.MLKEM1024PrivateKey.from_seed_bytes(bytes(seed))
        pub = key.public_key()
        return cls(bytes(seed), KemPublicKey(pub.public_bytes_raw(), pub), key)

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != MLKEM1024_CIPHERTEXT_LEN:
            raise InvalidKey("ML-KEM-1024 ciphertext must be 1568 bytes")
        try:
            return self._key.decapsulate(bytes(ciphertext))
        except ValueError as exc:
            raise InvalidKey("malformed ML-KEM-1024 ciphertext") from exc
