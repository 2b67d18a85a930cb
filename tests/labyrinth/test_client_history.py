"""The Messenger's history in the Labyrinth mailbox, against the real delivery server (in
process, over its WSGI app) on SQLite and on PostgreSQL."""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from e2ee_core.client.history import (
    HistoryNotEnabled,
    HistoryPayload,
    HistoryUnavailable,
    InvalidHistoryPayload,
)
from e2ee_core.client.messenger import Messenger
from e2ee_core.labyrinth import attachments, epochs, mailbox, orf
from e2ee_core.labyrinth.consts import RECOVERY_ALPHABET
from e2ee_core.labyrinth.errors import LabyrinthError, RecoveryCodeUncorrectable
from e2ee_core.server.app import create_app
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import LoadQuery, StoredRecord
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, FakeClock, in_process_session

PASSWORD = "correct horse battery"


@dataclass
class Server:
    url: str
    session: requests.Session
    db: str

    def register(self, name: str) -> Messenger:
        return Messenger.register(self.url, name, PASSWORD, session=self.session)

    def link(self, name: str) -> Messenger:
        return Messenger.link(self.url, name, PASSWORD, session=self.session)


def _server(db: str) -> Server:
    app = create_app({"db": db, "clock": FakeClock(), **FAST_ARGON2})
    return Server("http://e2ee.test", in_process_session(app), db)


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Server:
    if request.param == "sqlite":
        return _server(str(tmp_path / "server.db"))
    return _server(request.getfixturevalue("pg_dsn"))


def _names() -> tuple[str, str]:
    tag = secrets.token_hex(4)
    return f"alice{tag}", f"bob{tag}"


def _texts(messenger: Messenger, conversation: str) -> list[str | None]:
    return [m.text for m in messenger.messages(conversation)]


def _chat(alice: Messenger, bob: Messenger, n: int, label: str) -> list[str]:
    sent = []
    for i in range(n):
        text = f"{label} {i} from alice"
        alice.send_text(bob.username, text)
        bob.send_text(alice.username, f"{label} {i} from bob")
        sent += [text, f"{label} {i} from bob"]
    alice.receive()
    bob.receive()
    return sent


def test_a_linked_device_loads_the_whole_history(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    assert alice.enable_history()
    sent = _chat(alice, bob, 3, "before the link")
    laptop = server.link(a)
    assert not laptop.enable_history()  # keys published; waits for an enabled device
    laptop.send_text(b, "from the laptop, before it is admitted")  # queued, not lost
    assert laptop.store.history_queue_length() == 1
    alice.receive()  # sees the new device and admits it (a new epoch with a join message)
    laptop.maintain_history()
    assert laptop.store.history_queue_length() == 0
    assert {m.text for m in laptop.load_all_history()} >= set(sent)
    # The join also handed the laptop an ORF state: both devices map an attachment id alike.
    outputs = []
    for device in (alice, laptop):
        raw = device.store.labyrinth_get("orf_state")
        assert raw is not None
        blinded = attachments.blind(orf.Scalar(raw), b"cdn/blob/1")
        outputs.append(LabyrinthClient(device.server).orf_evaluate(
            [blinded], attachments.SERVER_DOMAIN))
    assert outputs[0] == outputs[1]
    bob.receive()
    alice.receive()
    # The queued message is in the mailbox too: a fresh device sees it.
    phone = server.link(a)
    phone.enable_history()
    alice.receive()
    texts = {m.text for m in phone.load_all_history()}
    assert "from the laptop, before it is admitted" in texts and set(sent) <= texts


def test_older_pages_and_a_failed_load_leaves_state_unchanged(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    sent = _chat(alice, bob, 4, "page")
    laptop = server.link(a)
    laptop.enable_history()
    alice.receive()
    first = laptop.load_history(b, limit=3)
    assert [m.text for m in first] == sent[-3:]  # the newest three, stored oldest first
    # The server hands the laptop a forged record in the next page.
    lab = LabyrinthClient(alice.server)
    genuine = next(r for r in lab.iter_records(LoadQuery(thread_id=b))
                   if r.message_id == sent_id(alice, b, sent[0]))
    forged = StoredRecord(genuine.inbox_id, genuine.thread_id, genuine.message_id,
                          genuine.timestamp, genuine.epoch_id, genuine.version,
                          genuine.blob[:-1] + bytes([genuine.blob[-1] ^ 1]))
    lab.save([forged])
    before = (_texts(laptop, b), laptop.store.labyrinth_get(f"cursor:{b}"))
    with pytest.raises(HistoryUnavailable):
        laptop.load_history(b, limit=10)
    assert (_texts(laptop, b), laptop.store.labyrinth_get(f"cursor:{b}")) == before
    lab.save([genuine])
    rest = laptop.load_history(b, limit=10)
    assert [m.text for m in rest] == sent[:-3]
    assert _texts(laptop, b) == sent[-3:] + sent[:-3]
    assert laptop.load_history(b) == []


def sent_id(messenger: Messenger, conversation: str, text: str) -> str:
    return next(m.message_id.hex() for m in messenger.messages(conversation) if m.text == text)


def _typo(code: str, positions: list[int]) -> str:
    chars = [c for c in code if c != "-"]
    for p in positions:
        chars[p] = RECOVERY_ALPHABET[(RECOVERY_ALPHABET.index(chars[p]) + 5) % 32]
    return "".join(chars)


def test_restore_with_a_recovery_code_reads_everything(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    sent = _chat(alice, bob, 2, "before the code")
    code = alice.create_recovery_code()
    sent += _chat(alice, bob, 2, "after the code")
    laptop = server.link(a)
    laptop.enable_history()
    alice.receive()  # an epoch opened after the code was made: the code must chain forward
    alice.remove_device(laptop.device_id)  # and another one
    sent += _chat(alice, bob, 1, "after the removal")
    new_phone = server.link(a)
    with pytest.raises(RecoveryCodeUncorrectable):
        new_phone.restore_history(_typo(code, [4, 11, 19, 30]))
    assert new_phone.store.labyrinth_epochs() == []
    assert new_phone.restore_history(_typo(code, [4, 11, 19])) == 3  # first, join, removal
    assert {m.text for m in new_phone.load_all_history()} == set(sent)
    # Now a member: what it sends is saved and readable by the others.
    new_phone.send_text(b, "from the restored phone")
    assert new_phone.store.history_queue_length() == 0


def test_a_removed_device_cannot_read_what_is_saved_after(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    laptop = server.link(a)
    laptop.enable_history()
    alice.receive()
    laptop.maintain_history()
    _chat(alice, bob, 1, "before")
    laptop_epochs = laptop.history._known()
    alice.remove_device(laptop.device_id)
    alice.send_text(b, "after the revocation")
    # The server hands the removed laptop every record and every entropy message.
    lab = LabyrinthClient(alice.server)
    records = list(lab.iter_records(LoadQuery()))
    newest = max(records, key=lambda r: r.timestamp)
    for known in laptop_epochs:
        with pytest.raises(LabyrinthError):
            mailbox.open_record(epochs.Epoch(known.epoch.sequence_id, newest.epoch_id,
                                             known.epoch.root_key), mailbox.MailboxRecord(
                newest.inbox_id, newest.thread_id, newest.message_id, newest.timestamp,
                newest.epoch_id, newest.version, newest.blob))
    assert newest.epoch_id not in {k.epoch.epoch_id for k in laptop_epochs}
    newest_epoch = lab.epoch()
    db = Database(server.db)
    try:
        rows = db.fetchall("SELECT member, entropy_message FROM labyrinth_epoch_members WHERE "
                           "username = ? AND epoch_id = ?", (a, newest_epoch.epoch_id))
    finally:
        db.close()
    assert f"d{laptop.device_id}" not in {r[0] for r in rows}  # nothing addressed to it
    keys, _ = laptop.history._keys()
    for _, message in rows:
        with pytest.raises(LabyrinthError):
            epochs.receive_epoch_entropy(
                laptop_epochs[-1].epoch, bytes(message), storage_pub=keys.storage_pub,
                storage_priv=keys.storage_priv,
                sender_device_key_pub=newest_epoch.opener_keys.device_key_pub,
                sender_auth_pub=newest_epoch.opener_keys.auth_key_pub,
                sender_auth_sig=newest_epoch.opener_keys.auth_key_sig)


def test_a_forked_epoch_chain_is_detected_on_restore(tmp_path: Path) -> None:
    server = _server(str(tmp_path / "server.db"))
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    _chat(alice, bob, 1, "x")
    laptop = server.link(a)
    laptop.enable_history()
    alice.receive()
    code = alice.create_recovery_code()
    # A dishonest server swaps the first epoch's head for the second's.
    with sqlite3.connect(server.db) as db:
        rows = db.execute("SELECT sequence_id, head FROM labyrinth_epochs WHERE username = ? "
                          "ORDER BY sequence_id", (a,)).fetchall()
        db.execute("UPDATE labyrinth_epochs SET head = ? WHERE username = ? AND "
                   "sequence_id = 0", (rows[1][1], a))
    new_phone = server.link(a)
    with pytest.raises(LabyrinthError):
        new_phone.restore_history(code)
    assert new_phone.store.labyrinth_epochs() == []


def test_no_plaintext_in_the_server_database(tmp_path: Path) -> None:
    server = _server(str(tmp_path / "server.db"))
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    secret = f"the launch code is {secrets.token_hex(8)}"
    alice.send_text(b, secret)
    bob.send_text(a, secret + " (reply)")
    alice.receive()
    code = alice.create_recovery_code()
    assert LabyrinthClient(alice.server).load().records
    for path in tmp_path.glob("server.db*"):
        data = path.read_bytes()
        assert secret.encode() not in data
        assert code.replace("-", "").encode() not in data


def test_history_is_off_until_enabled(tmp_path: Path) -> None:
    server = _server(str(tmp_path / "server.db"))
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.send_text(b, "not saved")
    assert alice.store.history_queue_length() == 0
    assert LabyrinthClient(alice.server).load().records == ()
    with pytest.raises(HistoryNotEnabled):
        alice.load_history(b)
    del bob


Check = Callable[[bytes], None]


def test_payload_round_trip_and_strictness() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from e2ee_core.content import Content, Text

    payload = HistoryPayload("alice", 2, True, Content.new(Text("hi"), sent_at_ms=5))
    assert HistoryPayload.decode(payload.encode()) == payload
    for bad in (b"", b"\x03" + payload.encode()[1:], payload.encode()[:8]):
        with pytest.raises(InvalidHistoryPayload):
            HistoryPayload.decode(bad)

    @given(st.binary(max_size=300))
    def decode_any(data: bytes) -> None:
        try:
            HistoryPayload.decode(data)
        except InvalidHistoryPayload:
            pass

    decode_any()


def test_a_removal_by_another_device_is_honoured_once_known(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    laptop, tablet = server.link(a), server.link(a)
    laptop.enable_history()
    tablet.enable_history()
    alice.receive()  # admits both
    laptop.maintain_history()
    alice.send_text(b, "before")  # alice has checked the epoch: the check is now cached
    laptop.remove_device(tablet.device_id)  # the laptop opens an epoch without the tablet
    newest = LabyrinthClient(laptop.server).epoch()
    alice.receive()  # the removal notice: alice's device set changed
    alice.send_text(b, "after the tablet's removal")
    lab = LabyrinthClient(alice.server)
    [record] = [r for r in lab.iter_records(LoadQuery(thread_id=b))
                if r.message_id == sent_id(alice, b, "after the tablet's removal")]
    assert record.epoch_id == newest.epoch_id
    assert f"d{tablet.device_id}" not in {m.member for m in lab.members()}
    del bob


def test_late_enabled_devices_are_admitted_and_removed_openers_do_not_block_restores(
        server: Server) -> None:
    a, b = _names()
    now = [1_800_000_000_000]
    alice = Messenger.register(server.url, a, PASSWORD, session=server.session,
                               clock=lambda: now[0])
    bob = server.register(b)
    alice.enable_history()
    code = alice.create_recovery_code()
    laptop, tablet = server.link(a), server.link(a)
    laptop.enable_history()
    alice.receive()  # the new devices: the laptop is admitted, the tablet has no keys yet
    tablet.enable_history()
    alice.send_text(b, "one")
    assert not tablet.history.sync()  # alice checked a moment ago: not yet
    now[0] += 61_000
    alice.receive()  # a minute later the pending device is checked again
    assert tablet.history.sync()
    laptop.maintain_history()
    laptop.remove_device(tablet.device_id)  # an epoch opened by the laptop...
    laptop.send_text(b, "two")
    alice.receive()
    alice.remove_device(laptop.device_id)  # ... which is then removed itself
    alice.send_text(b, "three")
    new_phone = server.link(a)
    assert new_phone.restore_history(code) == 5
    assert {"one", "two", "three"} <= {m.text for m in new_phone.load_all_history()}
    del bob


def test_deleting_for_everyone_removes_the_record(server: Server) -> None:
    a, b = _names()
    alice, bob = server.register(a), server.register(b)
    alice.enable_history()
    kept = alice.send_text(b, "kept")
    gone = alice.send_text(b, "deleted for everyone")
    alice.delete_for_everyone(b, gone.message_id)
    ids = {r.message_id for r in LabyrinthClient(alice.server).iter_records(LoadQuery())}
    assert kept.message_id.hex() in ids and gone.message_id.hex() not in ids
    laptop = server.link(a)
    laptop.enable_history()
    alice.receive()
    assert [m.text for m in laptop.load_all_history()] == ["kept"]
    del bob
