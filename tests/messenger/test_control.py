"""Control over endpoints: device lists with per-device and combined safety numbers,
verification, notices on device-set and identity changes, the blocking error for verified
contacts, and removal of one's own device."""

from __future__ import annotations

import sqlite3

import pytest

from e2ee_core.client import (
    ContactChanged,
    DeviceRemoved,
    SafetyNumberMismatch,
    combined_safety_number,
    device_safety_number,
)
from e2ee_core.device import Device
from tests.messenger.conftest import InProcess
from tests.messenger.support import Account, drain


def kinds(device: object, username: str) -> list[tuple[str, int]]:
    from e2ee_core.client import Messenger

    assert isinstance(device, Messenger)
    return [(n.kind, n.device_id) for n in device.notices() if n.username == username]


def test_safety_numbers_agree_on_both_sides(inproc: InProcess) -> None:
    alice = Account(inproc.url, 2, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0, b0 = alice.devices[0], bob.devices[0]
    seen_by_alice = a0.devices(bob.name)
    assert [d.device_id for d in seen_by_alice.devices] == [1, 2]
    for shown, device in zip(seen_by_alice.devices, bob.devices, strict=True):
        assert shown.identity_key == device.device.identity_key
        assert shown.safety_number == device_safety_number(
            bob.name, device.device.identity_key, alice.name, a0.device.identity_key)
    # One combined number over both accounts' device sets, the same on every device.
    combined = seen_by_alice.combined_safety_number
    assert len(combined) == 60 and combined.isdigit()
    assert b0.devices(alice.name).combined_safety_number == combined
    assert alice.devices[1].devices(bob.name).combined_safety_number == combined
    assert combined == combined_safety_number(
        alice.name, [d.device.identity_key for d in alice.devices],
        bob.name, [d.device.identity_key for d in bob.devices])
    # It covers the device set: a new device of either account changes it.
    alice.add_device()
    assert b0.devices(alice.name).combined_safety_number != combined
    assert not seen_by_alice.verified


def test_verified_contact_change_blocks_until_reverified(inproc: InProcess) -> None:
    alice = Account(inproc.url, 1, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0 = alice.devices[0]
    number = bob.devices[0].devices(alice.name).combined_safety_number
    with pytest.raises(SafetyNumberMismatch):
        a0.verify(bob.name, "1" * 60)
    assert a0.verify(bob.name, number).verified
    a0.send_text(bob.name, "while verified")
    for device in bob.devices:
        assert [m.text for m in device.receive()] == ["while verified"]

    new = bob.add_device()                       # a device Alice has not verified
    with pytest.raises(ContactChanged) as refused:
        a0.send_text(bob.name, "must not go out")
    assert refused.value.username == bob.name
    assert bob.name not in str(refused.value)
    assert ("device_added", new.device_id) in kinds(a0, bob.name)
    assert a0.devices(bob.name).changed
    for device in bob.devices:
        assert device.receive() == []            # nothing was sent to anyone
    with pytest.raises(ContactChanged):          # still refused: nothing changed
        a0.send_text(bob.name, "must not go out")

    with pytest.raises(SafetyNumberMismatch):    # the old number no longer matches
        a0.verify(bob.name, number)
    new_number = new.devices(alice.name).combined_safety_number
    assert new_number != number
    a0.verify(bob.name, new_number)
    a0.send_text(bob.name, "re-verified")
    for device in bob.devices:
        assert [m.text for m in device.receive()] == ["re-verified"]

    bob.add_device()                             # again; this time the user just accepts
    with pytest.raises(ContactChanged):
        a0.send_text(bob.name, "blocked again")
    a0.accept_changes(bob.name)
    assert not a0.devices(bob.name).verified
    a0.send_text(bob.name, "accepted")
    assert [m.text for m in bob.devices[-1].receive()] == ["accepted"]


def test_unverified_contact_change_is_a_notice_only(inproc: InProcess) -> None:
    alice = Account(inproc.url, 1, session=inproc.session)
    bob = Account(inproc.url, 1, session=inproc.session)
    a0 = alice.devices[0]
    a0.send_text(bob.name, "hello")
    assert [m.text for m in bob.devices[0].receive()] == ["hello"]  # bob accepts alice
    new = bob.add_device()
    a0.receive()                                 # the server's device_added notice
    assert ("device_added", new.device_id) in kinds(a0, bob.name)
    a0.send_text(bob.name, "to both")
    assert [m.text for m in new.receive()] == ["to both"]


def test_identity_key_swapped_by_the_server_is_caught(inproc: InProcess) -> None:
    alice = Account(inproc.url, 1, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0 = alice.devices[0]
    a0.verify(bob.name)
    a0.send_text(bob.name, "before")
    forged = Device.create().identity_key        # a key the server substitutes for device 2
    with sqlite3.connect(inproc.db) as conn:
        conn.execute("UPDATE devices SET identity_key = ? WHERE username = ? AND "
                     "device_id = 2", (forged, bob.name))
        # and publishes it in the key-transparency directory (else a0 refuses the list:
        # tests/transparency), where bob's own devices would see it (kt_key_changed)
        conn.execute("INSERT INTO kt_pending (username) VALUES (?)", (bob.name,))
    inproc.app.extensions["e2ee_transparency"].publish_pending()
    shown = a0.devices(bob.name)
    assert ("identity_changed", 2) in kinds(a0, bob.name)
    assert shown.changed and shown.devices[1].identity_key == forged
    with pytest.raises(ContactChanged):
        a0.send_text(bob.name, "blocked")
    # The real device 2 still speaks with its real key: the message is read, and the switch
    # back is one more notice (the contact stays blocked until the user decides).
    bob.devices[1].receive()
    bob.devices[1].send_text(alice.name, "from the real device 2")
    assert [m.text for m in a0.receive()] == ["from the real device 2"]
    assert kinds(a0, bob.name).count(("identity_changed", 2)) == 2
    with pytest.raises(ContactChanged):
        a0.send_text(bob.name, "still blocked")


def test_remove_own_device(inproc: InProcess) -> None:
    alice = Account(inproc.url, 3, session=inproc.session)
    bob = Account(inproc.url, 1, session=inproc.session)
    a0, a1, a2 = alice.devices
    a0.send_text(bob.name, "hi")                 # makes bob a contact of alice
    bob.devices[0].receive()
    a0.remove_device(a2.device_id)
    assert ("device_removed", a2.device_id) in kinds(a0, alice.name)
    bob.devices[0].receive()
    assert ("device_removed", a2.device_id) in kinds(bob.devices[0], alice.name)
    a1.receive()
    assert ("device_removed", a2.device_id) in kinds(a1, alice.name)
    bob.devices[0].send_text(alice.name, "after removal")   # no 409: bob was told
    assert bob.devices[0].mismatches == 0
    assert [m.text for m in a1.receive()] == ["after removal"]
    with pytest.raises(DeviceRemoved):
        a2.receive()
    a1.remove_device(a1.device_id)               # a device may remove itself
    with pytest.raises(DeviceRemoved):
        a1.send_text(bob.name, "gone")


def test_group_send_refused_for_a_changed_verified_member(inproc: InProcess) -> None:
    alice, bob, carol = (Account(inproc.url, 1, session=inproc.session) for _ in range(3))
    a0 = alice.devices[0]
    group = a0.create_group([bob.name, carol.name])
    everyone = [a0, bob.devices[0], carol.devices[0]]
    drain(everyone, 2)
    a0.verify(bob.name)
    tablet = bob.add_device()
    everyone.append(tablet)
    drain(everyone, 3)                           # alice learns of the tablet: bob is changed
    with pytest.raises(ContactChanged):
        a0.send_text(group, "not to an unverified tablet")
    drain(everyone, 1)
    assert all(d.messages(group) == [] for d in everyone[1:])   # nobody got it
    a0.accept_changes(bob.name)                  # held-back sender key goes out now
    drain(everyone, 2)
    sent = a0.send_text(group, "now to everyone")
    drain(everyone, 1)
    for device in everyone[1:]:
        assert [m.message_id for m in device.messages(group)] == [sent.message_id]


def test_late_message_from_a_removed_device_does_not_bring_it_back(inproc: InProcess) -> None:
    alice = Account(inproc.url, 1, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0, (b0, b1) = alice.devices[0], bob.devices
    a0.send_text(bob.name, "hi")
    b1.send_text(alice.name, "sent just before my removal")
    b0.remove_device(b1.device_id)
    a0.send_text(bob.name, "alice has not received yet")   # 409 extra: b1 dropped
    assert a0.mismatches == 1
    assert [m.text for m in a0.receive()] == ["sent just before my removal"]
    a0.send_text(bob.name, "again")
    assert a0.mismatches == 1                                 # b1 was not re-added
    assert kinds(a0, bob.name) == [("device_removed", b1.device_id)]


def test_only_the_servers_removed_answer_marks_a_device_removed(
        inproc: InProcess, tmp_path: object) -> None:
    """A 401 from anything else (here: another server answering on the same address, as
    after a redeploy or a wrong port) is an error that changes nothing: the device works again
    once its own server answers. Before, any 401 marked the device removed for good."""
    from e2ee_core.server.app import create_app
    from e2ee_core.server.errors import AuthenticationFailed
    from tests.server.support import FAST_ARGON2, in_process_session

    alice = Account(inproc.url, 2, session=inproc.session)
    bob = Account(inproc.url, 1, session=inproc.session)
    a0 = alice.devices[0]
    a0.send_text(bob.name, "before")
    other = create_app({"db": "memory:", **FAST_ARGON2})
    original = inproc.session.adapters["http://e2ee.test"]
    inproc.session.mount("http://e2ee.test", in_process_session(other).adapters["http://e2ee.test"])
    with pytest.raises(AuthenticationFailed) as refused:
        a0.receive()
    assert not isinstance(refused.value, DeviceRemoved)
    inproc.session.mount("http://e2ee.test", original)
    a0.send_text(bob.name, "after")  # not bricked
    assert [m.text for m in bob.devices[0].receive()] == ["before", "after"]
    # The server's own answer for a removed device is distinct, and only it marks removal.
    alice.devices[1].remove_device(a0.device_id)
    with pytest.raises(DeviceRemoved):
        a0.receive()


def test_a_device_refills_prekeys_on_the_servers_hint(inproc: InProcess) -> None:
    """Others' bundle fetches use up a device's one-time prekeys without any message reaching
    it; the receive answer's hint makes it refill (before, only a first-contact message did)."""
    bob = Account(inproc.url, 1, session=inproc.session)  # 8 one-time, 2 KEM prekeys: low
    b0 = bob.devices[0]
    before = b0.server.prekey_count()
    assert before.one_time_prekeys < 10
    b0.receive()  # nothing queued; the hint says "low"
    after = b0.server.prekey_count()
    assert after.one_time_prekeys >= 10 and after.kem_prekeys >= 10
