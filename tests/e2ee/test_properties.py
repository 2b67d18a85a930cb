"""Property-based tests: interleavings always decrypt; hostile bytes only raise typed errors."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.device import Ciphertext, Device, MessageType, PreKeyBundle
from e2ee_core.errors import E2EEError
from e2ee_core.protocol.fingerprint import fingerprint
from e2ee_core.protocol.keys import KemPublicKey, PublicKey
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage
from e2ee_core.protocol.padding import unpad
from e2ee_core.protocol.session import SessionRecord
from tests.e2ee.helpers import ALICE, BOB, pair, snapshot

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# One step of a two-party run: who sends (True = Alice), or which pending message is delivered.
steps = st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 1000)),
                 min_size=1, max_size=40)


@SETTINGS
@given(steps, st.booleans())
def test_random_interleavings_decrypt_to_the_sent_plaintexts(
        run: list[tuple[bool, bool, int]], kyber: bool) -> None:
    alice, bob = Device.create(), Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1, kyber=kyber))
    in_flight: dict[bool, list[tuple[Ciphertext, bytes]]] = {True: [], False: []}
    bob_can_send = False
    for n, (from_alice, deliver, pick) in enumerate(run):
        if from_alice or bob_can_send:
            text = b"%d" % n
            if from_alice:
                in_flight[True].append((alice.encrypt(BOB, text), text))
            else:
                in_flight[False].append((bob.encrypt(ALICE, text), text))
        queue = in_flight[from_alice]
        if deliver and queue:
            ct, text = queue.pop(pick % len(queue))
            # Bob's first receipt must be a PreKey message; those are all Alice sends then.
            if from_alice:
                assert bob.decrypt(ALICE, ct) == text
                bob_can_send = True
            else:
                assert alice.decrypt(BOB, ct) == text
    for ct, text in in_flight[True]:
        assert bob.decrypt(ALICE, ct) == text
    for ct, text in in_flight[False]:
        assert alice.decrypt(BOB, ct) == text


_ESTABLISHED: dict[str, Any] = {}


def _established() -> tuple[Device, Device, Ciphertext, Ciphertext]:
    """Bob with an open session, plus a fresh WHISPER and a fresh PREKEY message for him."""
    if not _ESTABLISHED:
        alice, bob = pair()
        carol = Device.create()
        carol.start_session(BOB, bob.prekey_bundle(1))
        _ESTABLISHED.update(alice=alice, bob=bob, whisper=alice.encrypt(BOB, b"w"),
                            prekey=carol.encrypt(BOB, b"p"))
    e = _ESTABLISHED
    return e["alice"], e["bob"], e["whisper"], e["prekey"]


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([MessageType.WHISPER, MessageType.PREKEY]))
def test_random_bytes_only_raise_typed_errors(data: bytes, kind: MessageType) -> None:
    _, bob, _, _ = _established()
    before = snapshot(bob)
    try:
        bob.decrypt(ALICE, Ciphertext(kind, data))
    except E2EEError:
        pass
    assert snapshot(bob) == before


@SETTINGS
@given(st.data())
def test_mutated_messages_fail_cleanly_or_decrypt_unchanged(data: st.DataObject) -> None:
    _, bob, whisper, prekey = _established()
    original = data.draw(st.sampled_from([(whisper, b"w", ALICE), (prekey, b"p", ("carol", 1))]))
    ct, text, sender = original
    body = bytearray(ct.body)
    mutation = data.draw(st.sampled_from(["flip", "truncate", "insert", "replace"]))
    index = data.draw(st.integers(0, len(body) - 1))
    if mutation == "flip":
        body[index] ^= 1 << data.draw(st.integers(0, 7))
    elif mutation == "truncate":
        del body[index:]
    elif mutation == "insert":
        body[index:index] = data.draw(st.binary(min_size=1, max_size=8))
    else:
        body[index] = data.draw(st.integers(0, 255))
    before = snapshot(bob)
    try:
        plaintext = bob.decrypt(sender, Ciphertext(ct.type, bytes(body)))
    except E2EEError:
        assert snapshot(bob) == before
        return
    # Only fields outside the MAC (e.g. a PreKey message's registration id) may change.
    assert plaintext == text
    _ESTABLISHED.clear()  # state moved on: rebuild for the next example


@SETTINGS
@given(st.binary(max_size=400))
def test_decoders_raise_only_typed_errors(data: bytes) -> None:
    for decode in (SignalMessage.from_bytes, PreKeySignalMessage.from_bytes,
                   PreKeyBundle.from_bytes, Ciphertext.from_bytes, SessionRecord.from_bytes,
                   unpad, PublicKey.deserialize, KemPublicKey.deserialize,
                   lambda b: Ciphertext.from_dict({"type": b[:1].hex(), "body": b.hex()}),
                   lambda b: Ciphertext.from_dict({"type": 3, "body": b.decode("latin-1")})):
        try:
            decode(data)
        except E2EEError:
            pass
    local = fingerprint("a", b"\x05" + bytes(32), "b", b"\x05" + bytes([1]) * 32, iterations=2)
    try:
        local.matches_scanned(data)
    except E2EEError:
        pass


@SETTINGS
@given(st.dictionaries(st.sampled_from(["registration_id", "device_id", "identity_key",
                                         "signed_pre_key_id", "signed_pre_key", "pre_key",
                                         "signed_pre_key_signature", "x"]),
                       st.one_of(st.integers(-5, 2**33), st.text(max_size=70), st.none(),
                                 st.binary(max_size=4).map(bytes.hex))))
def test_bundle_dicts_raise_only_typed_errors(data: dict[str, Any]) -> None:
    try:
        PreKeyBundle.from_dict(data).verify()
    except E2EEError:
        pass
