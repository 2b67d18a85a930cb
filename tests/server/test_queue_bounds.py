"""The queue-bytes quota without a pass over the queue: ``queue_bounds`` keeps, per device, a
number never below the bytes queued for it (sends add, nothing subtracts); the queue is summed
only where the bound could refuse a send, and the bound reset to the sum. The decisions must be
exactly those of summing every time (the memory store does), on every engine, concurrently."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.server.errors import QueueFull
from e2ee_core.server.memstore import MemoryStore
from e2ee_core.server.store import SqlStore, Store
from e2ee_core.server.wire import OutgoingEnvelope
from service_kit.database import Database
from tests.server.test_store import LATER, T0, _account

QUOTA = 1_000


def _queued_bytes(store: Store, user: str, device: int) -> int:
    return sum(len(e.content or b"") for e in store.fetch(user, device, T0, 10_000))


def _bound(store: SqlStore, user: str, device: int) -> int | None:
    row = store.db.fetchone("SELECT bytes FROM queue_bounds WHERE username = ? AND "
                            "device_id = ?", (user, device))
    return None if row is None else int(row[0])


def _send(store: Store, sender: str, to: str, size: int) -> bool:
    """One send of ``size`` bytes to ``to``'s device 1: accepted?"""
    try:
        store.submit(sender, 1, to, [OutgoingEnvelope(to, 1, b"x" * size)], now_ms=T0,
                     expires_at_ms=LATER, max_queued_bytes=QUOTA)
    except QueueFull:
        return False
    return True


def test_a_send_does_not_sum_a_long_queue(tmp_path: Path) -> None:
    """With the bound well under the quota, no statement sums the queue (before: every send
    summed the destination queues, 10 ms at 50,000 envelopes)."""
    store = SqlStore(Database(str(tmp_path / "q.db")))
    alice, bob = _account(store), _account(store)
    for _ in range(200):
        store.submit(alice, 1, bob, [OutgoingEnvelope(bob, 1, b"m")], now_ms=T0,
                     expires_at_ms=LATER, max_queued_bytes=1 << 20)
    statements: list[str] = []
    conn = store.db.connection()
    assert isinstance(conn, sqlite3.Connection)
    conn.set_trace_callback(statements.append)
    try:
        store.submit(alice, 1, bob, [OutgoingEnvelope(bob, 1, b"m")], now_ms=T0,
                     expires_at_ms=LATER, max_queued_bytes=1 << 20)
    finally:
        conn.set_trace_callback(None)
    assert statements and not [s for s in statements if "SUM(" in s.upper()]
    assert _bound(store, bob, 1) == 201


def test_the_bound_is_summed_again_only_near_the_quota(db_url: str) -> None:
    """Acknowledged envelopes leave the bound high; a send the bound would refuse sums the
    queue, is accepted if the queue has room, and the bound comes down to the truth."""
    store = SqlStore(Database(db_url))
    alice, bob = _account(store), _account(store)
    assert all(_send(store, alice, bob, 300) for _ in range(3))
    assert not _send(store, alice, bob, 300)  # 1,200 > 1,000: refused, exactly
    first = store.fetch(bob, 1, T0, 10)
    store.acknowledge(bob, 1, [e.id for e in first[:2]])
    assert _bound(store, bob, 1) == 900  # acknowledgements leave it
    assert _send(store, alice, bob, 300)  # 900 + 300 > 1,000 on the bound; 600 in truth
    assert _bound(store, bob, 1) == 600 == _queued_bytes(store, bob, 1)


def test_a_device_older_than_the_bounds_is_summed_once(db_url: str) -> None:
    """A device created before the table existed has no bound: its first send under a quota
    sums its queue and writes the bound; later sends use it."""
    store = SqlStore(Database(db_url))
    alice, bob = _account(store), _account(store)
    store.submit(alice, 1, bob, [OutgoingEnvelope(bob, 1, b"y" * 700)], now_ms=T0,
                 expires_at_ms=LATER)
    store.db.execute("DELETE FROM queue_bounds WHERE username = ?", (bob,))
    assert not _send(store, alice, bob, 400)  # 700 + 400: the sum refuses it
    assert _bound(store, bob, 1) == 700
    assert _send(store, alice, bob, 300)
    assert _bound(store, bob, 1) == 1_000


def test_a_removed_device_takes_its_bound_along(tmp_path: Path) -> None:
    store = SqlStore(Database(str(tmp_path / "r.db")))
    bob = _account(store, devices=2)
    assert _bound(store, bob, 2) == 0
    store.remove_device(bob, 2, now_ms=T0, expires_at_ms=LATER)
    assert _bound(store, bob, 2) is None


_STEPS = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(1, 600)),
    st.tuples(st.just("ack"), st.integers(0, 3)),
), min_size=1, max_size=25)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> SqlStore:
    return SqlStore(Database(str(tmp_path_factory.mktemp("bounds") / "h.db")))


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(steps=_STEPS)
def test_decisions_equal_summing_every_time(shared_store: SqlStore,
                                            steps: list[tuple[str, int]]) -> None:
    """Any interleaving of sends and acknowledgements: the SQL store (bounds) accepts and
    refuses exactly what the memory store (a sum every time) does, and its bound is never
    below the bytes queued."""
    sql, mem = shared_store, MemoryStore()
    pairs = [(s, _account(s), _account(s)) for s in (sql, mem)]
    for kind, n in steps:
        outcomes: list[bool | int] = []
        for store, alice, bob in pairs:
            if kind == "send":
                outcomes.append(_send(store, alice, bob, n))
            else:
                queued = store.fetch(bob, 1, T0, 100)
                store.acknowledge(bob, 1, [e.id for e in queued[:n]])
                outcomes.append(len(queued[:n]))
        assert outcomes[0] == outcomes[1]
        _, _, bob = pairs[0]
        bound = _bound(sql, bob, 1)
        assert bound is not None and bound >= _queued_bytes(sql, bob, 1)


def test_concurrent_senders_keep_the_bound_and_the_quota(db_url: str) -> None:
    """Eight threads sending to the same two devices at once (PostgreSQL: eight connections,
    row locks): no deadlock or lost update: every bound is at least its queue, and no queue
    went over the quota."""
    store = SqlStore(Database(db_url))
    senders = [_account(store) for _ in range(8)]
    bob = _account(store, devices=2)
    errors: list[BaseException] = []

    def run(sender: str) -> None:
        try:
            for _ in range(15):
                try:
                    store.submit(sender, 1, bob, [OutgoingEnvelope(bob, 1, b"a" * 40),
                                                  OutgoingEnvelope(bob, 2, b"b" * 40)],
                                 now_ms=T0, expires_at_ms=LATER, max_queued_bytes=QUOTA)
                except QueueFull:
                    for device in (1, 2):
                        queued = store.fetch(bob, device, T0, 5)
                        store.acknowledge(bob, device, [e.id for e in queued])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    for device in (1, 2):
        queued = _queued_bytes(store, bob, device)
        bound = _bound(store, bob, device)
        assert queued <= QUOTA and bound is not None and bound >= queued
