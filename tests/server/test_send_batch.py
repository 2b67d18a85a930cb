"""Sends group-committed: the push channel gathers the sends of its connections while one store
transaction runs and writes them in the next (``SendBatcher`` → ``DeliveryService.send_batch``
→ ``Store.submit_batch``). Each send is accepted or refused on its own, exactly as if alone;
a batch whose transaction fails is retried one send at a time. On every store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from e2ee_core.server.errors import MismatchedDevices, NotFound, QueueFull, RateLimited
from e2ee_core.server.memstore import MemoryStore
from e2ee_core.server.push import SendBatcher
from e2ee_core.server.service import DeliveryService, Settings
from e2ee_core.server.store import EventLimit, SqlStore, Store, Submission
from e2ee_core.server.wire import (
    AccountRequest,
    DeviceAddress,
    OutgoingEnvelope,
    SendRequest,
)
from service_kit.database import Database
from service_kit.errors import DatabaseError
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, unique_name
from tests.server.test_store import LATER, T0, _account


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres",
                                                         marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return MemoryStore()
    db = str(tmp_path / "s.db") if request.param == "sqlite" else \
        request.getfixturevalue("pg_dsn")
    return SqlStore(Database(db))


def test_each_send_of_a_batch_stands_alone(store: Store) -> None:
    """Accepted, refused for its device set, for an unknown recipient, over the send limit and
    over the queue quota, in one batch: each gets what it would alone, the accepted ones'
    envelopes are queued under the returned ids, and a later send in the batch sees the
    bytes an earlier one queued."""
    alice, bob, carol = _account(store), _account(store, devices=2), _account(store)
    limited = EventLimit("sends:" + carol, 60_000, 1)

    def to(recipient: str, *devices: int, content: bytes = b"m") -> tuple[OutgoingEnvelope, ...]:
        return tuple(OutgoingEnvelope(recipient, d, content) for d in devices)

    results = store.submit_batch([
        Submission(alice, 1, (bob,), to(bob, 1, 2), LATER),
        Submission(alice, 1, (bob,), to(bob, 1), LATER),  # bob's device 2 missing
        Submission(alice, 1, ("nobody-" + bob,), to(bob, 1), LATER),
        Submission(carol, 1, (alice,), to(alice, 1), LATER, limited),
        Submission(carol, 1, (alice,), to(alice, 1), LATER, limited),  # the second: over
        Submission(carol, 1, (bob,), to(bob, 1, 2, content=b"x" * 600), LATER),
        Submission(alice, 1, (bob,), to(bob, 1, 2, content=b"y" * 500), LATER),  # quota
        Submission(alice, 1, (bob,), to(bob, 1, 2, content=b"z" * 10), LATER),
    ], now_ms=T0, max_queued_bytes=1_000)
    assert isinstance(results[1], MismatchedDevices)
    assert isinstance(results[2], NotFound)
    assert isinstance(results[4], RateLimited)
    assert isinstance(results[6], QueueFull)  # 1 + 600 + 500 > 1,000 on bob's devices
    accepted = [r for i, r in enumerate(results) if i in (0, 3, 5, 7)]
    assert all(isinstance(r, list) and len(r) in (1, 2) for r in accepted)
    queued = {d: [(e.id, e.content) for e in store.fetch(bob, d, T0, 100)] for d in (1, 2)}
    assert queued == {d: [(r[d - 1], c) for r, c in zip(  # type: ignore[index]
        (results[0], results[5], results[7]), (b"m", b"x" * 600, b"z" * 10), strict=True)]
        for d in (1, 2)}
    assert [(e.id, e.content) for e in store.fetch(alice, 1, T0, 100)] == [
        (results[3][0], b"m")]  # type: ignore[index]


def test_a_failed_batch_is_retried_one_send_at_a_time(tmp_path: Path) -> None:
    """A batch whose transaction fails (the database refusing one send's write) is written
    again send by send: the others are stored, the failing one gets its own error."""
    store = SqlStore(Database(str(tmp_path / "f.db")))
    service = DeliveryService(store, Settings.from_mapping(FAST_ARGON2))
    users = [service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
             for _ in range(4)]
    poisoned = users[1].username
    real = store._write_envelopes
    calls: list[int] = []

    def failing(tx: Any, submissions: list[Submission], **kwargs: Any) -> list[list[int]]:
        calls.append(len(submissions))
        if any(sub.sender == poisoned for sub in submissions):
            raise DatabaseError("disk I/O error")
        return real(tx, submissions, **kwargs)

    store._write_envelopes = failing  # type: ignore[method-assign, assignment]
    target = users[3].username
    sends = [(DeviceAddress(u.username, 1),
              SendRequest(target, (OutgoingEnvelope(target, 1, u.username.encode()),)))
             for u in users[:3]]
    results = service.send_batch(sends)
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], DatabaseError)
    assert [e.content for e in service.queued(DeviceAddress(target, 1), 10)] == [
        users[0].username.encode(), users[2].username.encode()]
    assert calls == [3, 1, 1, 1]  # the batch, then each send alone


def test_sends_of_many_connections_share_transactions(tmp_path: Path) -> None:
    """20 devices sending at once over the push channel take far fewer than 20 store
    transactions, and each gets its own answer."""
    service = DeliveryService(SqlStore(Database(str(tmp_path / "b.db"))),
                              Settings.from_mapping(FAST_ARGON2))
    target = service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
    senders = [service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
               for _ in range(20)]
    calls: list[int] = []
    real = service.send_batch

    def counted(sends: Any) -> list[int | Exception]:
        calls.append(len(sends))
        return real(sends)

    service.send_batch = counted  # type: ignore[method-assign]
    to = target.username

    async def all_at_once() -> list[int | BaseException]:
        batcher = SendBatcher(service)
        return await asyncio.gather(*(batcher.send(
            DeviceAddress(s.username, 1),
            SendRequest(to, (OutgoingEnvelope(to, 1 if i else 9, b"%d" % i),)))
            for i, s in enumerate(senders)), return_exceptions=True)

    answers = asyncio.run(all_at_once())
    assert isinstance(answers[0], MismatchedDevices) and answers[1:] == [1] * 19
    assert sum(calls) == 20 and len(calls) < 5
    assert len(service.queued(DeviceAddress(to, 1), 100)) == 19


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_submit_multi_is_a_batch_of_one(kind: str, tmp_path: Path) -> None:
    """The single send and the batch are one code path: the same refusals, the same ids."""
    store: Store = MemoryStore() if kind == "memory" else SqlStore(
        Database(str(tmp_path / "one.db")))
    alice, bob = _account(store), _account(store)
    ids = store.submit_multi(alice, 1, [bob], [OutgoingEnvelope(bob, 1, b"a")], now_ms=T0,
                             expires_at_ms=LATER)
    assert [e.id for e in store.fetch(bob, 1, T0, 10)] == ids
    with pytest.raises(MismatchedDevices):
        store.submit_multi(alice, 1, [bob], [], now_ms=T0, expires_at_ms=LATER)

