"""Session records (current + archived states) and session setup from X3DH/PQXDH.

libsignal's ``session.rs`` / ``session_cipher.rs`` in one module: :func:`initialize_alice`
turns a verified prekey bundle into a session, :func:`initialize_bob` does the same from a
PreKeySignalMessage, and :func:`decrypt_with_record` tries the current state and then the
archived ones (promoting the one that worked), on clones, so failures change nothing.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from e2ee_core.errors import DuplicateMessage, InvalidMessage, NoSession, StoreError
from e2ee_core.protocol import pqxdh, ratchet
from e2ee_core.protocol.bundle import PreKeyBundle
from e2ee_core.protocol.consts import ARCHIVED_STATES_MAX_LENGTH, VERSION_PQXDH, VERSION_X3DH
from e2ee_core.protocol.keys import KemKeyPair, KemPublicKey, KeyPair, PublicKey
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage
from e2ee_core.protocol.ratchet import PendingPreKey, ReceiverChain, SessionState, kdf_root
from e2ee_core.protocol.x3dh import derive, initiator_secrets, responder_secrets

_RECORD_FORMAT = 1
_RECORD_HEAD = struct.Struct(">B?H")
_LEN = struct.Struct(">I")


@dataclass
class SessionRecord:
    """All session states with one remote device: the current one and up to 40 archived."""

    current: SessionState | None = None
    previous: list[SessionState] = field(default_factory=list)

    def promote(self, state: SessionState) -> None:
        """Make ``state`` current, archiving the old current state (newest first)."""
        if self.current is not None:
            self.previous.insert(0, self.current)
            del self.previous[ARCHIVED_STATES_MAX_LENGTH:]
        self.current = state

    def clone(self) -> SessionRecord:
        return SessionRecord(self.current.clone() if self.current is not None else None,
                             [s.clone() for s in self.previous])

    def promote_none(self) -> None:
        """Archive the current state (the remote identity changed): no current session."""
        if self.current is not None:
            self.previous.insert(0, self.current)
            del self.previous[ARCHIVED_STATES_MAX_LENGTH:]
        self.current = None

    def find_base_key(self, version: int, base_key: bytes) -> SessionState | None:
        """The state set up by the PreKeySignalMessage with this base key, promoted."""
        if self.current is not None and self.current.base_key == base_key \
                and self.current.version == version:
            return self.current
        for i, state in enumerate(self.previous):
            if state.base_key == base_key and state.version == version:
                del self.previous[i]
                self.promote(state)
                return state
        return None

    def to_bytes(self) -> bytes:
        """Binary layout: format byte, current flag, archived count, length-prefixed states."""
        parts = [_RECORD_HEAD.pack(_RECORD_FORMAT, self.current is not None,
                                   len(self.previous))]
        for state in ([self.current] if self.current is not None else []) + self.previous:
            encoded = state.encode()
            parts.append(_LEN.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        try:
            fmt, has_current, n_previous = _RECORD_HEAD.unpack_from(data)
            if fmt != _RECORD_FORMAT:
                raise ValueError("unknown record format")
            offset = _RECORD_HEAD.size
            states = []
            for _ in range(int(has_current) + n_previous):
                (length,) = _LEN.unpack_from(data, offset)
                offset += _LEN.size
                if offset + length > len(data):
                    raise ValueError("truncated")
                states.append(SessionState.decode(data[offset:offset + length]))
                offset += length
            if offset != len(data):
                raise ValueError("trailing bytes")
        except (ValueError, struct.error) as exc:
            raise StoreError("corrupt session record") from exc
        current = states.pop(0) if has_current else None
        return cls(current, states)


def initialize_alice(our_identity: KeyPair, our_registration_id: int,
                     bundle: PreKeyBundle, *, allow_x3dh: bool = True) -> SessionState:
    """Alice's session from a bundle: PQXDH (v4) when it holds a KEM prekey, else X3DH (v3).

    The bundle's signatures are verified first (InvalidSignature / InvalidKey).
    """
    bundle.verify()
    their_identity = PublicKey.deserialize(bundle.identity_key)
    their_signed = PublicKey.deserialize(bundle.signed_pre_key)
    their_one_time = PublicKey.deserialize(bundle.pre_key) if bundle.pre_key else None
    base = KeyPair.generate()
    kyber_id: int | None = None
    kyber_ct: bytes | None = None
    if bundle.kyber_pre_key is not None:
        keys, kyber_ct = pqxdh.initiate(
            our_identity=our_identity, our_base=base, their_identity=their_identity,
            their_signed_prekey=their_signed, their_one_time_prekey=their_one_time,
            their_kem_prekey=KemPublicKey.deserialize(bundle.kyber_pre_key))
        kyber_id = bundle.kyber_pre_key_id
        version = VERSION_PQXDH
    else:
        if not allow_x3dh:
            raise InvalidMessage("bundle has no KEM prekey and X3DH is not allowed")
        keys = derive(initiator_secrets(our_identity, base, their_identity, their_signed,
                                        their_one_time), post_quantum=False)
        version = VERSION_X3DH
    sending = KeyPair.generate()
    root, sending_chain = kdf_root(keys.root_key, sending.private.agree(their_signed))
    return SessionState(
        version=version, local_identity=our_identity.public.serialize(),
        remote_identity=bundle.identity_key, local_registration_id=our_registration_id,
        remote_registration_id=bundle.registration_id, root_key=root,
        sender_ratchet_private=sending.private.raw, sender_ratchet_public=sending.public.raw,
        sender_chain_key=sending_chain, sender_index=0, previous_counter=0,
        base_key=base.public.raw,
        receiver_chains=[ReceiverChain(their_signed.raw, keys.chain_key, 0)],
        pending_prekey=PendingPreKey(bundle.pre_key_id, bundle.signed_pre_key_id,
                                     base.public.raw, kyber_id, kyber_ct),
    )


def initialize_bob(our_identity: KeyPair, our_registration_id: int, *, signed_pre_key: KeyPair,
                   one_time_pre_key: KeyPair | None, kyber_pre_key: KemKeyPair | None,
                   message: PreKeySignalMessage) -> SessionState:
    """Bob's session from Alice's PreKeySignalMessage and the prekeys it names."""
    if message.version == VERSION_PQXDH:
        if kyber_pre_key is None or message.kyber_ciphertext is None:
            raise InvalidMessage("PQXDH message needs a KEM prekey")
        keys = pqxdh.respond(
            our_identity=our_identity, our_signed_prekey=signed_pre_key,
            our_one_time_prekey=one_time_pre_key, our_kem_prekey=kyber_pre_key,
            their_identity=message.identity_key, their_base=message.base_key,
            kem_ciphertext=message.kyber_ciphertext)
    else:
        keys = derive(responder_secrets(our_identity, signed_pre_key, one_time_pre_key,
                                        message.identity_key, message.base_key),
                      post_quantum=False)
    return SessionState(
        version=message.version, local_identity=our_identity.public.serialize(),
        remote_identity=message.identity_key.serialize(),
        local_registration_id=our_registration_id,
        remote_registration_id=message.registration_id, root_key=keys.root_key,
        sender_ratchet_private=signed_pre_key.private.raw,
        sender_ratchet_public=signed_pre_key.public.raw,
        sender_chain_key=keys.chain_key, sender_index=0, previous_counter=0,
        base_key=message.base_key.raw,
    )


def encrypt_with_record(record: SessionRecord,
                        plaintext: bytes) -> SignalMessage | PreKeySignalMessage:
    if record.current is None:
        raise NoSession()
    return ratchet.encrypt(record.current, plaintext)


def decrypt_with_record(record: SessionRecord, message: SignalMessage) -> bytes:
    """Decrypt with the current state, else an archived one (which becomes current).

    Every attempt runs on a clone; ``record`` changes only on success. A duplicate is
    reported at once (as libsignal does); other failures fall through to older states.
    """
    candidates: list[tuple[int, SessionState]] = []
    if record.current is not None:
        candidates.append((-1, record.current))
    candidates.extend(enumerate(record.previous))
    if not candidates:
        raise NoSession()
    failure: InvalidMessage | None = None
    for index, state in candidates:
        attempt = state.clone()  # a failed attempt may have advanced its copy, never the record
        try:
            plaintext = ratchet.decrypt(attempt, message)
        except DuplicateMessage:
            raise
        except InvalidMessage as exc:
            failure = failure or exc
            continue
        if index < 0:
            record.current = attempt
        else:
            del record.previous[index]
            record.promote(attempt)
        return plaintext
    assert failure is not None
    raise failure
