"""The Double Ratchet (Signal's specification, section 3) over one session state.

Every function here mutates the :class:`SessionState` it is given; callers work on a
:meth:`SessionState.clone` and keep it only when the whole operation succeeded, so a failed
decrypt never changes stored state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from e2ee_core.errors import DuplicateMessage, InvalidKey, InvalidMessage, MessageTooFarInFuture
from e2ee_core.protocol import padding
from e2ee_core.protocol.consts import (
    LABEL_RATCHET,
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_RECEIVER_CHAINS,
)
from e2ee_core.protocol.kdf import MessageKeys, chain_message_seed, chain_next, hkdf
from e2ee_core.protocol.keys import KeyPair, PrivateKey, PublicKey
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage


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

    # -- serialization (JSON-able; stores persist it as bytes) ------------------------------
    def to_dict(self) -> dict[str, Any]:
        pending = None
        if self.pending_prekey is not None:
            p = self.pending_prekey
            pending = [p.pre_key_id, p.signed_pre_key_id, p.base_key.hex(), p.kyber_pre_key_id,
                       p.kyber_ciphertext.hex() if p.kyber_ciphertext is not None else None]
        return {
            "v": self.version, "li": self.local_identity.hex(), "ri": self.remote_identity.hex(),
            "lr": self.local_registration_id, "rr": self.remote_registration_id,
            "rk": self.root_key.hex(), "sp": self.sender_ratchet_private.hex(),
            "sq": self.sender_ratchet_public.hex(), "sc": self.sender_chain_key.hex(),
            "si": self.sender_index, "pc": self.previous_counter, "bk": self.base_key.hex(),
            "rc": [[c.ratchet_key.hex(), c.chain_key.hex(), c.index,
                    [[i, s.hex()] for i, s in c.skipped.items()]]
                   for c in self.receiver_chains],
            "pp": pending,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionState:
        h = bytes.fromhex
        pending = None
        if d["pp"] is not None:
            p = d["pp"]
            pending = PendingPreKey(p[0], p[1], h(p[2]), p[3],
                                    h(p[4]) if p[4] is not None else None)
        return cls(
            version=d["v"], local_identity=h(d["li"]), remote_identity=h(d["ri"]),
            local_registration_id=d["lr"], remote_registration_id=d["rr"], root_key=h(d["rk"]),
            sender_ratchet_private=h(d["sp"]), sender_ratchet_public=h(d["sq"]),
            sender_chain_key=h(d["sc"]), sender_index=d["si"], previous_counter=d["pc"],
            base_key=h(d["bk"]),
            receiver_chains=[ReceiverChain(h(c[0]), h(c[1]), c[2],
                                           {i: h(s) for i, s in c[3]})
                             for c in d["rc"]],
            pending_prekey=pending,
        )

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
    keys = MessageKeys.from_seed(chain_message_seed(state.sender_chain_key))
    ciphertext = keys.encrypt(padding.pad(plaintext))
    message = SignalMessage.create(
        state.version, mac_key=keys.mac_key,
        ratchet_key=PublicKey.from_raw(state.sender_ratchet_public),
        counter=state.sender_index, previous_counter=state.previous_counter,
        ciphertext=ciphertext, sender_identity=state.local_identity,
        receiver_identity=state.remote_identity)
    state.sender_chain_key = chain_next(state.sender_chain_key)
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
        chain.skipped[skipped] = chain_message_seed(chain_key)
        chain_key = chain_next(chain_key)
    if len(chain.skipped) > MAX_MESSAGE_KEYS:
        for old in sorted(chain.skipped)[:len(chain.skipped) - MAX_MESSAGE_KEYS]:
            del chain.skipped[old]
    seed = chain_message_seed(chain_key)
    chain.chain_key = chain_next(chain_key)
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
