"""Sender keys: derivations, signed messages, out-of-order, limits, no state change on failure."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from e2ee_core.groups import (
    DuplicateGroupMessage,
    GroupError,
    InMemorySenderKeyStore,
    InvalidSenderKeyMessage,
    InvalidSenderKeyRecord,
    InvalidSenderKeySignature,
    NoSenderKeyState,
    SenderAddress,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SenderKeyRecord,
    SenderKeyState,
    SenderKeyStore,
    TooFarInFuture,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
    rotate_sender_key,
)
from e2ee_core.groups.consts import (
    MAX_FORWARD_JUMPS,
    MAX_MESSAGE_KEYS,
    MAX_SENDER_KEY_STATES,
    SENDER_KEY_VERSION_BYTE,
)
from e2ee_core.groups.sender_keys import SenderChainKey

DIST = bytes(range(16))
ALICE = SenderAddress("alice", 1)
BOB = SenderAddress("bob", 1)


def pair() -> tuple[InMemorySenderKeyStore, InMemorySenderKeyStore]:
    alice, bob = InMemorySenderKeyStore(), InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(alice, ALICE, DIST)
    process_sender_key_distribution_message(
        bob, ALICE, SenderKeyDistributionMessage.decode(skdm.encode()))
    return alice, bob


def test_the_in_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(InMemorySenderKeyStore(), SenderKeyStore)


def test_chain_and_message_keys_follow_libsignal_derivations() -> None:
    seed = bytes(range(32))
    chain = SenderChainKey(7, seed)
    message_key = chain.message_key()
    assert message_key.iteration == 7
    assert message_key.seed == hmac.new(seed, b"\x01", hashlib.sha256).digest()
    assert chain.next() == SenderChainKey(8, hmac.new(seed, b"\x02", hashlib.sha256).digest())
    derived = HKDF(hashes.SHA256(), 48, None, b"WhisperGroup").derive(message_key.seed)
    assert message_key.iv_and_key() == (derived[:16], derived[16:])


def test_a_message_decrypts_once_and_carries_the_v3_version_byte() -> None:
    alice, bob = pair()
    wire = group_encrypt(alice, ALICE, DIST, b"hello group")
    assert wire[0] == SENDER_KEY_VERSION_BYTE == 0x33
    assert b"hello group" not in wire
    assert group_decrypt(bob, ALICE, wire) == b"hello group"
    before = bob.snapshot()
    with pytest.raises(DuplicateGroupMessage):
        group_decrypt(bob, ALICE, wire)
    assert bob.snapshot() == before


def test_out_of_order_delivery_within_the_window() -> None:
    alice, bob = pair()
    wires = [group_encrypt(alice, ALICE, DIST, f"m{i}".encode()) for i in range(50)]
    order = list(range(50))
    secrets.SystemRandom().shuffle(order)
    for i in order:
        assert group_decrypt(bob, ALICE, wires[i]) == f"m{i}".encode()
    for i in (0, 25, 49):
        with pytest.raises(DuplicateGroupMessage):
            group_decrypt(bob, ALICE, wires[i])


def test_a_late_joiner_cannot_read_messages_before_its_distribution() -> None:
    alice, bob = pair()
    early = group_encrypt(alice, ALICE, DIST, b"before carol")
    carol = InMemorySenderKeyStore()
    skdm = create_sender_key_distribution_message(alice, ALICE, DIST)
    assert skdm.iteration == 1
    process_sender_key_distribution_message(carol, ALICE, skdm)
    with pytest.raises(DuplicateGroupMessage):
        group_decrypt(carol, ALICE, early)
    assert group_decrypt(bob, ALICE, early) == b"before carol"
    later = group_encrypt(alice, ALICE, DIST, b"after carol")
    assert group_decrypt(carol, ALICE, later) == b"after carol"


def test_skipped_keys_are_bounded_and_the_oldest_are_dropped() -> None:
    state = SenderKeyState.generate()
    receiver = SenderKeyDistributionMessage.from_state(DIST, state).to_state()
    target = MAX_MESSAGE_KEYS + 500
    key = receiver.take_message_key(target)
    assert key == SenderKeyState(0, state.chain_key, b"").take_message_key(target)
    assert len(receiver.message_keys) == MAX_MESSAGE_KEYS
    with pytest.raises(DuplicateGroupMessage):
        receiver.take_message_key(499)
    assert receiver.take_message_key(500).iteration == 500


def test_a_jump_beyond_the_forward_limit_is_refused_and_changes_nothing() -> None:
    alice, bob = pair()
    state = SenderKeyDistributionMessage.decode(
        create_sender_key_distribution_message(alice, ALICE, DIST).encode()).to_state()
    with pytest.raises(TooFarInFuture):
        state.take_message_key(MAX_FORWARD_JUMPS + 1)
    record = alice.load_sender_key(ALICE, DIST)
    assert record is not None
    own = record.states[0]
    forged = SenderKeyMessage.create(DIST, own.chain_id, MAX_FORWARD_JUMPS + 1, bytes(16),
                                     own.signing_private or b"")
    before = bob.snapshot()
    with pytest.raises(TooFarInFuture):
        group_decrypt(bob, ALICE, forged.encode())
    assert bob.snapshot() == before
    ok = group_encrypt(alice, ALICE, DIST, b"still fine")
    assert group_decrypt(bob, ALICE, ok) == b"still fine"


def test_a_forged_or_tampered_message_fails_the_signature_and_changes_nothing() -> None:
    alice, bob = pair()
    wire = bytearray(group_encrypt(alice, ALICE, DIST, b"x" * 40))
    before = bob.snapshot()
    for position in (len(wire) - 1, len(wire) - 70, 20):
        tampered = bytearray(wire)
        tampered[position] ^= 0x10
        with pytest.raises(GroupError):
            group_decrypt(bob, ALICE, bytes(tampered))
        assert bob.snapshot() == before
    mallory = InMemorySenderKeyStore()
    record = alice.load_sender_key(ALICE, DIST)
    assert record is not None
    impostor = SenderKeyState.generate()
    impostor.chain_id = record.states[0].chain_id
    impostor.chain_key = record.states[0].chain_key  # knows the chain key, not the signing key
    mallory.store_sender_key(ALICE, DIST, SenderKeyRecord([impostor]))
    forged = group_encrypt(mallory, ALICE, DIST, b"forged")
    with pytest.raises(InvalidSenderKeySignature):
        group_decrypt(bob, ALICE, forged)
    assert bob.snapshot() == before
    assert group_decrypt(bob, ALICE, bytes(wire)) == b"x" * 40


def test_unknown_sender_or_chain_is_a_typed_error() -> None:
    alice, bob = pair()
    wire = group_encrypt(alice, ALICE, DIST, b"x")
    with pytest.raises(NoSenderKeyState):
        group_decrypt(bob, BOB, wire)
    rotate_sender_key(alice, ALICE, DIST)
    rotated = group_encrypt(alice, ALICE, DIST, b"new chain")
    with pytest.raises(NoSenderKeyState):
        group_decrypt(bob, ALICE, rotated)
    with pytest.raises(NoSenderKeyState):
        group_encrypt(bob, BOB, DIST, b"no own key")


def test_old_chains_keep_decrypting_after_rotation_up_to_the_state_limit() -> None:
    alice, bob = pair()
    in_flight = [group_encrypt(alice, ALICE, DIST, b"chain 0")]
    for i in range(1, MAX_SENDER_KEY_STATES + 1):
        process_sender_key_distribution_message(bob, ALICE, rotate_sender_key(alice, ALICE, DIST))
        in_flight.append(group_encrypt(alice, ALICE, DIST, f"chain {i}".encode()))
    with pytest.raises(NoSenderKeyState):  # the oldest chain fell out of the record
        group_decrypt(bob, ALICE, in_flight[0])
    for i in range(1, MAX_SENDER_KEY_STATES + 1):
        assert group_decrypt(bob, ALICE, in_flight[i]) == f"chain {i}".encode()


def test_a_redelivered_distribution_does_not_rewind_the_chain() -> None:
    alice, bob = pair()
    skdm = create_sender_key_distribution_message(alice, ALICE, DIST)
    wire = group_encrypt(alice, ALICE, DIST, b"once")
    assert group_decrypt(bob, ALICE, wire) == b"once"
    process_sender_key_distribution_message(bob, ALICE, skdm)
    with pytest.raises(DuplicateGroupMessage):
        group_decrypt(bob, ALICE, wire)


def test_records_round_trip_through_bytes() -> None:
    alice, bob = pair()
    for i in range(5):
        wire = group_encrypt(alice, ALICE, DIST, bytes([i]))
        if i % 2:
            group_decrypt(bob, ALICE, wire)
    record = bob.load_sender_key(ALICE, DIST)
    assert record is not None and record.states[0].message_keys
    assert SenderKeyRecord.decode(record.encode()).encode() == record.encode()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_decoders_raise_only_typed_errors_on_any_bytes(data: bytes) -> None:
    for decode, error in ((SenderKeyMessage.decode, InvalidSenderKeyMessage),
                          (SenderKeyDistributionMessage.decode, InvalidSenderKeyMessage),
                          (SenderKeyRecord.decode, InvalidSenderKeyRecord)):
        try:
            decode(data)
        except error:
            pass


_ALICE_STORE, _BOB_STORE = pair()
_WIRE = group_encrypt(_ALICE_STORE, ALICE, DIST, b"payload " * 10)
_SKDM = create_sender_key_distribution_message(_ALICE_STORE, ALICE, DIST).encode()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_messages_raise_typed_errors_and_leave_state_unchanged(data: st.DataObject) -> None:
    raw = bytearray(_WIRE)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    candidate = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    assume(candidate != _WIRE)  # two flips of the same bit cancel out
    before = _BOB_STORE.snapshot()
    with pytest.raises(GroupError):
        group_decrypt(_BOB_STORE, ALICE, candidate)
    assert _BOB_STORE.snapshot() == before


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_distribution_messages_decode_or_raise_typed_errors(data: st.DataObject) -> None:
    raw = bytearray(_SKDM)
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    candidate = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    try:
        SenderKeyDistributionMessage.decode(candidate)
    except InvalidSenderKeyMessage:
        pass


_RECORD = _BOB_STORE.load_sender_key(ALICE, DIST)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_records_decode_or_raise_typed_errors(data: st.DataObject) -> None:
    assert _RECORD is not None
    raw = bytearray(_RECORD.encode())
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    candidate = bytes(raw[:data.draw(st.integers(0, len(raw)))])
    try:
        SenderKeyRecord.decode(candidate)
    except InvalidSenderKeyRecord:
        pass
