"""The Double Ratchet (Signal's specification, section 3) over one session state.

Every function here mutates the :class:`SessionState` it is given; callers work on a
:meth:`SessionState.clone` and keep it only when the whole operation succeeded, so a failed
decrypt never changes stored state.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

from e2ee_core.errors import DuplicateMessage, InvalidKey, InvalidMessage, MessageTooFarInFuture
from e2ee_core.protocol import padding
from e2ee_core.protocol.consts import (
    LABEL_RATCHET,
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_RECEIVER_CHAINS,
)
from e2ee_core.protocol.kdf import MessageKeys, chain_step, hkdf
from e2ee_core.protocol.keys import KeyPair, PrivateKey, PublicKey
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage
from service_kit import wire

_STATE_HEAD = struct.Struct(">BIIIIB?")
_CHAIN_HEAD = struct.Struct(">II")
_PENDING = struct.Struct(">?II?II")
_U32 = struct.Struct(">I")


def _Reader(data: bytes) -> wire.Reader:
    return wire.Reader(data, error=ValueError)


def kdf_root(root_key: bytes, dh_output: bytes) -> tuple[bytes, bytes]:
    """KDF_RK: HKDF(dh_output, salt=root_key, "WhisperRatchet") -> (root key, chain key)."""
    okm = hkdf(dh_output, root_key, LABEL_RATCHET, 64)
    return okm[:32], okm[32:]


@dataclass
class ReceiverChain:
    """The receiving chain for one of the peer's ratchet keys, with its skipped keys."""

    ratchet_key: bytes  # peer's ratchet public key, 32 raw bytes
    chain_key: bytes
    index: int  # counter of the next message key the chain key yields
    skipped: dict[int, bytes] = field(default_factory=dict)  # counter -> message key seed

    def clone(self) -> ReceiverChain:
        return ReceiverChain(self.ratchet_key, self.chain_key, self.index, dict(self.skipped))


@dataclass
class PendingPreKey:
    """What Alice repeats in every message until Bob's first reply arrives."""

    pre_key_id: int | None
    signed_pre_key_id: int
    base_key: bytes  # 32 raw bytes
    kyber_pre_key_id: int | None = None
    kyber_ciphertext: bytes | None = None


@dataclass
class SessionState:
    """One Double Ratchet session with one remote device."""

    version: int
    local_identity: bytes  # 33-byte serialized identity keys
    remote_identity: bytes
    local_registration_id: int
    remote_registration_id: int
    root_key: bytes
    sender_ratchet_private: bytes
    sender_ratchet_public: bytes
    sender_chain_key: bytes
    sender_index: int
    previous_counter: int
    base_key: bytes  # Alice's base key: names the session across both sides
    receiver_chains: list[ReceiverChain] = field(default_factory=list)
    pending_prekey: PendingPreKey | None = None

    def clone(self) -> SessionState:
        copy = object.__new__(SessionState)
        copy.__dict__.update(self.__dict__)  # bytes/ints are immutable; chains are copied below
        copy.receiver_chains = [c.clone() for c in self.receiver_chains]
        if self.pending_prekey is not None:
            copy.pending_prekey = replace(self.pending_prekey)
        return copy

    # -- serialization (a compact binary layout; stores persist it as bytes) ------------------
    def encode(self) -> bytes:
        p = self.pending_prekey
        parts = [_STATE_HEAD.pack(self.version, self.local_registration_id,
                                  self.remote_registration_id, self.sender_index,
                                  self.previous_counter, len(self.receiver_chains),
                                  p is not None),
                 self.local_identity, self.remote_identity, self.root_key,
                 self.sender_ratchet_private, self.sender_ratchet_public,
                 self.sender_chain_key, self.base_key]
        for c in self.receiver_chains:
            parts.append(_CHAIN_HEAD.pack(c.index, len(c.skipped)))
            parts.append(c.ratchet_key)
            parts.append(c.chain_key)
            for counter, seed in c.skipped.items():
                parts.append(_U32.pack(counter))
                parts.append(seed)
        if p is not None:
            ct = p.kyber_ciphertext or b""
            parts.append(_PENDING.pack(p.pre_key_id is not None, p.pre_key_id or 0,
                                       p.signed_pre_key_id, p.kyber_pre_key_id is not None,
                                       p.kyber_pre_key_id or 0, len(ct)))
            parts.append(p.base_key)
            parts.append(ct)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> SessionState:
        """Inverse of :meth:`encode`; raises ``ValueError`` on any malformed input."""
        reader = _Reader(data)
        (version, local_reg, remote_reg, sender_index, previous_counter, n_chains,
         has_pending) = reader.unpack(_STATE_HEAD)
        fixed = [reader.take(n) for n in (33, 33, 32, 32, 32, 32, 32)]
        chains = []
        for _ in range(n_chains):
            index, n_skipped = reader.unpack(_CHAIN_HEAD)
            chain = ReceiverChain(reader.take(32), reader.take(32), index)
            for _ in range(n_skipped):
                (counter,) = reader.unpack(_U32)
                chain.skipped[counter] = reader.take(32)
            chains.append(chain)
        pending = None
        if has_pending:
            has_pre, pre_id, signed_id, has_kyber, kyber_id, ct_len = reader.unpack(_PENDING)
            base = reader.take(32)
            ct = reader.take(ct_len)
            pending = PendingPreKey(pre_id if has_pre else None, signed_id, base,
                                    kyber_id if has_kyber else None,
                                    ct if has_kyber else None)
        reader.end()
        return cls(version, fixed[0], fixed[1], local_reg, remote_reg, fixed[2], fixed[3],
                   fixed[4], fixed[5], sender_index, previous_counter, fixed[6], chains,
                   pending)

    # -- ratchet -------------------------------------------------------------------------------
    def receiver_chain(self, ratchet_key: bytes) -> ReceiverChain | None:
        for chain in self.receiver_chains:
            if chain.ratchet_key == ratchet_key:
                return chain
        return None

    def add_receiver_chain(self, chain: ReceiverChain) -> None:
        self.receiver_chains.append(chain)
        del self.receiver_chains[:-MAX_RECEIVER_CHAINS]

    def dh_ratchet(self, their_ratchet_key: PublicKey) -> ReceiverChain:
        """A new peer ratchet key: derive its receiving chain and a fresh sending chain."""
        ours = PrivateKey.from_raw(self.sender_ratchet_private)
        root, receiving = kdf_root(self.root_key, ours.agree(their_ratchet_key))
        new_pair = KeyPair.generate()
        root, sending = kdf_root(root, new_pair.private.agree(their_ratchet_key))
        chain = ReceiverChain(their_ratchet_key.raw, receiving, 0)
        self.add_receiver_chain(chain)
        self.root_key = root
        self.previous_counter = max(self.sender_index - 1, 0)
        self.sender_ratchet_private = new_pair.private.raw
        self.sender_ratchet_public = new_pair.public.raw
        self.sender_chain_key = sending
        self.sender_index = 0
        return chain


def encrypt(state: SessionState, plaintext: bytes) -> SignalMessage | PreKeySignalMessage:
    """Pad, encrypt and authenticate ``plaintext``; advances the sending chain."""
    seed, next_chain_key = chain_step(state.sender_chain_key)
    keys = MessageKeys.from_seed(seed)
    ciphertext = keys.encrypt(padding.pad(plaintext))
    message = SignalMessage.create(
        state.version, mac_key=keys.mac_key,
        ratchet_key=PublicKey.from_raw(state.sender_ratchet_public),
        counter=state.sender_index, previous_counter=state.previous_counter,
        ciphertext=ciphertext, sender_identity=state.local_identity,
        receiver_identity=state.remote_identity)
    state.sender_chain_key = next_chain_key
    state.sender_index += 1
    pending = state.pending_prekey
    if pending is None:
        return message
    return PreKeySignalMessage.create(
        state.version, registration_id=state.local_registration_id,
        pre_key_id=pending.pre_key_id, signed_pre_key_id=pending.signed_pre_key_id,
        base_key=PublicKey.from_raw(pending.base_key),
        identity_key=PublicKey.deserialize(state.local_identity), message=message,
        kyber_pre_key_id=pending.kyber_pre_key_id, kyber_ciphertext=pending.kyber_ciphertext)


def _message_key_seed(chain: ReceiverChain, counter: int) -> bytes:
    if counter < chain.index:
        seed = chain.skipped.pop(counter, None)
        if seed is None:
            raise DuplicateMessage("message key already used")
        return seed
    if counter - chain.index > MAX_FORWARD_JUMPS:
        raise MessageTooFarInFuture("message counter too far ahead")
    chain_key = chain.chain_key
    for skipped in range(chain.index, counter):
        chain.skipped[skipped], chain_key = chain_step(chain_key)
    if len(chain.skipped) > MAX_MESSAGE_KEYS:
        for old in sorted(chain.skipped)[:len(chain.skipped) - MAX_MESSAGE_KEYS]:
            del chain.skipped[old]
    seed, chain.chain_key = chain_step(chain_key)
    chain.index = counter + 1
    return seed


def decrypt(state: SessionState, message: SignalMessage) -> bytes:
    """Authenticate and decrypt ``message`` into its unpadded plaintext; mutates ``state``."""
    if message.version != state.version:
        raise InvalidMessage("message version does not match the session")
    chain = state.receiver_chain(message.ratchet_key.raw)
    if chain is None:
        try:
            chain = state.dh_ratchet(message.ratchet_key)
        except InvalidKey as exc:
            raise InvalidMessage("unusable ratchet key") from exc
    keys = MessageKeys.from_seed(_message_key_seed(chain, message.counter))
    message.verify_mac(keys.mac_key, state.remote_identity, state.local_identity)
    plaintext = padding.unpad(keys.decrypt(message.ciphertext))
    state.pending_prekey = None
    return plaintext
