"""Every content type between devices, disappearing messages with an injectable clock,
attachments up to 20 MiB (and the typed error beyond the server's limit), exactly-once storage
when an acknowledgement is lost, and prekey maintenance."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import pytest
import requests

from e2ee_core.client import AttachmentTooLarge, Messenger
from e2ee_core.client.frames import Frame, wrap_pairwise
from e2ee_core.content import AttachmentPointer, Content, Sticker, Text, TimerChange
from e2ee_core.server.app import create_app
from e2ee_core.server.errors import ServerUnreachable
from e2ee_core.server.wire import OutgoingEnvelope
from tests.messenger.conftest import InProcess
from tests.messenger.support import Account, drain, seen_once
from tests.server.support import FAST_ARGON2, WSGIAdapter, in_process_session


class MsClock:
    """A millisecond clock the test moves (shared by the devices of one test)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


def test_every_content_type_reaches_every_device(inproc: InProcess) -> None:
    alice = Account(inproc.url, 2, session=inproc.session)
    bob = Account(inproc.url, 1, session=inproc.session)
    (a0, a1), (b0,) = alice.devices, bob.devices
    everyone = [a0, a1, b0]
    hello = a0.send_text(bob.name, "hello")
    drain(everyone, 1)
    b0.react(alice.name, hello.message_id, "👍")
    a0.edit(bob.name, hello.message_id, "hello, edited")
    b0.edit(alice.name, hello.message_id, "forged edit")        # not the author: ignored
    sticker = a1.send(bob.name, Sticker("cat:wave-1"))
    drain(everyone, 1)
    for device, peer in ((a0, bob.name), (a1, bob.name), (b0, alice.name)):
        shown = device.message(peer, hello.message_id)
        assert shown.text == "hello, edited" and shown.edited
        assert shown.reactions == {bob.name: "👍"}
        assert device.message(peer, sticker.message_id).body == Sticker("cat:wave-1")
    b0.react(alice.name, hello.message_id, None)                # remove the reaction
    b0.mark_read(alice.name, [hello.message_id, sticker.message_id])
    a0.delete_for_everyone(bob.name, sticker.message_id)
    drain(everyone, 1)
    for device, peer in ((a0, bob.name), (a1, bob.name), (b0, alice.name)):
        assert device.message(peer, hello.message_id).reactions == {}
        gone = device.message(peer, sticker.message_id)
        assert gone.deleted and gone.content is None
    for device in (a0, a1):
        assert set(device.read_by(bob.name, hello.message_id)) == {bob.name}
    # Control contents are applied, never listed as messages; each message is stored once.
    for device in everyone:
        assert [m.message_id for m in device.messages()] == [hello.message_id,
                                                             sticker.message_id]
        assert set(seen_once(device).values()) == {1}


def test_disappearing_messages_with_an_injectable_clock(inproc: InProcess) -> None:
    clock = MsClock()
    alice = Account(inproc.url, 2, session=inproc.session, clock=clock)
    bob = Account(inproc.url, 1, session=inproc.session, clock=clock)
    (a0, a1), (b0,) = alice.devices, bob.devices
    everyone = [a0, a1, b0]
    a0.set_timer(bob.name, 60)
    drain(everyone, 1)
    assert [d.timer(p) for d, p in ((a0, bob.name), (a1, bob.name), (b0, alice.name))] == \
        [60, 60, 60]
    kept = [m for m in b0.messages(alice.name) if isinstance(m.body, TimerChange)]
    assert len(kept) == 1 and kept[0].expires_at_ms is None   # the notice itself stays
    vanishing = b0.send_text(alice.name, "gone in a minute")
    assert vanishing.expire_timer == 60
    drain(everyone, 1)
    clock.advance(61)
    # The sender's copies expire 60 s after sending; the unread incoming ones wait.
    assert [m.message_id for m in b0.sweep()] == [vanishing.message_id]
    assert a0.sweep() == [] and a1.sweep() == []
    a1.mark_read(bob.name, [vanishing.message_id])   # read on one device: synced to the other
    drain(everyone, 1)
    assert a0.next_expiry_ms() == clock.now + 60_000
    clock.advance(59)
    assert a0.sweep() == [] and a1.sweep() == []
    clock.advance(2)
    assert [m.message_id for m in a0.sweep()] == [vanishing.message_id]
    assert [m.message_id for m in a1.sweep()] == [vanishing.message_id]
    for device, peer in ((a0, bob.name), (a1, bob.name), (b0, alice.name)):
        assert all(m.message_id != vanishing.message_id for m in device.messages(peer))
    # Timer off: later messages stay.
    a0.set_timer(bob.name, None)
    drain(everyone, 1)
    stays = b0.send_text(alice.name, "stays")
    assert stays.expire_timer is None and b0.timer(alice.name) is None


def test_attachments_up_to_20_mib_and_typed_error_beyond(inproc: InProcess) -> None:
    alice = Account(inproc.url, 2, session=inproc.session)
    bob = Account(inproc.url, 1, session=inproc.session)
    data = os.urandom(20 * 1024 * 1024)
    sent = alice.devices[0].send_attachment(bob.name, data, content_type="video/mp4",
                                            file_name="clip.mp4")
    for device in (bob.devices[0], alice.devices[1]):
        (got,) = device.receive()
        assert isinstance(got.body, AttachmentPointer) and got.body.size == len(data)
        assert device.download_attachment(got.body) == data
    assert sent.message_id == got.message_id
    small = alice.devices[0].send_attachment(bob.name, b"tiny", content_type="text/plain")
    (got,) = bob.devices[0].receive()
    assert got.message_id == small.message_id
    assert bob.devices[0].download_attachment(got.body) == b"tiny"  # type: ignore[arg-type]
    with sqlite3.connect(inproc.db) as conn:
        before = conn.execute("SELECT COUNT(*) FROM attachments").fetchone()[0]
    with pytest.raises(AttachmentTooLarge):       # refused before encrypting or uploading
        alice.devices[0].send_attachment(bob.name, bytes(21 * 1024 * 1024 + 600_000),
                                         content_type="application/octet-stream")
    with sqlite3.connect(inproc.db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM attachments").fetchone()[0] == before
    assert bob.devices[0].receive() == []


def test_server_413_becomes_the_typed_error(tmp_path: Any) -> None:
    app = create_app({"db": str(tmp_path / "s.db"), "max_attachment_bytes": 100_000,
                      **FAST_ARGON2})
    session = in_process_session(app)
    alice = Account("http://e2ee.test", 1, session=session)
    bob = Account("http://e2ee.test", 1, session=session)
    with pytest.raises(AttachmentTooLarge):
        alice.devices[0].send_attachment(bob.name, bytes(200_000),
                                         content_type="application/octet-stream")


class LosesFirstAck(WSGIAdapter):
    """The real app over WSGI, but the connection drops on the first acknowledgement."""

    dropped = False

    def send(self, request: requests.PreparedRequest, *args: Any,
             **kwargs: Any) -> requests.Response:
        if request.path_url.startswith("/v1/messages/ack") and not self.dropped:
            self.dropped = True
            raise requests.ConnectionError("connection reset")
        return super().send(request, *args, **kwargs)


def test_lost_acknowledgement_still_stores_once(inproc: InProcess) -> None:
    flaky = requests.Session()
    flaky.mount(inproc.url, LosesFirstAck(inproc.app))
    alice = Account(inproc.url, 1, session=inproc.session)
    bob = Account(inproc.url, 0, session=inproc.session)
    b0 = Messenger.register(inproc.url, bob.name, "correct horse battery staple",
                            session=flaky, prekeys=4, kem_prekeys=1)
    alice.devices[0].send_text(bob.name, "once")
    with pytest.raises(ServerUnreachable):
        b0.receive()                              # decrypted and stored; ack lost
    assert [m.text for m in b0.messages()] == ["once"]
    assert b0.receive() == []                     # redelivered, recognised, acknowledged
    assert [m.text for m in b0.messages()] == ["once"]
    assert b0.receive() == []


def test_prekeys_are_replenished_and_rotated(inproc: InProcess) -> None:
    clock = MsClock()
    bob = Messenger.register(inproc.url, "bob-prekeys", "correct horse battery staple",
                             session=inproc.session, prekeys=3, kem_prekeys=1, clock=clock)
    senders = [Account(inproc.url, 1, session=inproc.session) for _ in range(4)]
    for sender in senders:                        # each new session consumes one-time keys
        sender.devices[0].send_text("bob-prekeys", "hi")
    assert [m.text for m in bob.receive()] == ["hi"] * 4
    count = bob.server.prekey_count()             # refilled after the PreKey messages
    assert count.one_time_prekeys >= 100 and count.kem_prekeys >= 20
    probe = senders[0].devices[0].server          # another device's server connection
    old_signed = probe.fetch_bundles("bob-prekeys")[0].signed_prekey.key_id
    assert bob.maintain_prekeys() is False        # nothing due
    old_last_resort = bob.device.last_resort_kyber_pre_key().id
    clock.advance(3 * 24 * 3600)                  # past the 2-day rotation period
    assert bob.maintain_prekeys() is True
    assert probe.fetch_bundles("bob-prekeys")[0].signed_prekey.key_id != old_signed
    assert bob.device.last_resort_kyber_pre_key().id != old_last_resort
    newcomer = Account(inproc.url, 1, session=inproc.session)
    newcomer.devices[0].send_text("bob-prekeys", "after rotation")
    assert [m.text for m in bob.receive()] == ["after rotation"]
    assert all(isinstance(m.body, Text) for m in bob.messages())


def test_malformed_envelopes_from_a_real_account_never_block_the_queue(
        inproc: InProcess) -> None:
    mallory = Account(inproc.url, 1, session=inproc.session).devices[0]
    bob = Account(inproc.url, 1, session=inproc.session).devices[0]
    mallory.send_text(bob.username, "first, a normal message")   # sessions both ways
    assert [m.text for m in bob.receive()] == ["first, a normal message"]
    target = (bob.username, bob.device_id)
    bad = [b"\x00", b"\x01", b"\x01" + os.urandom(64), b"\x02" + os.urandom(100),
           wrap_pairwise(mallory.device.encrypt(target, b"not a frame").to_bytes()),
           wrap_pairwise(mallory.device.encrypt(target, Frame(  # addressed to someone else
               "carol", Content.new(Text("misrouted"), sent_at_ms=1)).encode()).to_bytes())]
    for content in bad:
        mallory.server.send(bob.username, [OutgoingEnvelope(*target, content)])
    mallory.send_text(bob.username, "still gets through")
    assert [m.text for m in bob.receive()] == ["still gets through"]
    assert bob.receive() == []
    assert [m.text for m in bob.messages()] == ["first, a normal message", "still gets through"]
