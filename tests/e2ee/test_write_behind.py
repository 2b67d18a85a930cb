"""``SQLiteProtocolStore.write_behind()``: session records written once, at commit; all or
nothing (see the module docstring of ``e2ee_core/state/sqlite.py``)."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.device import Ciphertext, Device
from e2ee_core.errors import BatchAborted, DuplicateMessage, InvalidMessage
from e2ee_core.state import sqlite as sqlite_state
from e2ee_core.state.sqlite import SQLiteProtocolStore
from e2ee_core.state.stores import Address
from tests.e2ee.helpers import ALICE, BOB, pair_on, snapshot


def _sqlite(device: Device) -> SQLiteProtocolStore:
    store = device.store
    assert isinstance(store, SQLiteProtocolStore)
    return store


class _Statements:
    """Counts the SQL statements one store's connection runs (sqlite3 trace callback)."""

    def __init__(self, store: SQLiteProtocolStore) -> None:
        self.conn: sqlite3.Connection = store.db.connection()
        self.lines: list[str] = []
        self.conn.set_trace_callback(self.lines.append)

    def count(self, word: str) -> int:
        return sum(word in line for line in self.lines)

    def close(self) -> None:
        self.conn.set_trace_callback(None)


def test_a_backlog_writes_its_session_once_and_another_connection_sees_it(
        tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    sent = [alice.encrypt(BOB, b"m%d" % n) for n in range(20)]
    store = _sqlite(bob)
    trace = _Statements(store)
    with store.write_behind():
        opened = []
        for ct in sent:
            with store.savepoint():  # no SQL savepoint inside write_behind()
                opened.append(bob.decrypt(ALICE, ct))
    trace.close()
    assert opened == [b"m%d" % n for n in range(20)]
    assert trace.count("INSERT INTO e2ee_sessions") == 1  # once, at commit (20 before)
    assert trace.count("SAVEPOINT") == 0
    # Committed: another connection finds every message key used.
    other = Device.open(tmp_path / "bob.db")
    for ct in sent:
        with pytest.raises(DuplicateMessage):
            other.decrypt(ALICE, ct)
    assert other.decrypt(ALICE, alice.encrypt(BOB, b"next")) == b"next"


def test_a_failed_step_caught_by_the_caller_aborts_the_whole_batch(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    sent = [alice.encrypt(BOB, b"m%d" % n) for n in range(5)]
    forged = Ciphertext(sent[0].type, sent[0].body[:-1] + bytes([sent[0].body[-1] ^ 1]))
    store = _sqlite(bob)
    before = snapshot(bob)
    with pytest.raises(BatchAborted), store.write_behind():
        for ct in [*sent[:3], forged, *sent[3:]]:
            try:
                with store.savepoint():
                    bob.decrypt(ALICE, ct)
            except InvalidMessage:
                continue  # as a caller that refuses one message and goes on
    assert snapshot(bob) == before  # nothing of the batch committed, cache included
    other = Device.open(tmp_path / "bob.db")
    assert snapshot(other) == before
    # Redone one savepoint per message (what the Messenger's inbox does): all but the forgery.
    with store.atomic():
        opened = []
        for ct in [*sent[:3], forged, *sent[3:]]:
            try:
                with store.savepoint():
                    opened.append(bob.decrypt(ALICE, ct))
            except InvalidMessage:
                continue
    assert opened == [b"m%d" % n for n in range(5)]


def test_an_exception_escaping_rolls_everything_back(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    sent = [alice.encrypt(BOB, b"m%d" % n) for n in range(4)]
    store = _sqlite(bob)
    before = snapshot(bob)
    with pytest.raises(ValueError), store.write_behind():
        for ct in sent:
            bob.decrypt(ALICE, ct)
        raise ValueError("the app failed")
    assert snapshot(bob) == before
    assert [bob.decrypt(ALICE, ct) for ct in sent] == [b"m%d" % n for n in range(4)]


def test_sessions_stored_behind_are_listed_and_survive_a_cache_reset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``session_addresses`` (an SQL read) sees sessions not yet written; a record stored
    behind is written before a full cache is dropped, so a later read in the batch finds it."""
    alice, bob = pair_on(tmp_path / "bob.db")
    carol = Device.create()
    store = _sqlite(bob)
    monkeypatch.setattr(sqlite_state, "_CACHE_MAX", 3)
    with store.write_behind():
        bob.start_session(("carol", 1), carol.prekey_bundle(1))
        assert ("carol", 1) in [tuple(a) for a in store.session_addresses()]
        ct = alice.encrypt(BOB, b"in the batch")
        assert bob.decrypt(ALICE, ct) == b"in the batch"
        stored = store.load_session(Address(*ALICE))
        assert stored is not None
        expected = stored.to_bytes()
        store.store_session(Address(*ALICE), stored)
        for n in range(5):  # reads of other addresses fill the cache past its bound
            store.get_identity(Address(f"x{n}", 1))
        again = store.load_session(Address(*ALICE))
        assert again is not None and again.to_bytes() == expected
    reopened = Device.open(tmp_path / "bob.db").store
    assert ("carol", 1) in [tuple(a) for a in reopened.session_addresses()]
    with pytest.raises(DuplicateMessage):
        Device.open(tmp_path / "bob.db").decrypt(ALICE, ct)


def test_nested_in_a_transaction_it_is_a_plain_atomic(tmp_path: Path) -> None:
    alice, bob = pair_on(tmp_path / "bob.db")
    sent = [alice.encrypt(BOB, b"m%d" % n) for n in range(3)]
    store = _sqlite(bob)
    with store.atomic():
        with store.write_behind():
            bob.decrypt(ALICE, sent[0])
        try:
            with store.savepoint():  # a real savepoint: undone alone
                bob.decrypt(ALICE, sent[1])
                raise ValueError("undo this one")
        except ValueError:
            pass
        bob.decrypt(ALICE, sent[2])
    assert bob.decrypt(ALICE, sent[1]) == b"m1"
    with pytest.raises(DuplicateMessage):
        bob.decrypt(ALICE, sent[0])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(poisoned=st.sets(st.integers(min_value=0, max_value=7), max_size=3))
def test_write_behind_then_savepoints_equals_savepoints_alone(tmp_path: Path,
                                                               poisoned: set[int]) -> None:
    """The inbox's way (write-behind first, one savepoint each if it aborts) ends in the same
    state and plaintexts as savepoints alone, whatever messages are forged."""
    results = []
    for way in ("fast-then-slow", "slow"):
        path = tmp_path / f"{way}-{secrets.token_hex(8)}.db"
        alice, bob = pair_on(path)
        sent = []
        for n in range(8):
            ct = alice.encrypt(BOB, b"m%d" % n)
            if n in poisoned:
                ct = Ciphertext(ct.type, ct.body[:-1] + bytes([ct.body[-1] ^ 1]))
            sent.append(ct)
        store = _sqlite(bob)

        def one_each(store: SQLiteProtocolStore = store, bob: Device = bob,
                     sent: list[Ciphertext] = sent) -> list[bytes]:
            opened = []
            with store.atomic():
                for ct in sent:
                    try:
                        with store.savepoint():
                            opened.append(bob.decrypt(ALICE, ct))
                    except InvalidMessage:
                        continue
            return opened

        if way == "slow":
            opened = one_each()
        else:
            try:
                with store.write_behind():
                    opened = [bob.decrypt(ALICE, ct) for ct in sent]
            except InvalidMessage:
                opened = one_each()
        after = alice.encrypt(BOB, b"after")
        results.append((opened, bob.decrypt(ALICE, after)))
    assert results[0] == results[1]
    assert results[0][0] == [b"m%d" % n for n in range(8) if n not in poisoned]
