"""The SQL sender-key store on SQLite and PostgreSQL: persistence, atomicity, one use per key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2ee_core.content import Content, Text
from e2ee_core.groups import (
    DuplicateGroupMessage,
    Group,
    GroupError,
    InvalidSenderKeySignature,
    NoSenderKeyState,
    SenderAddress,
    SenderKeyStore,
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)
from e2ee_core.groups.sql_store import SqlSenderKeyStore

DIST = bytes(range(16))
ALICE = SenderAddress("alice", 1)
BOB = SenderAddress("bob", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A factory: ``make_store(name)`` opens (or reopens) the store of local device ``name``;
    all of a test's stores share one database, told apart by ``owner``."""
    if request.param == "sqlite":
        target = str(tmp_path / "keys.db")
    else:
        target = request.getfixturevalue("pg_dsn")
    test = request.node.name
    yield lambda name: SqlSenderKeyStore(target, owner=f"{test}/{name}")


def _pair(make_store: object) -> tuple[SqlSenderKeyStore, SqlSenderKeyStore]:
    alice, bob = make_store("alice"), make_store("bob")  # type: ignore[operator]
    process_sender_key_distribution_message(
        bob, ALICE, create_sender_key_distribution_message(alice, ALICE, DIST))
    return alice, bob


def _record_bytes(store: SqlSenderKeyStore, sender: SenderAddress) -> bytes | None:
    record = store.load_sender_key(sender, DIST)
    return None if record is None else record.encode()


def test_the_sql_store_satisfies_the_protocol(make_store: object) -> None:
    assert isinstance(make_store("x"), SenderKeyStore)  # type: ignore[operator]


def test_state_survives_reopening_the_store(make_store: object) -> None:
    alice, bob = _pair(make_store)
    first = group_encrypt(alice, ALICE, DIST, b"one")
    assert group_decrypt(bob, ALICE, first) == b"one"
    alice, bob = make_store("alice"), make_store("bob")  # type: ignore[operator]
    second = group_encrypt(alice, ALICE, DIST, b"two")
    assert group_decrypt(bob, ALICE, second) == b"two"
    with pytest.raises(DuplicateGroupMessage):
        group_decrypt(bob, ALICE, first)


def test_failed_decryptions_and_aborted_transactions_change_nothing(make_store: object) -> None:
    alice, bob = _pair(make_store)
    wire = group_encrypt(alice, ALICE, DIST, b"payload")
    before = _record_bytes(bob, ALICE)
    tampered = wire[:-1] + bytes([wire[-1] ^ 1])
    with pytest.raises(InvalidSenderKeySignature):
        group_decrypt(bob, ALICE, tampered)
    assert _record_bytes(bob, ALICE) == before
    with pytest.raises(RuntimeError), bob.atomic():
        assert group_decrypt(bob, ALICE, wire) == b"payload"
        raise RuntimeError("crash after decrypting, before commit")
    assert _record_bytes(bob, ALICE) == before
    assert group_decrypt(bob, ALICE, wire) == b"payload"
    sender_before = _record_bytes(alice, ALICE)
    with pytest.raises(RuntimeError), alice.atomic():
        group_encrypt(alice, ALICE, DIST, b"never committed")
        raise RuntimeError("crash")
    assert _record_bytes(alice, ALICE) == sender_before


def test_concurrent_decryptions_of_one_message_use_the_key_once(make_store: object) -> None:
    alice, bob = _pair(make_store)
    wire = group_encrypt(alice, ALICE, DIST, b"exactly once")
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        store = make_store("bob")  # type: ignore[operator]
        try:
            group_decrypt(store, ALICE, wire)
            outcome = "ok"
        except DuplicateGroupMessage:
            outcome = "duplicate"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["duplicate"] * 5 + ["ok"]
    del bob


def test_a_group_on_sql_stores_re_keys_on_removal(make_store: object) -> None:
    now = [1_000]

    def clock() -> int:
        now[0] += 1
        return now[0]

    stores = {name: make_store(name) for name in ("a", "b", "c")}  # type: ignore[operator]
    groups: dict[str, Group] = {}
    groups["a"], outgoing = Group.create(SenderAddress("a", 1), ["b", "c"], stores["a"],
                                         clock=clock)
    queue = [("a", item) for item in outgoing]
    while queue:
        origin, item = queue.pop(0)
        for name in sorted(item.recipients - {origin}):
            content = Content.decode(item.content.encode())
            if name not in groups:
                groups[name], more = Group.join(SenderAddress(name, 1), SenderAddress(origin, 1),
                                                content, stores[name], clock=clock)
            else:
                more = groups[name].handle(SenderAddress(origin, 1), content)
            queue.extend((name, m) for m in more)
    queue = [("a", item) for item in groups["a"].remove_members(["c"])]
    while queue:
        origin, item = queue.pop(0)
        for name in sorted(item.recipients - {origin}):
            more = groups[name].handle(SenderAddress(origin, 1), Content.decode(
                item.content.encode()))
            queue.extend((name, m) for m in more)
    wire = groups["b"].encrypt(Content.new(Text("c is gone"), sent_at_ms=clock(),
                                           group_id=groups["b"].group_id))
    assert groups["a"].decrypt(SenderAddress("b", 1), wire).body == Text("c is gone")
    with pytest.raises(GroupError):
        groups["c"].decrypt(SenderAddress("b", 1), wire)
    with pytest.raises(NoSenderKeyState):
        group_decrypt(stores["c"], SenderAddress("b", 1), wire)
