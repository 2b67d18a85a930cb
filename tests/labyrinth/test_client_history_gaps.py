"""The Messenger's mailbox history, the gaps of the first pass (issue #15): queued in the
transaction that stores a message (a crash after it commits loses nothing), the current state
of a message (edits, reactions, deletes for everyone, received ones too) for a restored or
linked device, disappearing messages never saved. Against the real delivery server, in
process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from e2ee_core.client.history import (
    DELETION,
    MAX_HISTORY_REACTIONS,
    HistoryPayload,
    InvalidHistoryPayload,
)
from e2ee_core.client.messenger import Messenger
from e2ee_core.client.store import ClientStore
from e2ee_core.content import AttachmentPointer, Content, Text
from e2ee_core.server.errors import NotFound
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import LoadQuery
from tests.labyrinth.test_client_history import PASSWORD, Server, _names, _server


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Server:
    if request.param == "sqlite":
        return _server(str(tmp_path / "server.db"))
    return _server(request.getfixturevalue("pg_dsn"))


class Crash(BaseException):
    """The process dying at a given point (nothing after it runs)."""


def _crash(*_: object) -> int:
    raise Crash


def _mailbox_ids(device: Messenger) -> set[str]:
    return {r.message_id for r in LabyrinthClient(device.server).iter_records(LoadQuery())}


def _queued_texts(store: ClientStore) -> list[str | None]:
    out: list[str | None] = []
    for _, _, _, _, payload in store.history_queued(1000):
        body = HistoryPayload.decode(payload).content.body
        out.append(body.text if isinstance(body, Text) else None)
    return out


def _admitted_laptop(server: Server, alice: Messenger) -> Messenger:
    laptop = server.link(alice.username)
    laptop.enable_history()
    alice.receive()  # admits it
    laptop.maintain_history()
    return laptop


# -- 1. the crash window ---------------------------------------------------------------------------
def test_a_crash_after_a_receive_batch_commits_loses_nothing_from_the_mailbox(
        server: Server, tmp_path: Path) -> None:
    """Before: the batch committed, then the messages were queued; dying in between lost them
    from the mailbox for good."""
    a, b = _names()
    state = tmp_path / "alice.db"
    alice = Messenger.register(server.url, a, PASSWORD, state=state, session=server.session)
    bob = server.register(b)
    alice.enable_history()
    sent = [bob.send_text(a, f"m{i}") for i in range(3)]
    alice.server.acknowledge = _crash  # type: ignore[method-assign,assignment]
    with pytest.raises(Crash):
        alice.receive()  # the batch commits, then the process dies (before the acknowledgement)
    assert [m.text for m in alice.messages(b)] == ["m0", "m1", "m2"]
    alice.close()
    again = Messenger.open(state, session=server.session)
    assert _queued_texts(again.store) == ["m0", "m1", "m2"]
    assert again.receive() == []  # redelivered, recognised as processed
    assert again.store.history_queue_length() == 0
    assert {c.message_id.hex() for c in sent} <= _mailbox_ids(again)


def test_a_crash_after_a_send_or_an_edit_commits_loses_nothing_from_the_mailbox(
        server: Server, tmp_path: Path) -> None:
    a, b = _names()
    state = tmp_path / "alice.db"
    alice = Messenger.register(server.url, a, PASSWORD, state=state, session=server.session)
    server.register(b)
    alice.enable_history()
    first = alice.send_text(b, "saved at once")
    alice.history.flush = _crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        alice.send_text(b, "sent, then the crash")
    with pytest.raises(Crash):
        alice.edit(b, first.message_id, "edited, then the crash")
    alice.close()
    again = Messenger.open(state, session=server.session)
    assert _queued_texts(again.store) == ["sent, then the crash", "edited, then the crash"]
    again.maintain_history()
    laptop = _admitted_laptop(server, again)
    loaded = {m.message_id: m for m in laptop.load_all_history()}
    assert loaded[first.message_id].text == "edited, then the crash"
    assert loaded[first.message_id].edited
    assert "sent, then the crash" in {m.text for m in loaded.values()}


def test_a_batch_redone_one_envelope_at_a_time_queues_each_message_once(
        tmp_path: Path) -> None:
    """The write-behind attempt rolls back its queue rows with it; the savepoint redo queues
    the good messages once each and nothing of the poisoned one."""
    from e2ee_core.client.frames import wrap_pairwise
    from e2ee_core.server.wire import OutgoingEnvelope

    server = _server(str(tmp_path / "server.db"))
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    bob.send_text(a, "hello")
    alice.receive()
    target = (a, alice.device_id)
    bob.send_text(a, "before")
    bob.server.send(a, [OutgoingEnvelope(*target, wrap_pairwise(
        bob.device.encrypt(target, b"not a frame").to_bytes()))])
    bob.send_text(a, "after")
    alice.server.acknowledge = _crash  # type: ignore[method-assign,assignment]
    with pytest.raises(Crash):
        alice.receive()  # the batch commits, then the process dies
    assert [m.text for m in alice.messages(b)] == ["hello", "before", "after"]
    assert _queued_texts(alice.store) == ["before", "after"]


def test_a_backlog_with_history_on_still_writes_each_session_record_once(
        tmp_path: Path) -> None:
    """Queueing inside the batch keeps it one write-behind block: one session write, no
    savepoint, one queue row per message."""
    server = _server(str(tmp_path / "server.db"))
    a, b = _names()
    alice = Messenger.register(server.url, a, PASSWORD, state=tmp_path / "alice.db",
                               session=server.session, delivery_receipts=False)
    bob = server.register(b)
    alice.enable_history()
    bob.send_text(a, "first")
    alice.receive()
    for n in range(40):
        bob.send_text(a, f"m{n}")
    statements: list[str] = []
    conn = alice.store.db.connection()
    conn.set_trace_callback(statements.append)
    try:
        got = alice.inbox.receive()
    finally:
        conn.set_trace_callback(None)
    assert [m.text for m in got] == [f"m{n}" for n in range(40)]
    assert sum("INSERT INTO e2ee_sessions" in s for s in statements) == 1
    assert not any(s.startswith("SAVEPOINT") for s in statements)
    assert sum("INSERT INTO client_history_outbox" in s for s in statements) == 40


# -- 2. the current state of a message -------------------------------------------------------------
def test_a_linked_device_sees_edits_and_reactions(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    mine = alice.send_text(b, "a typo")
    alice.edit(b, mine.message_id, "fixed")
    theirs = bob.send_text(a, "hi alice")
    bob.receive()
    bob.react(a, mine.message_id, "👍")
    bob.edit(a, theirs.message_id, "hi alice!")
    alice.receive()  # a received reaction and a received edit rewrite the records
    alice.react(b, theirs.message_id, "❤️")
    gone = bob.send_text(a, "a reaction that is taken back")
    alice.receive()
    alice.react(b, gone.message_id, "😀")
    alice.react(b, gone.message_id, None)
    laptop = _admitted_laptop(server, alice)
    loaded = {m.message_id: m for m in laptop.load_all_history()}
    assert (loaded[mine.message_id].text, loaded[mine.message_id].edited,
            loaded[mine.message_id].reactions) == ("fixed", True, {b: "👍"})
    assert (loaded[theirs.message_id].text, loaded[theirs.message_id].edited,
            loaded[theirs.message_id].reactions) == ("hi alice!", True, {a: "❤️"})
    assert loaded[gone.message_id].reactions == {}
    assert not loaded[gone.message_id].edited
    # What the app reads back is the same as on the device that saved it.
    for message_id, message in loaded.items():
        original = alice.message(b, message_id)
        assert (message.text, message.edited, message.reactions) == (
            original.text, original.edited, original.reactions)


def test_a_received_delete_for_everyone_leaves_the_recipients_mailbox(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    bob.enable_history()
    oops = bob.send_text(a, "oops")
    kept = bob.send_text(a, "kept")
    alice.receive()
    assert oops.message_id.hex() in _mailbox_ids(alice)
    bob.delete_for_everyone(a, oops.message_id)
    assert oops.message_id.hex() not in _mailbox_ids(bob)  # the author's own mailbox
    alice.receive()  # the author's delete, applied here, deletes the record here too
    assert oops.message_id.hex() not in _mailbox_ids(alice)
    assert kept.message_id.hex() in _mailbox_ids(alice)
    laptop = _admitted_laptop(server, alice)
    assert [m.text for m in laptop.load_all_history()] == ["kept"]


def test_a_queued_record_is_replaced_by_the_newest_state(server: Server) -> None:
    """A device whose saves wait (a linked device not admitted yet) keeps one queue row per
    message: the newest state, or its deletion, in order with the rest."""
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    laptop = server.link(a)
    assert not laptop.enable_history()
    draft = laptop.send_text(b, "draft")
    laptop.edit(b, draft.message_id, "draft, edited")
    laptop.edit(b, draft.message_id, "draft, edited twice")
    assert _queued_texts(laptop.store) == ["draft, edited twice"]
    doomed = laptop.send_text(b, "doomed")
    laptop.delete_for_everyone(b, doomed.message_id)
    last = laptop.send_text(b, "last")
    queue = laptop.store.history_queued(100)
    assert [(row[2], row[4] == DELETION) for row in queue] == [
        (draft.message_id.hex(), False), (doomed.message_id.hex(), True),
        (last.message_id.hex(), False)]
    alice.receive()  # admits the laptop (alice's own copies: the edits and the delete too)
    assert laptop.maintain_history() == 3
    assert laptop.store.history_queue_length() == 0
    ids = _mailbox_ids(laptop)
    assert draft.message_id.hex() in ids and last.message_id.hex() in ids
    assert doomed.message_id.hex() not in ids
    phone = server.link(a)
    phone.enable_history()
    alice.receive()
    texts = {m.text for m in phone.load_all_history()}
    assert {"draft, edited twice", "last"} <= texts and "doomed" not in texts
    del bob


def test_disappearing_messages_are_never_saved(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    alice.set_timer(b, 3600)
    fleeting = alice.send_text(b, "this disappears")
    bob.receive()
    bob.react(a, fleeting.message_id, "👍")
    bob.send_text(a, "so does this reply")
    alice.receive()
    alice.edit(b, fleeting.message_id, "edited, still disappearing")
    assert alice.store.history_queue_length() == 0
    laptop = _admitted_laptop(server, alice)
    texts = [m.text for m in laptop.load_all_history()]
    assert "this disappears" not in texts and "so does this reply" not in texts
    assert "edited, still disappearing" not in texts


# -- the record's plaintext --------------------------------------------------------------------
def test_version_1_payloads_are_still_read() -> None:
    content = Content.new(Text("from before"), sent_at_ms=7)
    v1 = b"\x01\x01" + (3).to_bytes(4, "big") + b"\x05alice" + content.encode()
    assert HistoryPayload.decode(v1) == HistoryPayload("alice", 3, True, content)
    with pytest.raises(InvalidHistoryPayload):  # no edited flag in version 1
        HistoryPayload.decode(b"\x01\x03" + v1[2:])


_EMOJI = ["👍", "❤️", "😀", "🎉", "👨‍👩‍👧"]


@given(sender=st.text(min_size=1, max_size=40).filter(lambda s: len(s.encode()) <= 255),
       device=st.integers(0, 2**32 - 1), outgoing=st.booleans(), edited=st.booleans(),
       reactions=st.dictionaries(st.text(min_size=1, max_size=30),
                                 st.sampled_from(_EMOJI), max_size=8),
       text=st.text(max_size=50))
def test_payload_round_trip(sender: str, device: int, outgoing: bool, edited: bool,
                            reactions: dict[str, str], text: str) -> None:
    payload = HistoryPayload(sender, device, outgoing, Content.new(Text(text), sent_at_ms=1),
                             edited=edited, reactions=tuple(sorted(reactions.items())))
    assert HistoryPayload.decode(payload.encode()) == payload


@given(st.binary(max_size=400))
def test_payload_decoder_raises_only_its_error(data: bytes) -> None:
    for candidate in (data, b"\x02" + data[:1] + data[2:], b"\x02\x00" + data):
        try:
            HistoryPayload.decode(candidate)
        except InvalidHistoryPayload:
            pass


def test_payload_strictness() -> None:
    content = Content.new(Text("x"), sent_at_ms=1)
    good = HistoryPayload("al", 1, False, content, reactions=(("a", "👍"), ("b", "😀")))
    raw = good.encode()
    assert HistoryPayload.decode(raw) == good
    swapped = HistoryPayload("al", 1, False, content, reactions=(("b", "😀"), ("a", "👍")))
    with pytest.raises(InvalidHistoryPayload):  # reactors out of order: one encoding only
        swapped.encode()
    header = 7 + 2  # up to the reactions count
    out_of_order = raw[:header] + b"\x00\x02" + b"\x01b\x04" + "😀".encode() + \
        b"\x01a\x04" + "👍".encode() + content.encode()
    with pytest.raises(InvalidHistoryPayload):
        HistoryPayload.decode(out_of_order)
    not_utf8 = raw[:header] + b"\x00\x01" + b"\x01a\x02\xff\xfe" + content.encode()
    with pytest.raises(InvalidHistoryPayload):
        HistoryPayload.decode(not_utf8)
    empty_emoji = raw[:header] + b"\x00\x01" + b"\x01a\x00" + content.encode()
    with pytest.raises(InvalidHistoryPayload):
        HistoryPayload.decode(empty_emoji)
    long_emoji = raw[:header] + b"\x00\x01" + b"\x01a\x41" + b"x" * 65 + content.encode()
    with pytest.raises(InvalidHistoryPayload):
        HistoryPayload.decode(long_emoji)
    too_many = raw[:header] + (MAX_HISTORY_REACTIONS + 1).to_bytes(2, "big")
    with pytest.raises(InvalidHistoryPayload):
        HistoryPayload.decode(too_many)
    with pytest.raises(InvalidHistoryPayload):
        HistoryPayload("al", 1, False, content, reactions=tuple(
            (f"r{i:04d}", "👍") for i in range(MAX_HISTORY_REACTIONS + 1))).encode()


# -- 4. attachment references ----------------------------------------------------------------------
def test_attachments_are_referenced_in_the_mailbox_until_deleted(server: Server) -> None:
    from e2ee_core.client.history import HistoryUnavailable
    from e2ee_core.labyrinth import attachments, orf

    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    photo = b"\x89PNG a photo " + bytes(range(256))
    sent = alice.send_attachment(b, photo, content_type="image/png", file_name="p.png")
    reply = bob.send_attachment(a, b"a received file", content_type="text/plain")
    alice.receive()  # a received attachment is referenced in the recipient's mailbox too
    laptop = _admitted_laptop(server, alice)
    loaded = {m.message_id: m for m in laptop.load_all_history()}
    assert sent.message_id in loaded and reply.message_id in loaded
    assert laptop.history_attachment(b, sent.message_id) == photo
    assert laptop.history_attachment(b, reply.message_id) == b"a received file"
    # The server holds the reference under the ORF index only (no attachment id in clear).
    raw = laptop.store.labyrinth_get("orf_state")
    assert raw is not None
    pointer = loaded[sent.message_id].body
    assert isinstance(pointer, AttachmentPointer)
    lab = LabyrinthClient(laptop.server)
    [output] = lab.orf_evaluate([attachments.blind(orf.Scalar(raw), pointer.blob_id)],
                                attachments.SERVER_DOMAIN)
    index = attachments.reference_index(output)
    stored = lab.reference(index)
    assert stored.mac == attachments.deletion_mac(
        laptop.history._stored_keys(output, stored.reference), b, sent.message_id.hex())
    # Deleting the message for everyone deletes its reference (and its record).
    alice.delete_for_everyone(b, sent.message_id)
    with pytest.raises(NotFound):
        lab.reference(index)
    with pytest.raises(HistoryUnavailable):
        laptop.history_attachment(b, sent.message_id)  # the laptop still has the message
    assert laptop.history_attachment(b, reply.message_id) == b"a received file"


def test_a_reference_of_another_message_is_left_alone(server: Server) -> None:
    """The same attachment forwarded in a second message: deleting the first must not delete
    the reference the second now holds (the MAC names the message)."""
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    first = alice.send_attachment(b, b"shared twice", content_type="text/plain")
    assert isinstance(first.body, AttachmentPointer)
    second = alice.send(b, first.body)  # the same blob, forwarded: a new message
    alice.delete_for_everyone(b, first.message_id)
    laptop = _admitted_laptop(server, alice)
    laptop.load_all_history()
    assert laptop.history_attachment(b, second.message_id) == b"shared twice"
    del bob


def test_a_device_restored_with_a_recovery_code_fetches_attachments(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    code = alice.create_recovery_code()
    sent = alice.send_attachment(b, b"before the loss", content_type="text/plain")
    alice.edit(b, alice.send_text(b, "a typo").message_id, "fixed")
    new_phone = server.link(a)
    new_phone.restore_history(code)
    texts = {m.text for m in new_phone.load_all_history()}
    assert "fixed" in texts and "a typo" not in texts
    assert new_phone.history_attachment(b, sent.message_id) == b"before the loss"
    del bob


def test_the_server_and_a_removed_device_cannot_open_attachment_references(
        tmp_path: Path) -> None:
    """A dishonest server records every ORF output it computes (the /orf/evaluate answers)
    and holds every stored reference: it matches outputs to references (the index) but opens
    none, since the keys need an epoch root; a device of the mailbox opens them all. A
    device removed from the mailbox, handed the ORF output of a reference sealed after its
    removal, cannot open it either."""
    import json

    from flask import Response, request

    from e2ee_core.labyrinth import attachments, epochs, primitives
    from e2ee_core.labyrinth.errors import DecryptionFailed, InvalidAttachmentReference
    from e2ee_core.server.app import create_app
    from service_kit.database import Database
    from tests.server.support import FAST_ARGON2, FakeClock, in_process_session

    db = str(tmp_path / "server.db")
    app = create_app({"db": db, "clock": FakeClock(), **FAST_ARGON2})
    outputs: list[bytes] = []

    @app.after_request
    def record(response: Response) -> Response:  # what a dishonest server keeps
        if request.path.endswith("/orf/evaluate") and response.status_code == 200:
            outputs.extend(base64.b64decode(o) for o in json.loads(response.get_data())[
                "outputs"])
        return response

    server = Server("http://e2ee.test", in_process_session(app), db)
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    laptop = _admitted_laptop(server, alice)
    tablet = _admitted_laptop(server, alice)
    alice.send_attachment(b, b"first file", content_type="text/plain")
    bob.send_attachment(a, b"a received file", content_type="text/plain")
    alice.receive()
    alice.remove_device(tablet.device_id)
    after = alice.send_attachment(b, b"after the removal", content_type="text/plain")
    database = Database(db)
    try:
        rows = [(bytes.fromhex(i), bytes(r)) for i, r in database.fetchall(
            "SELECT ref_index, reference FROM labyrinth_attachment_refs WHERE username = ?",
            (a,))]
    finally:
        database.close()
    assert len(rows) == 3
    by_index = {attachments.reference_index(o): o for o in outputs}
    opened = set()
    for index, reference in rows:
        output = by_index[index]  # the server finds each reference's ORF output ...
        sequence_id = attachments.reference_sequence_id(reference)
        # ... but neither version 1's keys nor any root it can make up open the reference
        _, old_key, _ = primitives.kdf(output, None, b"attachment_reference_v1", 32, 32, 32)
        with pytest.raises(DecryptionFailed):
            primitives.decrypt(old_key, reference[:9] + index, reference[9:])
        for root in (bytes(32), output, index):
            with pytest.raises(InvalidAttachmentReference):
                attachments.open_reference(attachments.reference_keys(
                    output, epochs.Epoch(sequence_id, 1, root)), reference)
        # A device of the mailbox, with the epoch roots, opens every one.
        keys = laptop.history._stored_keys(output, reference)
        pointer = Content.decode(attachments.open_reference(keys, reference)).body
        assert isinstance(pointer, AttachmentPointer)
        opened.add(pointer.blob_id)
        if pointer.blob_id == after.body.blob_id:  # type: ignore[union-attr]
            # The removed tablet, handed this output, knows no root of the reference's epoch
            # and none of the roots it has opens it.
            for known in tablet.history._known():
                with pytest.raises(InvalidAttachmentReference):
                    attachments.open_reference(attachments.reference_keys(
                        output, epochs.Epoch(sequence_id, known.epoch.epoch_id,
                                             known.epoch.root_key)), reference)
            assert sequence_id > max(k.epoch.sequence_id for k in tablet.history._known())
    assert len(opened) == 3
    laptop.load_all_history()
    assert laptop.history_attachment(b, after.message_id) == b"after the removal"
