"""Sender Keys, as libsignal defines them (``rust/protocol/src/sender_keys.rs``, ``protocol.rs``).

Each sending device of a group has a *sender key*: a chain id, a symmetric chain key with an
iteration counter, and a signing key pair. Message keys come from the chain:

* message key seed = HMAC-SHA256(chain key, 0x01); next chain key = HMAC-SHA256(chain key, 0x02)
* HKDF-SHA256(seed, salt = none, info = "WhisperGroup", 48 bytes) -> IV (16) || AES-256 key (32)
* ciphertext = AES-256-CBC with PKCS#7 padding (libsignal's choice, kept for the wire format)

A :class:`SenderKeyMessage` is ``0x33 || protobuf(distribution id, chain id, iteration,
ciphertext) || signature``; the signature covers everything before it. libsignal signs with
XEdDSA over its Curve25519 identity-style key; here the per-sender signing key is Ed25519 (from
``cryptography``), a 32-byte public key in the :class:`SenderKeyDistributionMessage` instead of
libsignal's 33-byte 0x05-prefixed one. That is the only deliberate wire difference.

The receiving side keeps skipped message keys for out-of-order delivery within
:mod:`e2ee_core.groups.consts` limits and rejects a key used twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from e2ee_core.groups import _proto
from e2ee_core.groups.consts import (
    CHAIN_KEY_LENGTH,
    CHAIN_KEY_SEED,
    DISTRIBUTION_ID_LENGTH,
    MAX_DISTRIBUTION_MESSAGE_BYTES,
    MAX_FORWARD_JUMPS,
    MAX_ITERATION,
    MAX_MESSAGE_KEYS,
    MAX_RECORD_BYTES,
    MAX_SENDER_KEY_MESSAGE_BYTES,
    MAX_SENDER_KEY_STATES,
    MESSAGE_KEY_INFO,
    MESSAGE_KEY_SEED,
    SENDER_KEY_VERSION,
    SENDER_KEY_VERSION_BYTE,
    SIGNATURE_LENGTH,
    SIGNING_KEY_LENGTH,
)
from e2ee_core.groups.errors import (
    DuplicateGroupMessage,
    InvalidSenderKeyMessage,
    InvalidSenderKeyRecord,
    InvalidSenderKeySignature,
    TooFarInFuture,
)

__all__ = [
    "SenderChainKey",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SenderKeyRecord",
    "SenderKeyState",
    "SenderMessageKey",
]


_PACKED_KEY = 4 + CHAIN_KEY_LENGTH  # a stored skipped key: iteration (u32) || seed


@dataclass(frozen=True, repr=False)
class SenderMessageKey:
    """The key material of one message: ``iteration`` and its 32-byte seed."""

    iteration: int
    seed: bytes

    def _derived(self) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=48, salt=None,
                    info=MESSAGE_KEY_INFO).derive(self.seed)

    @property
    def iv(self) -> bytes:
        return self._derived()[:16]

    @property
    def cipher_key(self) -> bytes:
        return self._derived()[16:]

    def iv_and_key(self) -> tuple[bytes, bytes]:
        derived = self._derived()
        return derived[:16], derived[16:]


@dataclass(frozen=True, repr=False)
class SenderChainKey:
    """One step of a sender's symmetric chain."""

    iteration: int
    seed: bytes

    def message_key(self) -> SenderMessageKey:
        return SenderMessageKey(self.iteration,
                                hmac.new(self.seed, MESSAGE_KEY_SEED, hashlib.sha256).digest())

    def next(self) -> SenderChainKey:
        return SenderChainKey(self.iteration + 1,
                              hmac.new(self.seed, CHAIN_KEY_SEED, hashlib.sha256).digest())


@dataclass(repr=False)
class SenderKeyState:
    """One chain of one sender: chain id, current chain key, signing key, skipped message keys.

    ``signing_private`` is present only in the sender's own state.
    """

    chain_id: int
    chain_key: SenderChainKey
    signing_public: bytes
    signing_private: bytes | None = None
    message_keys: OrderedDict[int, bytes] = field(default_factory=OrderedDict)

    @classmethod
    def generate(cls) -> SenderKeyState:
        """A fresh own sender key: random 31-bit chain id (as libsignal), random chain key at
        iteration 0, fresh Ed25519 signing key pair."""
        private = Ed25519PrivateKey.generate()
        return cls(secrets.randbits(31), SenderChainKey(0, secrets.token_bytes(CHAIN_KEY_LENGTH)),
                   private.public_key().public_bytes_raw(), private.private_bytes_raw())

    def add_message_key(self, key: SenderMessageKey) -> None:
        """Keep a skipped key; the oldest goes first once MAX_MESSAGE_KEYS are held."""
        self.message_keys[key.iteration] = key.seed
        while len(self.message_keys) > MAX_MESSAGE_KEYS:
            self.message_keys.popitem(last=False)

    def take_message_key(self, iteration: int) -> SenderMessageKey:
        """The key for ``iteration``, advancing the chain or consuming a skipped key.

        Mutates this state; callers work on a copy and store it only after success.
        """
        current = self.chain_key.iteration
        if iteration < current:
            seed = self.message_keys.pop(iteration, None)
            if seed is None:
                raise DuplicateGroupMessage("message key already used or too old")
            return SenderMessageKey(iteration, seed)
        if iteration - current > MAX_FORWARD_JUMPS:
            raise TooFarInFuture(f"iteration more than {MAX_FORWARD_JUMPS} ahead of the chain")
        chain = self.chain_key
        # Only the last MAX_MESSAGE_KEYS skipped keys can ever be kept: skip deriving the rest.
        while chain.iteration < iteration:
            if iteration - chain.iteration <= MAX_MESSAGE_KEYS:
                self.add_message_key(chain.message_key())
            chain = chain.next()
        self.chain_key = chain.next()
        return chain.message_key()

    def copy(self) -> SenderKeyState:
        return SenderKeyState(self.chain_id, self.chain_key, self.signing_public,
                              self.signing_private, OrderedDict(self.message_keys))

    def _to_proto(self, msg: Any) -> None:
        msg.chain_id = self.chain_id
        msg.chain_iteration = self.chain_key.iteration
        msg.chain_seed = self.chain_key.seed
        msg.signing_public = self.signing_public
        if self.signing_private is not None:
            msg.signing_private = self.signing_private
        if self.message_keys:
            msg.message_keys = b"".join(iteration.to_bytes(4, "big") + seed
                                        for iteration, seed in self.message_keys.items())

    @classmethod
    def _from_proto(cls, msg: Any) -> SenderKeyState:
        err = InvalidSenderKeyRecord
        seed = _proto.require(msg, "chain_seed", err)
        public = _proto.require(msg, "signing_public", err)
        private = msg.signing_private if msg.HasField("signing_private") else None
        if len(seed) != CHAIN_KEY_LENGTH or len(public) != SIGNING_KEY_LENGTH or (
                private is not None and len(private) != 32):
            raise err("sender key state has a key of the wrong length")
        packed = msg.message_keys
        if len(packed) % _PACKED_KEY or len(packed) > MAX_MESSAGE_KEYS * _PACKED_KEY:
            raise err("sender key state holds malformed or too many message keys")
        keys: OrderedDict[int, bytes] = OrderedDict(
            (int.from_bytes(packed[i:i + 4], "big"), packed[i + 4:i + _PACKED_KEY])
            for i in range(0, len(packed), _PACKED_KEY))
        return cls(_proto.require(msg, "chain_id", err),
                   SenderChainKey(_proto.require(msg, "chain_iteration", err), seed),
                   public, private, keys)


class SenderKeyRecord:
    """All chains kept for one (sender, distribution id), newest first, at most
    MAX_SENDER_KEY_STATES of them."""

    def __init__(self, states: list[SenderKeyState] | None = None) -> None:
        self.states: list[SenderKeyState] = list(states or [])

    def __repr__(self) -> str:
        return f"SenderKeyRecord(<{len(self.states)} states>)"

    def newest(self) -> SenderKeyState | None:
        return self.states[0] if self.states else None

    def state_for_chain_id(self, chain_id: int) -> SenderKeyState | None:
        return next((s for s in self.states if s.chain_id == chain_id), None)

    def add_state(self, state: SenderKeyState) -> bool:
        """Add a received chain as the newest. A chain id already held with the *same* signing
        key is kept as it is (a re-delivered distribution must not rewind the chain and re-open
        used keys); returns False then. The same chain id with a different signing key replaces
        the old chain (libsignal does the same)."""
        existing = self.state_for_chain_id(state.chain_id)
        if existing is not None:
            if hmac.compare_digest(existing.signing_public, state.signing_public):
                return False
            self.states.remove(existing)
        self.states.insert(0, state)
        del self.states[MAX_SENDER_KEY_STATES:]
        return True

    def copy(self) -> SenderKeyRecord:
        return SenderKeyRecord([s.copy() for s in self.states])

    def encode(self) -> bytes:
        """Serialize for a persistent store (holds secret keys: store it as such)."""
        msg = _proto.new("SenderKeyRecord")
        for state in self.states:
            state._to_proto(msg.states.add())
        return _proto.serialize(msg)

    @classmethod
    def decode(cls, data: bytes) -> SenderKeyRecord:
        if len(data) > MAX_RECORD_BYTES:
            raise InvalidSenderKeyRecord("sender key record too large")
        msg = _proto.parse("SenderKeyRecord", data, InvalidSenderKeyRecord)
        if len(msg.states) > MAX_SENDER_KEY_STATES:
            raise InvalidSenderKeyRecord("too many sender key states")
        return cls([SenderKeyState._from_proto(s) for s in msg.states])


def _check_version(data: bytes, what: str) -> None:
    if not data:
        raise InvalidSenderKeyMessage(f"empty {what}")
    if data[0] >> 4 != SENDER_KEY_VERSION:
        raise InvalidSenderKeyMessage(f"unsupported {what} version")


def _check_distribution_id(value: bytes) -> None:
    if len(value) != DISTRIBUTION_ID_LENGTH:
        raise InvalidSenderKeyMessage(f"distribution id must be {DISTRIBUTION_ID_LENGTH} bytes")


@dataclass(frozen=True, repr=False)
class SenderKeyMessage:
    """A signed group message: ``0x33 || protobuf || Ed25519 signature (64)``."""

    distribution_id: bytes
    chain_id: int
    iteration: int
    ciphertext: bytes
    serialized: bytes

    @classmethod
    def create(cls, distribution_id: bytes, chain_id: int, iteration: int, ciphertext: bytes,
               signing_private: bytes) -> SenderKeyMessage:
        msg = _proto.new("SenderKeyMessage")
        msg.distribution_uuid = distribution_id
        msg.chain_id = chain_id
        msg.iteration = iteration
        msg.ciphertext = ciphertext
        body = bytes([SENDER_KEY_VERSION_BYTE]) + _proto.serialize(msg)
        signature = Ed25519PrivateKey.from_private_bytes(signing_private).sign(body)
        return cls(distribution_id, chain_id, iteration, ciphertext, body + signature)

    def encode(self) -> bytes:
        return self.serialized

    @classmethod
    def decode(cls, data: bytes) -> SenderKeyMessage:
        """Parse (not yet verify) a SenderKeyMessage; raises InvalidSenderKeyMessage."""
        if not isinstance(data, bytes):
            raise InvalidSenderKeyMessage("message must be bytes")
        if len(data) > MAX_SENDER_KEY_MESSAGE_BYTES:
            raise InvalidSenderKeyMessage("sender key message too large")
        if len(data) < 1 + SIGNATURE_LENGTH:
            raise InvalidSenderKeyMessage("sender key message too short")
        _check_version(data, "sender key message")
        err = InvalidSenderKeyMessage
        msg = _proto.parse("SenderKeyMessage", data[1:-SIGNATURE_LENGTH], err)
        distribution_id = _proto.require(msg, "distribution_uuid", err)
        _check_distribution_id(distribution_id)
        ciphertext = _proto.require(msg, "ciphertext", err)
        if not ciphertext or len(ciphertext) % 16:
            raise err("ciphertext is not whole AES blocks")
        return cls(distribution_id, _proto.require(msg, "chain_id", err),
                   _proto.require(msg, "iteration", err), ciphertext, data)

    def verify_signature(self, signing_public: bytes) -> None:
        """Raise InvalidSenderKeySignature unless the signature verifies."""
        try:
            Ed25519PublicKey.from_public_bytes(signing_public).verify(
                self.serialized[-SIGNATURE_LENGTH:], self.serialized[:-SIGNATURE_LENGTH])
        except (InvalidSignature, ValueError):
            raise InvalidSenderKeySignature("sender key message signature invalid") from None


@dataclass(frozen=True, repr=False)
class SenderKeyDistributionMessage:
    """What a sender hands each recipient (over the pairwise sessions) so it can read the
    sender's group messages from ``iteration`` on: ``0x33 || protobuf``."""

    distribution_id: bytes
    chain_id: int
    iteration: int
    chain_key: bytes
    signing_key: bytes

    @classmethod
    def from_state(cls, distribution_id: bytes,
                   state: SenderKeyState) -> SenderKeyDistributionMessage:
        """The distribution of a state's *current* chain key: earlier messages stay unreadable."""
        return cls(distribution_id, state.chain_id, state.chain_key.iteration,
                   state.chain_key.seed, state.signing_public)

    def to_state(self) -> SenderKeyState:
        """The receiving side's state for this chain (no private signing key)."""
        return SenderKeyState(self.chain_id, SenderChainKey(self.iteration, self.chain_key),
                              self.signing_key)

    def encode(self) -> bytes:
        msg = _proto.new("SenderKeyDistributionMessage")
        msg.distribution_uuid = self.distribution_id
        msg.chain_id = self.chain_id
        msg.iteration = self.iteration
        msg.chain_key = self.chain_key
        msg.signing_key = self.signing_key
        return bytes([SENDER_KEY_VERSION_BYTE]) + _proto.serialize(msg)

    @classmethod
    def decode(cls, data: bytes) -> SenderKeyDistributionMessage:
        """Parse and validate; raises InvalidSenderKeyMessage on any malformed input."""
        if not isinstance(data, bytes):
            raise InvalidSenderKeyMessage("distribution message must be bytes")
        if len(data) > MAX_DISTRIBUTION_MESSAGE_BYTES:
            raise InvalidSenderKeyMessage("distribution message too large")
        _check_version(data, "distribution message")
        err = InvalidSenderKeyMessage
        msg = _proto.parse("SenderKeyDistributionMessage", data[1:], err)
        distribution_id = _proto.require(msg, "distribution_uuid", err)
        _check_distribution_id(distribution_id)
        chain_key = _proto.require(msg, "chain_key", err)
        signing_key = _proto.require(msg, "signing_key", err)
        if len(chain_key) != CHAIN_KEY_LENGTH or len(signing_key) != SIGNING_KEY_LENGTH:
            raise err("distribution message key of the wrong length")
        iteration = _proto.require(msg, "iteration", err)
        if iteration >= MAX_ITERATION:
            raise err("distribution message iteration out of range")
        return cls(distribution_id, _proto.require(msg, "chain_id", err), iteration, chain_key,
                   signing_key)
