"""Session behaviour: setup, ratchet, out-of-order/lost/duplicate, limits, trust, stores."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from e2ee_core.device import Ciphertext, Device, MessageType, PreKeyBundle
from e2ee_core.errors import (
    DuplicateMessage,
    E2EEError,
    InvalidMac,
    InvalidMessage,
    InvalidPreKey,
    InvalidSignature,
    InvalidVersion,
    MessageTooFarInFuture,
    NoSession,
    StoreError,
    UntrustedIdentity,
)
from e2ee_core.protocol import consts
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage
from e2ee_core.protocol.session import SessionRecord
from e2ee_core.state.memory import InMemoryProtocolStore
from e2ee_core.state.sqlite import SQLiteProtocolStore
from service_kit.logging_filter import capture_logs
from tests.e2ee.helpers import ALICE, BOB, pair, roundtrip, snapshot


@pytest.fixture(params=["memory", "sqlite"])
def devices(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Device, Device]:
    return pair(sqlite_dir=tmp_path if request.param == "sqlite" else None)


@pytest.mark.parametrize(("kyber", "version"), [(False, 3), (True, 4)])
def test_session_versions_and_wire_format(kyber: bool, version: int) -> None:
    alice, bob = Device.create(), Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1, kyber=kyber))
    assert alice.session_version(BOB) == version
    first = alice.encrypt(BOB, b"x" * 100)
    assert first.type == MessageType.PREKEY and first.body[0] == version * 0x11
    parsed = PreKeySignalMessage.from_bytes(first.body)
    assert parsed.message.counter == 0 and parsed.identity_key.serialize() == alice.identity_key
    assert (parsed.kyber_ciphertext is not None) == kyber
    # Padded to 159 bytes, then PKCS#7 to 160: the length of the message is hidden.
    assert len(parsed.message.ciphertext) == 160
    assert bob.decrypt(ALICE, first) == b"x" * 100
    reply = bob.encrypt(ALICE, b"y")
    assert reply.type == MessageType.WHISPER and SignalMessage.from_bytes(reply.body).counter == 0
    assert alice.decrypt(BOB, reply) == b"y"
    assert alice.encrypt(BOB, b"z").type == MessageType.WHISPER  # pending prekey cleared


def test_long_conversation_random_interleaving(devices: tuple[Device, Device]) -> None:
    alice, bob = devices
    rng = random.Random(6)
    for i in range(120):
        if rng.random() < 0.5:
            roundtrip(alice, bob, BOB, ALICE, b"a%d" % i)
        else:
            roundtrip(bob, alice, ALICE, BOB, b"b%d" % i)


def test_out_of_order_and_lost_messages(devices: tuple[Device, Device]) -> None:
    alice, bob = devices
    batch = [(alice.encrypt(BOB, b"m%d" % i), b"m%d" % i) for i in range(30)]
    rng = random.Random(1)
    delivered = [m for m in batch if rng.random() < 0.7]  # the rest is lost
    rng.shuffle(delivered)
    for ct, text in delivered:
        assert bob.decrypt(ALICE, ct) == text
    roundtrip(bob, alice, ALICE, BOB, b"reply")
    # Messages from an older ratchet step still decrypt (their chain is kept).
    late = [m for m in batch if m not in delivered][:3]
    for ct, text in late:
        assert bob.decrypt(ALICE, ct) == text
    roundtrip(alice, bob, BOB, ALICE, b"after")


def test_duplicates_are_rejected_without_state_change(devices: tuple[Device, Device]) -> None:
    alice, bob = devices
    ct = roundtrip(alice, bob, BOB, ALICE, b"once")
    before = snapshot(bob)
    with pytest.raises(DuplicateMessage):
        bob.decrypt(ALICE, ct)
    assert snapshot(bob) == before
    skipped = alice.encrypt(BOB, b"skipped")
    roundtrip(alice, bob, BOB, ALICE, b"next")
    assert bob.decrypt(ALICE, skipped) == b"skipped"
    with pytest.raises(DuplicateMessage):
        bob.decrypt(ALICE, skipped)


def test_prekey_message_duplicate_after_reply() -> None:
    alice, bob = Device.create(), Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1))
    first, second = alice.encrypt(BOB, b"1"), alice.encrypt(BOB, b"2")
    assert second.type == MessageType.PREKEY
    assert bob.decrypt(ALICE, second) == b"2"
    assert bob.decrypt(ALICE, first) == b"1"  # same base key: same session, prekey used once
    with pytest.raises(DuplicateMessage):
        bob.decrypt(ALICE, first)
    roundtrip(bob, alice, ALICE, BOB, b"r")


def test_failed_decrypts_change_nothing(devices: tuple[Device, Device]) -> None:
    alice, bob = devices
    ct = alice.encrypt(BOB, b"payload")
    before = snapshot(bob)
    body = bytearray(ct.body)
    cases: list[tuple[Ciphertext, type[E2EEError]]] = []
    for index in (0, 5, len(body) // 2, len(body) - 1):
        mutated = bytearray(body)
        mutated[index] ^= 0x40
        cases.append((Ciphertext(ct.type, bytes(mutated)), InvalidMessage))
    cases.append((Ciphertext(ct.type, bytes(body[:-3])), InvalidMessage))
    cases.append((Ciphertext(ct.type, b"\x22" + bytes(body[1:])), InvalidVersion))
    cases.append((Ciphertext(MessageType.PREKEY, bytes(body)), InvalidMessage))
    for bad, error in cases:
        with pytest.raises(error):
            bob.decrypt(ALICE, bad)
        assert snapshot(bob) == before
    with pytest.raises(NoSession):
        bob.decrypt(("carol", 1), ct)
    assert snapshot(bob) == before
    assert bob.decrypt(ALICE, ct) == b"payload"


def test_bad_mac_is_typed() -> None:
    alice, bob = pair()
    ct = alice.encrypt(BOB, b"p")
    body = bytearray(ct.body)
    body[-1] ^= 1
    with pytest.raises(InvalidMac):
        bob.decrypt(ALICE, Ciphertext(ct.type, bytes(body)))


def test_unknown_and_used_prekeys(tmp_path: Path) -> None:
    alice, bob = Device.create(), Device.create(SQLiteProtocolStore(tmp_path / "b.db"))
    bundle = bob.prekey_bundle(1, kyber_one_time=True)
    assert bundle.pre_key_id is not None and bundle.pre_key_id >= 1
    alice.start_session(BOB, bundle)
    ct = alice.encrypt(BOB, b"hi")
    assert bob.store.get_pre_key(bundle.pre_key_id) is not None
    assert bundle.kyber_pre_key_id is not None
    bob.decrypt(ALICE, ct)
    assert bob.store.get_pre_key(bundle.pre_key_id) is None  # one-time prekey consumed
    assert bob.store.get_kyber_pre_key(bundle.kyber_pre_key_id) is None
    assert bob.last_resort_kyber_pre_key() is not None  # last resort stays
    # A second device using the same (now consumed) prekey is refused and changes nothing.
    carol = Device.create()
    carol.start_session(BOB, bundle)
    before = snapshot(bob)
    with pytest.raises(InvalidPreKey):
        bob.decrypt(("carol", 1), carol.encrypt(BOB, b"late"))
    assert snapshot(bob) == before


def test_last_resort_kem_prekey_serves_several_sessions() -> None:
    bob = Device.create()
    for name in ("a", "b", "c"):
        sender = Device.create()
        sender.start_session(BOB, bob.prekey_bundle(1, one_time=False))
        assert sender.session_version(BOB) == 4
        assert bob.decrypt((name, 1), sender.encrypt(BOB, name.encode())) == name.encode()


def test_forward_jump_limit_and_skipped_key_bound() -> None:
    alice, bob = pair()
    record = alice.store.load_session(BOB)
    assert record is not None and record.current is not None
    # Jump the sending chain far ahead without sending (as a broken/malicious sender would).
    from e2ee_core.protocol.kdf import chain_next

    state = record.current
    for _ in range(consts.MAX_FORWARD_JUMPS + 1):
        state.sender_chain_key = chain_next(state.sender_chain_key)
    state.sender_index += consts.MAX_FORWARD_JUMPS + 1
    alice.store.store_session(BOB, record)
    too_far = alice.encrypt(BOB, b"far")
    before = snapshot(bob)
    with pytest.raises(MessageTooFarInFuture):
        bob.decrypt(ALICE, too_far)
    assert snapshot(bob) == before


def test_skipped_keys_are_capped() -> None:
    alice, bob = pair()
    sent = [alice.encrypt(BOB, b"%d" % i) for i in range(consts.MAX_MESSAGE_KEYS + 5)]
    assert bob.decrypt(ALICE, sent[-1]) == b"%d" % (len(sent) - 1)
    record = bob.store.load_session(ALICE)
    assert record is not None and record.current is not None
    assert sum(len(c.skipped) for c in record.current.receiver_chains) == consts.MAX_MESSAGE_KEYS
    with pytest.raises(DuplicateMessage):  # the oldest skipped keys were dropped
        bob.decrypt(ALICE, sent[0])
    assert bob.decrypt(ALICE, sent[10]) == b"10"


def test_receiver_chains_are_capped() -> None:
    alice, bob = pair()
    for i in range(consts.MAX_RECEIVER_CHAINS + 3):
        roundtrip(alice, bob, BOB, ALICE, b"a%d" % i)
        roundtrip(bob, alice, ALICE, BOB, b"b%d" % i)
    record = bob.store.load_session(ALICE)
    assert record is not None and record.current is not None
    assert len(record.current.receiver_chains) == consts.MAX_RECEIVER_CHAINS


def test_simultaneous_initiation_converges() -> None:
    alice, bob = Device.create(), Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1))
    bob.start_session(ALICE, alice.prekey_bundle(1))
    a1, b1 = alice.encrypt(BOB, b"from alice"), bob.encrypt(ALICE, b"from bob")
    assert bob.decrypt(ALICE, a1) == b"from alice"
    assert alice.decrypt(BOB, b1) == b"from bob"
    for i in range(6):
        roundtrip(alice, bob, BOB, ALICE, b"a%d" % i)
        roundtrip(bob, alice, ALICE, BOB, b"b%d" % i)


def test_archived_session_limit() -> None:
    alice, bob = Device.create(), Device.create()
    for _ in range(consts.ARCHIVED_STATES_MAX_LENGTH + 3):
        alice.start_session(BOB, bob.prekey_bundle(1, kyber=False))
    record = alice.store.load_session(BOB)
    assert record is not None and len(record.previous) == consts.ARCHIVED_STATES_MAX_LENGTH


def test_identity_change_needs_approval() -> None:
    alice, bob = pair()
    new_bob = Device.create()  # Bob reinstalled: same address, new identity
    bundle = new_bob.prekey_bundle(1)
    with pytest.raises(UntrustedIdentity) as info:
        alice.start_session(BOB, bundle)
    assert info.value.address == BOB and info.value.identity_key == new_bob.identity_key
    assert new_bob.identity_key.hex() not in str(info.value)
    # Incoming direction: the new Bob writes first.
    new_bob.start_session(ALICE, alice.prekey_bundle(1))
    ct = new_bob.encrypt(ALICE, b"it's me, new phone")
    before = snapshot(alice)
    with pytest.raises(UntrustedIdentity):
        alice.decrypt(BOB, ct)
    assert snapshot(alice) == before
    alice.trust_identity(BOB, new_bob.identity_key)
    with pytest.raises(NoSession):  # the old session is archived, not silently reused
        alice.encrypt(BOB, b"x")
    assert alice.decrypt(BOB, ct) == b"it's me, new phone"
    roundtrip(alice, new_bob, BOB, ALICE, b"welcome back")
    with pytest.raises(UntrustedIdentity):  # messages from the old identity are refused
        alice.decrypt(BOB, bob.encrypt(ALICE, b"old phone"))


def test_bundle_signatures_are_checked() -> None:
    alice, bob = Device.create(), Device.create()
    bundle = bob.prekey_bundle(1)
    bad = bytearray(bundle.signed_pre_key_signature)
    bad[3] ^= 1
    forged = PreKeyBundle(**{**bundle.__dict__, "signed_pre_key_signature": bytes(bad)})
    with pytest.raises(InvalidSignature):
        alice.start_session(BOB, forged)
    assert bundle.kyber_pre_key is not None
    swapped = PreKeyBundle(**{**bundle.__dict__,
                              "kyber_pre_key": Device.create().prekey_bundle().kyber_pre_key})
    with pytest.raises(InvalidSignature):
        alice.start_session(BOB, swapped)
    assert not alice.has_session(BOB)


def test_bundle_and_ciphertext_serialization() -> None:
    bob = Device.create()
    bundle = bob.prekey_bundle(7)
    assert PreKeyBundle.from_bytes(bundle.to_bytes()) == bundle
    assert PreKeyBundle.from_dict(bundle.to_dict()) == bundle
    for bad in (b"", b"[]", b"{}", b'{"registration_id": "1"}', b"\xff", b"[" * 5000):
        with pytest.raises(InvalidMessage):
            PreKeyBundle.from_bytes(bad)
    ct = Ciphertext(MessageType.WHISPER, b"\x33abc")
    assert Ciphertext.from_bytes(ct.to_bytes()) == ct
    assert Ciphertext.from_dict(ct.to_dict()) == ct
    with pytest.raises(InvalidMessage):
        Ciphertext.from_bytes(b"\x01abc")


def test_prekey_lifecycle() -> None:
    now = 1_700_000_000
    bob = Device.create(now=now)
    assert bob.current_signed_pre_key().id == 1
    uploaded = bob.generate_pre_keys(5)
    assert [i for i, _ in uploaded] == [1, 2, 3, 4, 5]  # ids from 1: libsignal-node ignores 0
    assert bob.refill_pre_keys(server_count=50) == []
    assert len(bob.refill_pre_keys(server_count=3, batch=20)) == 20
    assert bob.store.pre_key_count() == 25
    assert not bob.rotate_signed_pre_key(now=now + 3600)
    assert bob.rotate_signed_pre_key(now=now + consts.SIGNED_PREKEY_ROTATION_SECONDS)
    assert bob.current_signed_pre_key().id == 2
    for step in range(2, 6):
        bob.rotate_signed_pre_key(now=now + step * consts.SIGNED_PREKEY_GRACE_SECONDS)
    ids = [r.id for r in bob.store.signed_pre_keys()]
    assert len(ids) == 2 and ids[-1] == bob.current_signed_pre_key().id  # old ones pruned
    assert bob.ensure_last_resort_kyber_pre_key(
        now=now + 10 * consts.SIGNED_PREKEY_GRACE_SECONDS)
    material = bob.upload_material(uploaded)
    assert material["identity_key"] == bob.identity_key.hex()
    assert len(material["pre_keys"]) == 5


def test_prekey_ids_wrap_to_one() -> None:
    bob = Device.create()
    bob.store.set_counter("next_pre_key_id", consts.MAX_PREKEY_ID - 1)
    assert [i for i, _ in bob.generate_pre_keys(3)] == [consts.MAX_PREKEY_ID, 1, 2]


def test_signed_prekey_rotation_keeps_in_flight_sessions_working() -> None:
    alice, bob = Device.create(), Device.create(now=0)
    alice.start_session(BOB, bob.prekey_bundle(1))
    bob.rotate_signed_pre_key(now=consts.SIGNED_PREKEY_ROTATION_SECONDS)
    assert bob.decrypt(ALICE, alice.encrypt(BOB, b"sent before rotation")) \
        == b"sent before rotation"


def test_sqlite_state_survives_reopening(tmp_path: Path) -> None:
    alice, bob = pair(sqlite_dir=tmp_path)
    pending = alice.encrypt(BOB, b"while bob was offline")
    bob.store.close()  # type: ignore[attr-defined]
    reopened = Device.open(tmp_path / "bob.db")
    assert reopened.identity_key == bob.identity_key
    assert reopened.decrypt(ALICE, pending) == b"while bob was offline"
    roundtrip(reopened, alice, ALICE, BOB, b"back")
    assert (tmp_path / "bob.db").stat().st_mode & 0o077 == 0


def test_corrupt_session_record_is_a_store_error() -> None:
    with pytest.raises(StoreError):
        SessionRecord.from_bytes(b"{not json")
    with pytest.raises(StoreError):
        Device(InMemoryProtocolStore())


def test_secrets_never_in_logs_or_errors() -> None:
    secrets_used: list[bytes] = []
    with capture_logs(redacting=False) as logs:
        alice, bob = Device.create(), Device.create()
        alice.start_session(BOB, bob.prekey_bundle(1))
        plaintext = b"the launch code is 0000-1234"
        ct = alice.encrypt(BOB, plaintext)
        errors: list[str] = []
        for body in (ct.body[:-1], b"\x33" + ct.body[1:10], ct.body[:1]):
            try:
                bob.decrypt(ALICE, Ciphertext(ct.type, body))
            except E2EEError as exc:
                errors.append(repr(exc) + str(exc))
        bob.decrypt(ALICE, ct)
        try:
            bob.decrypt(ALICE, ct)
        except E2EEError as exc:
            errors.append(repr(exc) + str(exc))
        logging.getLogger("e2ee_core").info("done")
    record = alice.store.load_session(BOB)
    assert record is not None and record.current is not None
    state = record.current
    secrets_used += [plaintext, alice._identity.private.raw, bob._identity.private.raw,
                     state.root_key, state.sender_chain_key, state.sender_ratchet_private,
                     b"alice", b"bob"]
    assert logs.lines, "the device logs events"
    assert logs.leaks(secrets_used) == []
    assert len(errors) == 4
    from service_kit.logging_filter import find_leaks

    assert find_leaks(errors, secrets_used) == []
    assert all(s.hex() not in repr(alice) + repr(alice.store) for s in secrets_used)


def test_decrypt_with_record_leaves_the_record_alone_on_failure() -> None:
    from e2ee_core.protocol.session import decrypt_with_record

    alice, bob = pair()
    message = SignalMessage.from_bytes(alice.encrypt(BOB, b"x").body)
    record = bob.store.load_session(ALICE)
    assert record is not None
    before = record.to_bytes()
    forged = SignalMessage(message.version, message.ratchet_key, message.counter + 3,
                           message.previous_counter, message.ciphertext, message.serialized)
    with pytest.raises(InvalidMessage):
        decrypt_with_record(record, forged)  # MAC covers the original counter: fails
    assert record.to_bytes() == before
    assert decrypt_with_record(record, message) == b"x"
    assert record.to_bytes() != before


def test_pqxdh_with_a_substituted_kem_ciphertext_fails_cleanly() -> None:
    import os

    alice, bob = Device.create(), Device.create()
    bundle = bob.prekey_bundle(1)
    alice.start_session(BOB, bundle)
    genuine = PreKeySignalMessage.from_bytes(alice.encrypt(BOB, b"pq").body)
    assert genuine.kyber_ciphertext is not None
    forged = PreKeySignalMessage.create(
        4, registration_id=genuine.registration_id, pre_key_id=genuine.pre_key_id,
        signed_pre_key_id=genuine.signed_pre_key_id, base_key=genuine.base_key,
        identity_key=genuine.identity_key, message=genuine.message,
        kyber_pre_key_id=genuine.kyber_pre_key_id,
        kyber_ciphertext=os.urandom(len(genuine.kyber_ciphertext)))
    before = snapshot(bob)
    with pytest.raises(InvalidMac):  # ML-KEM's implicit rejection yields other keys
        bob.decrypt(ALICE, Ciphertext(MessageType.PREKEY, forged.serialized))
    assert snapshot(bob) == before
    assert bob.decrypt(ALICE, Ciphertext(MessageType.PREKEY, genuine.serialized)) == b"pq"
