"""Groups with Sender Keys through the Messenger: 20 members with joins and leaves, sender keys
distributed over the pairwise sessions, one sender-key ciphertext per group message, every
device storing each message once, and re-keying on removal so a removed member (even one that
hoarded every key it ever held) cannot read later messages."""

from __future__ import annotations

import dataclasses
import sqlite3

import pytest

from e2ee_core.client import Messenger, UnknownGroup
from e2ee_core.client.frames import GROUP, unwrap
from e2ee_core.groups import Group, NoSenderKeyState, SenderAddress
from tests.messenger.conftest import InProcess
from tests.messenger.support import Account, drain, seen_once


def group_texts(device: Messenger, conversation: str) -> list[str | None]:
    return [m.text for m in device.messages(conversation) if m.text is not None]


def captured_group_message(server_db: str, recipient: Messenger) -> bytes:
    """The sender-key ciphertext waiting in a recipient's queue (what the server holds)."""
    with sqlite3.connect(server_db) as conn:
        rows = conn.execute("SELECT content FROM envelopes WHERE username = ? AND "
                            "device_id = ? AND kind = 'message' ORDER BY id",
                            (recipient.username, recipient.device_id)).fetchall()
    payloads = [unwrap(bytes(r[0])) for r in rows]
    (payload,) = [p for kind, p in payloads if kind == GROUP]
    return payload


def test_group_of_20_with_joins_and_leaves(inproc: InProcess) -> None:
    alice = Account(inproc.url, 2, session=inproc.session)     # two devices: group sync
    others = [Account(inproc.url, 1, session=inproc.session) for _ in range(19)]
    first, later = others[:11], others[11:]
    everyone = [*alice.devices, *(a.devices[0] for a in others)]
    a0, a1 = alice.devices

    group = a0.create_group(a.name for a in first)
    drain(everyone, 2)
    members = [*alice.devices, *(a.devices[0] for a in first)]
    for device in members:
        assert set(device.group_members(group)) == {alice.name, *(a.name for a in first)}
    before = a0.send_text(group, "before the joins")
    drain(members, 1)
    for device in members:
        assert group_texts(device, group) == ["before the joins"]

    # A member (not the creator) adds eight accounts: 20 members. Joiners get current chain
    # keys only: nothing from before.
    first[3].devices[0].add_members(group, [a.name for a in later])
    drain(everyone, 3)
    for account in later:
        device = account.devices[0]
        assert len(device.group_members(group)) == 20
        assert before.message_id not in seen_once(device, group)
    senders = [later[0].devices[0], first[5].devices[0], a1]
    sent = [device.send_text(group, f"hello from sender {i}")
            for i, device in enumerate(senders)]
    drain(everyone, 1)
    for device in everyone:
        counts = seen_once(device, group)
        assert all(counts[c.message_id] == 1 for c in sent), "every member device, once"
        assert set(counts.values()) == {1}

    # Two members are removed by alice and one leaves on its own.
    removed = [first[0].devices[0], later[1].devices[0]]
    leaver = first[1].devices[0]
    hoard = {d.username: d.store.execute("SELECT * FROM client_sender_keys").fetchall()
             for d in removed}
    stale_states = {d.username: d.group_chats.groups[bytes.fromhex(group[6:])].state
                    for d in removed}
    a0.remove_members(group, [d.username for d in removed])
    drain(everyone, 2)
    leaver.leave_group(group)
    drain(everyone, 2)
    remaining = [d for d in everyone if d not in (*removed, leaver)]
    for device in remaining:
        assert len(device.group_members(group)) == 17
    for device in (*removed, leaver):
        assert group not in device.groups()
        with pytest.raises(UnknownGroup):
            device.send_text(group, "still here?")

    after = later[2].devices[0].send_text(group, "after the removals")
    wire = captured_group_message(inproc.db, a0)
    drain(everyone, 1)
    for device in remaining:
        assert seen_once(device, group)[after.message_id] == 1
    for device in (*removed, leaver):
        assert after.message_id not in seen_once(device, group)
    # A removed member that kept every sender key it ever held still cannot read it.
    for device in removed:
        for row in hoard[device.username]:
            device.store.execute("INSERT INTO client_sender_keys VALUES (?, ?, ?, ?) ON "
                                 "CONFLICT DO NOTHING", tuple(row))
        state = dataclasses.replace(stale_states[device.username], left=False,
                                    members=tuple(sorted({*a0.group_members(group),
                                                          device.username})))
        attacker = Group(state, device.store.sender_keys, clock=lambda: 0)
        sender = SenderAddress(later[2].name, later[2].devices[0].device_id)
        assert any(s == sender for s in state.senders)   # it did hold that sender's old key
        with pytest.raises(NoSenderKeyState):
            attacker.decrypt(sender, wire)


def test_devices_linked_later_join_existing_groups(inproc: InProcess) -> None:
    alice, bob, carol = (Account(inproc.url, 1, session=inproc.session) for _ in range(3))
    group = alice.devices[0].create_group([bob.name, carol.name])
    drain([alice.devices[0], bob.devices[0], carol.devices[0]], 2)
    early = alice.devices[0].send_text(group, "before bob's tablet")
    tablet = bob.add_device()
    everyone = [alice.devices[0], bob.devices[0], carol.devices[0], tablet]
    drain(everyone, 3)     # notices -> group sync from bob's phone, sender keys from all
    assert group in tablet.groups() and set(tablet.group_members(group)) == {
        alice.name, bob.name, carol.name}
    assert early.message_id not in seen_once(tablet, group)
    hello = carol.devices[0].send_text(group, "hello tablet")
    reply = tablet.send_text(group, "hi from the tablet")
    drain(everyone, 1)
    assert seen_once(tablet, group)[hello.message_id] == 1
    for device in (alice.devices[0], bob.devices[0], carol.devices[0]):
        assert seen_once(device, group)[reply.message_id] == 1
        assert seen_once(device, group)[hello.message_id] == 1


def test_removed_device_of_a_member_cannot_read_later_group_messages(
        inproc: InProcess) -> None:
    alice = Account(inproc.url, 1, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0, (b0, b1) = alice.devices[0], bob.devices
    group = a0.create_group([bob.name])
    drain([a0, b0, b1], 2)
    before = a0.send_text(group, "while the tablet is bob's")
    drain([b0, b1], 1)
    assert seen_once(b1, group)[before.message_id] == 1
    stale_state = b1.group_chats.groups[bytes.fromhex(group[6:])].state
    b0.remove_device(b1.device_id)
    drain([a0, b0], 2)                    # alice re-keys on the notice, bob's phone too
    after = a0.send_text(group, "after the tablet was removed")
    wire = captured_group_message(inproc.db, b0)
    drain([b0], 1)
    assert seen_once(b0, group)[after.message_id] == 1
    # The removed tablet kept its whole state (sender keys included) and gets the ciphertext.
    attacker = Group(stale_state, b1.store.sender_keys, clock=lambda: 0)
    with pytest.raises(NoSenderKeyState):
        attacker.decrypt(SenderAddress(alice.name, a0.device_id), wire)


def test_a_new_device_reads_the_first_group_message_sent_after_its_link(
        inproc: InProcess) -> None:
    """Before: the group message went out before the new device had the group's membership and
    sender key, and the device dropped it (UnknownGroup), 3 runs of 3. Now the 409 that
    reveals the device sends it the group state first, and the message is re-encrypted."""
    alice, bob = (Account(inproc.url, 1, session=inproc.session) for _ in range(2))
    group = alice.devices[0].create_group([bob.name])
    drain([alice.devices[0], bob.devices[0]], 2)
    tablet = alice.add_device()  # alice's phone has not heard of it yet
    first = alice.devices[0].send_text(group, "first after the link")
    tablet.receive()
    bob.devices[0].receive()
    assert seen_once(tablet, group).get(first.message_id) == 1
    assert seen_once(bob.devices[0], group).get(first.message_id) == 1
    # Another member's new device: alice's message may reach it before its own account's
    # phone sends it the group's membership; it keeps the message until it can read it.
    phone_of_bob = bob.add_device()
    second = alice.devices[0].send_text(group, "first after bob's link")
    assert phone_of_bob.receive() == []  # not in the group yet: kept, not dropped
    bob.devices[0].receive()  # bob's phone hears of its new device and sends it the group
    shown = phone_of_bob.receive()
    assert second.message_id in {m.message_id for m in shown}
    assert seen_once(phone_of_bob, group).get(second.message_id) == 1
    tablet.receive()
    assert seen_once(tablet, group).get(second.message_id) == 1


def test_a_group_message_is_one_request_and_one_copy_per_own_device(
        inproc: InProcess) -> None:
    """Before: one request per member, not atomic, and the sender's other devices got N-1
    copies of every group message."""
    alice = Account(inproc.url, 2, session=inproc.session)
    members = [Account(inproc.url, 1, session=inproc.session) for _ in range(5)]
    a0, a1 = alice.devices
    group = a0.create_group([m.name for m in members])
    drain([a0, a1, *(m.devices[0] for m in members)], 3)
    calls: list[str] = []
    real_send, real_multi = a0.server.send, a0.server.send_multi
    a0.server.send = lambda *a, **k: calls.append("send") or real_send(*a, **k)  # type: ignore[method-assign]
    a0.server.send_multi = (  # type: ignore[method-assign]
        lambda *a, **k: calls.append("multi") or real_multi(*a, **k))
    message = a0.send_text(group, "to everyone at once")
    assert calls == ["multi"]
    copies = [e for e in a1.server.receive().envelopes if e.source == alice.name]
    assert len(copies) == 1  # one copy for the sender's other device
    for member in members:
        member.devices[0].receive()
        assert seen_once(member.devices[0], group)[message.message_id] == 1
