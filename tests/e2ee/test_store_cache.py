"""The SQLite store's read cache and the last-resort KEM replay guard.

The cache (see ``e2ee_core/state/sqlite.py``) must never serve a record another connection has
changed, nor one a rolled-back transaction wrote; the replay guard must refuse a PreKey message
that reuses a base key with the last-resort KEM prekey even after its session is gone.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.device import Ciphertext, Device, MessageType
from e2ee_core.errors import DuplicateMessage, E2EEError, InvalidMac, ReusedBaseKey
from e2ee_core.protocol import consts
from e2ee_core.protocol.messages import PreKeySignalMessage, SignalMessage
from e2ee_core.state.memory import InMemoryProtocolStore
from e2ee_core.state.sqlite import SQLiteProtocolStore
from e2ee_core.state.stores import ProtocolStore
from service_kit.database import Database
from tests.e2ee.helpers import ALICE, BOB, pair_on, snapshot


def _key_of(ct: Ciphertext) -> tuple[bytes, int]:
    body = ct.body
    message = (PreKeySignalMessage.from_bytes(body).message if ct.type == MessageType.PREKEY
               else SignalMessage.from_bytes(body))
    return message.ratchet_key.raw, message.counter


def test_two_connections_in_one_process_never_share_a_message_key(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    other = Device.open(tmp_path / "bob.db")  # its own Database: another SQLite connection
    sent = []
    for n in range(30):
        sender = (bob, other)[n % 3 == 0]
        sent.append(sender.encrypt(ALICE, b"m%d" % n))
    assert len({_key_of(ct) for ct in sent}) == len(sent)
    assert [alice.decrypt(BOB, ct) for ct in sent] == [b"m%d" % n for n in range(30)]
    # Receiving alternately through both connections: each sees the other's progress.
    for n in range(10):
        ct = alice.encrypt(BOB, b"r%d" % n)
        assert (bob, other)[n % 2].decrypt(ALICE, ct) == b"r%d" % n
        with pytest.raises(DuplicateMessage):
            (bob, other)[(n + 1) % 2].decrypt(ALICE, ct)


def test_two_stores_on_one_database_share_the_cache(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    db: Database = bob.store.db  # type: ignore[attr-defined]
    twin = Device(SQLiteProtocolStore(db))  # same connection: data_version cannot tell them
    sent = [(bob, twin)[n % 2].encrypt(ALICE, b"t%d" % n) for n in range(10)]
    assert len({_key_of(ct) for ct in sent}) == 10
    assert [alice.decrypt(BOB, ct) for ct in sent] == [b"t%d" % n for n in range(10)]


def test_outer_transaction_rolled_back_leaves_no_stale_cache(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    db: Database = bob.store.db  # type: ignore[attr-defined]
    committed = bob.encrypt(ALICE, b"kept")
    with pytest.raises(RuntimeError), db.transaction():  # e.g. an app's own transaction
        lost = bob.encrypt(ALICE, b"rolled back")
        raise RuntimeError("app failure")
    again = bob.encrypt(ALICE, b"after")
    assert _key_of(again) == _key_of(lost)  # the file's state, not the cache's
    assert alice.decrypt(BOB, committed) == b"kept"
    assert alice.decrypt(BOB, again) == b"after"


def test_failed_decrypt_after_cached_reads_changes_nothing(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    ct = alice.encrypt(BOB, b"x")
    bad = Ciphertext(ct.type, ct.body[:-1] + bytes([ct.body[-1] ^ 1]))
    before = snapshot(bob)
    with pytest.raises(InvalidMac):
        bob.decrypt(ALICE, bad)
    assert snapshot(bob) == before
    reopened = Device.open(tmp_path / "bob.db")
    assert reopened.decrypt(ALICE, ct) == b"x"
    with pytest.raises(DuplicateMessage):
        bob.decrypt(ALICE, ct)  # bob's cache saw the other connection's commit


# -- last-resort KEM prekey replays ------------------------------------------------------------

@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ProtocolStore:
    if request.param == "memory":
        return InMemoryProtocolStore()
    return SQLiteProtocolStore(tmp_path / "bob.db")


def test_replayed_last_resort_prekey_message_is_refused_after_its_session_is_gone(
        store: ProtocolStore) -> None:
    bob = Device.create(store)
    alice = Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1, one_time=False))  # last-resort KEM only
    assert alice.session_version(BOB) == consts.VERSION_PQXDH
    first, second = alice.encrypt(BOB, b"1"), alice.encrypt(BOB, b"2")
    assert bob.decrypt(ALICE, first) == b"1"
    assert bob.decrypt(ALICE, second) == b"2"  # same base key, session in the record: fine
    bob.delete_session(ALICE)
    before = snapshot(bob)
    for replay in (first, second):
        with pytest.raises(ReusedBaseKey):
            bob.decrypt(ALICE, replay)
        assert snapshot(bob) == before
    # From another address too: the pair is (KEM prekey, signed prekey, base key).
    with pytest.raises(ReusedBaseKey):
        bob.decrypt(("mallory", 1), first)
    # Fresh sessions with the same last-resort key still work.
    carol = Device.create()
    carol.start_session(BOB, bob.prekey_bundle(1, one_time=False))
    assert bob.decrypt(("carol", 1), carol.encrypt(BOB, b"c")) == b"c"
    alice.start_session(BOB, bob.prekey_bundle(1, one_time=False))
    assert bob.decrypt(ALICE, alice.encrypt(BOB, b"new")) == b"new"


def test_replay_guard_is_a_duplicate_and_lives_as_long_as_the_kem_key(
        store: ProtocolStore) -> None:
    assert issubclass(ReusedBaseKey, DuplicateMessage)  # apps drop it like any duplicate
    bob = Device.create(store, now=0)
    key_id = bob.last_resort_kyber_pre_key().id
    base = b"\x05" + bytes(range(32))
    assert store.mark_kyber_pre_key_used(key_id, 1, base)
    assert not store.mark_kyber_pre_key_used(key_id, 1, base)
    assert store.mark_kyber_pre_key_used(key_id, 2, base)  # another signed prekey
    # Rotation: once the old last-resort key is dropped, so is what was recorded for it.
    for step in range(1, 5):
        bob.ensure_last_resort_kyber_pre_key(now=step * consts.SIGNED_PREKEY_GRACE_SECONDS)
    assert key_id not in [r.id for r in store.kyber_pre_keys()]
    assert store.mark_kyber_pre_key_used(key_id, 1, base)


def test_threads_of_one_device_never_share_a_message_key(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    sent: list[Ciphertext] = []
    rounds = threading.Barrier(3)

    def send(tag: int) -> None:
        for n in range(25):  # each thread has its own connection, hence its own cache
            rounds.wait()  # interleave: every thread's cache is outdated by the others
            sent.append(bob.encrypt(ALICE, b"%d-%d" % (tag, n)))

    workers = [threading.Thread(target=send, args=(tag,)) for tag in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len({_key_of(ct) for ct in sent}) == 75
    assert sorted(alice.decrypt(BOB, ct) for ct in sent) == sorted(
        b"%d-%d" % (t, n) for t in range(3) for n in range(25))


def test_reads_outside_a_transaction_see_other_connections_writes(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    other = Device.open(tmp_path / "bob.db")
    assert bob.has_session(ALICE) and bob.session_version(ALICE) == consts.VERSION_PQXDH
    assert bob.remote_identity(ALICE) == alice.identity_key
    carol = Device.create()
    other.trust_identity(ALICE, carol.identity_key)  # another connection changes both rows
    assert bob.remote_identity(ALICE) == carol.identity_key
    assert not bob.has_session(ALICE)  # archived by trust_identity on the other connection
    other.delete_session(ALICE)
    assert not bob.has_session(ALICE)


_SQLITE_PAIR: dict[str, object] = {}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_failed_decrypts_on_sqlite_never_leave_the_cache_ahead_of_the_file(
        data: st.DataObject) -> None:
    if not _SQLITE_PAIR:
        path = Path(tempfile.mkdtemp()) / "bob.db"
        alice, bob = pair_on(path)
        _SQLITE_PAIR.update(alice=alice, bob=bob, path=path)
    alice, bob = _SQLITE_PAIR["alice"], _SQLITE_PAIR["bob"]
    assert isinstance(alice, Device) and isinstance(bob, Device)
    ct = alice.encrypt(BOB, b"p")
    body = bytearray(ct.body)
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] ^= 1 << data.draw(st.integers(0, 7))
    before = snapshot(bob)
    try:
        bob.decrypt(ALICE, Ciphertext(ct.type, bytes(body)))
    except E2EEError:
        assert snapshot(bob) == before
    else:  # a flip outside the MAC'd bytes that protobuf ignores: it decrypted
        return
    # The cache agrees with the file: a fresh connection and bob both take the genuine one.
    fresh = Device.open(_SQLITE_PAIR["path"])  # type: ignore[arg-type]
    assert fresh.store.load_session(ALICE).to_bytes() \
        == bob.store.load_session(ALICE).to_bytes()  # type: ignore[union-attr]
    fresh.store.close()  # type: ignore[attr-defined]
    assert bob.decrypt(ALICE, ct) == b"p"


@pytest.mark.postgres
def test_the_store_on_postgresql_runs_sessions_without_the_cache(pg_dsn: str) -> None:
    store = SQLiteProtocolStore(Database(pg_dsn))  # same SQL; PostgreSQL transactions
    bob, alice = Device.create(store), Device.create()
    alice.start_session(BOB, bob.prekey_bundle(1, one_time=False))
    first = alice.encrypt(BOB, b"1")
    assert bob.decrypt(ALICE, first) == b"1"
    assert alice.decrypt(BOB, bob.encrypt(ALICE, b"2")) == b"2"
    for n in range(5):
        assert bob.decrypt(ALICE, alice.encrypt(BOB, b"%d" % n)) == b"%d" % n
    bob.delete_session(ALICE)
    with pytest.raises(ReusedBaseKey):
        bob.decrypt(ALICE, first)
    assert not bob.has_session(ALICE)


def test_a_failed_savepoint_is_undone_alone_and_the_batch_commits_once(tmp_path: Path) -> None:
    """A backlog decrypted in one transaction: the message whose step fails after the ratchet
    moved is undone alone (its key is not burnt, the cache forgets what it held), the others
    commit together, and a second connection sees the committed state."""
    alice, bob = pair_on(tmp_path / "bob.db")
    sent = [alice.encrypt(BOB, b"m%d" % n) for n in range(6)]
    store = bob.store
    assert isinstance(store, SQLiteProtocolStore)
    opened: list[bytes] = []
    with store.atomic():
        for n, ct in enumerate(sent):
            try:
                with store.savepoint():
                    plaintext = bob.decrypt(ALICE, ct)
                    if n == 2:
                        raise ValueError("the app could not store it")
                    opened.append(plaintext)
            except ValueError:
                continue
    assert opened == [b"m0", b"m1", b"m3", b"m4", b"m5"]
    # m2 was undone: its message key is still there, for this connection and another one.
    other = Device.open(tmp_path / "bob.db")
    assert other.decrypt(ALICE, sent[2]) == b"m2"
    with pytest.raises(DuplicateMessage):
        bob.decrypt(ALICE, sent[2])
    with pytest.raises(DuplicateMessage):
        other.decrypt(ALICE, sent[4])


def test_a_savepoint_outside_a_transaction_is_one(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    ct = alice.encrypt(BOB, b"once")
    store = bob.store
    assert isinstance(store, SQLiteProtocolStore)
    with pytest.raises(ValueError), store.savepoint():
        bob.decrypt(ALICE, ct)
        raise ValueError("undo")
    assert bob.decrypt(ALICE, ct) == b"once"
