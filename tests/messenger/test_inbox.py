"""Receiving in batched store transactions, delivery and read status, and the block list."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2ee_core.client import AccountBlocked, Messenger, StateError
from e2ee_core.client.frames import wrap_pairwise
from e2ee_core.server.wire import OutgoingEnvelope
from tests.messenger.conftest import InProcess
from tests.messenger.support import Account


def _commits_during(device: Messenger, action: object) -> tuple[int, object]:
    """Run ``action()`` counting the COMMITs on the device's database connection."""
    statements: list[str] = []
    conn = device.store.db.connection()
    conn.set_trace_callback(statements.append)
    try:
        result = action()  # type: ignore[operator]
    finally:
        conn.set_trace_callback(None)
    return sum(s.strip().upper() == "COMMIT" for s in statements), result


def test_a_backlog_is_stored_in_one_transaction_per_batch(inproc: InProcess,
                                                          tmp_path: Path) -> None:
    """Before: a transaction per envelope and an implicit one per forgotten id (80 for 40)."""
    alice = Account(inproc.url, 1, session=inproc.session).devices[0]
    bob = Account(inproc.url, 1, session=inproc.session, state_dir=tmp_path,
                  delivery_receipts=False).devices[0]
    for n in range(40):
        alice.send_text(bob.username, f"m{n}")
    commits, got = _commits_during(bob, bob.receive)
    assert [m.text for m in got] == [f"m{n}" for n in range(40)]  # type: ignore[attr-defined]
    # the batch, the acknowledged ids forgotten, the first contact's device list, the prekey
    # refill (the first message used a one-time prekey)
    assert commits < 10
    assert bob.receive() == []


def test_a_poisoned_envelope_in_a_batch_is_undone_alone(inproc: InProcess,
                                                        tmp_path: Path) -> None:
    mallory = Account(inproc.url, 1, session=inproc.session).devices[0]
    bob = Account(inproc.url, 1, session=inproc.session, state_dir=tmp_path).devices[0]
    mallory.send_text(bob.username, "hello")
    assert [m.text for m in bob.receive()] == ["hello"]
    target = (bob.username, bob.device_id)
    mallory.send_text(bob.username, "before")
    # decrypts (the ratchet moves) but is no frame: its step must be undone, the batch kept
    mallory.server.send(bob.username, [OutgoingEnvelope(*target, wrap_pairwise(
        mallory.device.encrypt(target, b"not a frame").to_bytes()))])
    mallory.server.send(bob.username, [OutgoingEnvelope(*target, b"\x01" + os.urandom(80))])
    mallory.send_text(bob.username, "after")
    assert [m.text for m in bob.receive()] == ["before", "after"]
    assert [m.text for m in bob.messages()] == ["hello", "before", "after"]
    mallory.send_text(bob.username, "still in step")
    assert [m.text for m in bob.receive()] == ["still in step"]


def test_delivery_and_read_status_reach_every_device_of_the_sender(inproc: InProcess) -> None:
    """Before: no delivery status at all (only read receipts)."""
    alice = Account(inproc.url, 2, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0, a1 = alice.devices
    b0, b1 = bob.devices
    sent = a0.send_text(bob.name, "did you get this?")
    a1.receive()
    assert a0.message(bob.name, sent.message_id).status == "sent"
    assert a1.message(bob.name, sent.message_id).status == "sent"
    b0.receive()
    for device in (a0, a1):
        device.receive()
        message = device.message(bob.name, sent.message_id)
        assert message.status == "delivered" and message.delivered_to == (bob.name,)
    assert a0.delivered_to(bob.name, sent.message_id).keys() == {bob.name}
    b1.receive()  # the second device's delivery changes nothing more
    b0.mark_read(alice.name, [sent.message_id])
    for device in (a0, a1):
        device.receive()
        assert device.message(bob.name, sent.message_id).status == "read"
    incoming = b0.message(alice.name, sent.message_id)
    assert incoming.status is None and incoming.read_at_ms is not None


def test_a_blocked_account_cannot_reach_or_be_reached(inproc: InProcess) -> None:
    """Before: there was no block list."""
    bob = Account(inproc.url, 1, session=inproc.session)
    mallory = Account(inproc.url, 1, session=inproc.session)
    b0, m0 = bob.devices[0], mallory.devices[0]
    b0.block(mallory.name)
    assert b0.blocked() == [mallory.name]
    m0.send_text(bob.name, "let me in")
    assert b0.receive() == []
    assert b0.messages() == []
    with pytest.raises(AccountBlocked) as raised:
        b0.send_text(mallory.name, "hi")
    assert mallory.name not in str(raised.value)
    with pytest.raises(StateError):
        b0.block(bob.name)
    # Refused on the server: mallory did not become a contact, so bob's new device is not
    # announced to it.
    bob.add_device()
    m0.receive()
    assert [n for n in m0.notices() if n.username == bob.name] == []
    b0.unblock(mallory.name)
    m0.send_text(bob.name, "sorry")
    assert [m.text for m in b0.receive()] == ["sorry"]


def test_a_new_account_heard_from_two_devices_in_one_batch_makes_no_notice(
        inproc: InProcess) -> None:
    """First contact is trust on first use: messages from two devices of an account never seen
    before, in one batch, must not announce the second as 'added' (seen with delivery
    receipts from both of a recipient's devices)."""
    alice = Account(inproc.url, 2, session=inproc.session)
    bob = Account(inproc.url, 2, session=inproc.session)
    a0, a1 = alice.devices
    a0.send_text(bob.name, "hello")
    for device in bob.devices:
        device.receive()  # both send a delivery receipt to every alice device
    a1.receive()  # a1 has never exchanged a message with bob
    assert [n for n in a1.notices() if n.username == bob.name] == []


def test_a_backlog_writes_each_session_record_once(inproc: InProcess, tmp_path: Path) -> None:
    """A batch is first tried write-behind: one session record advanced 40 times is written
    once at commit (before: once per message)."""
    alice = Account(inproc.url, 1, session=inproc.session).devices[0]
    bob = Account(inproc.url, 1, session=inproc.session, state_dir=tmp_path,
                  delivery_receipts=False).devices[0]
    alice.send_text(bob.username, "first")
    bob.receive()
    for n in range(40):
        alice.send_text(bob.username, f"m{n}")
    statements: list[str] = []
    conn = bob.store.db.connection()
    conn.set_trace_callback(statements.append)
    try:
        got = bob.receive()
    finally:
        conn.set_trace_callback(None)
    assert [m.text for m in got] == [f"m{n}" for n in range(40)]  # type: ignore[attr-defined]
    assert sum("INSERT INTO e2ee_sessions" in s for s in statements) == 1
    assert not any(s.startswith("SAVEPOINT") for s in statements)


@pytest.mark.parametrize("poisoned", [False, True])
def test_a_group_joined_in_a_batch_that_must_be_redone(inproc: InProcess, tmp_path: Path,
                                                       poisoned: bool) -> None:
    """A batch holding a group invitation, group messages and (or not) a poisoned envelope:
    when the write-behind attempt is rolled back, the group state in memory and the messages
    queued to send are put back, so the envelope-by-envelope redo joins the group once, reads
    every message and sends what it sends once: the same as a batch without poison."""
    alice = Account(inproc.url, 1, session=inproc.session).devices[0]
    mallory = Account(inproc.url, 1, session=inproc.session).devices[0]
    bob = Account(inproc.url, 1, session=inproc.session, state_dir=tmp_path).devices[0]
    mallory.send_text(bob.username, "hello")
    alice.send_text(bob.username, "hello")
    bob.receive()
    alice.receive()
    group = alice.create_group([bob.username])
    first = alice.send_text(group, "one")
    if poisoned:
        target = (bob.username, bob.device_id)
        mallory.server.send(bob.username, [OutgoingEnvelope(*target, wrap_pairwise(
            mallory.device.encrypt(target, b"not a frame").to_bytes()))])
    second = alice.send_text(group, "two")
    got = bob.receive()
    assert [m.message_id for m in got if m.conversation == group] == [first.message_id,
                                                                      second.message_id]
    assert bob.group_members(group) == tuple(sorted([alice.username, bob.username]))
    # What bob sent to alice while joining (its sender key), once: alice can read bob.
    queued = [e for e in alice.server.receive().envelopes if e.source == bob.username]
    assert len(queued) == 1
    reply = bob.send_text(group, "three")
    assert reply.message_id in {m.message_id for m in alice.receive()}
    mallory.send_text(bob.username, "after")
    assert [m.text for m in bob.receive()] == ["after"]  # type: ignore[attr-defined]
