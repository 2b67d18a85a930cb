"""The SQL store on SQLite and PostgreSQL: device ids, prekey consumption (also under
concurrency), the exact-device-set check, queues, acknowledgement and expiry."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from e2ee_core.server.errors import (
    AccountExists,
    MismatchedDevices,
    NotFound,
    QueueFull,
    RateLimited,
    TooManyDevices,
    TooManyPreKeys,
)
from e2ee_core.server.memstore import MemoryStore
from e2ee_core.server.store import EventLimit, SqlStore, Store
from e2ee_core.server.wire import Acknowledgement, OutgoingEnvelope, PreKey, PreKeyUpload
from service_kit.database import Database
from tests.server.support import device_keys, unique_name

T0 = 1_800_000_000_000
LATER = T0 + 3_600_000


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres",
                                                         marks=pytest.mark.postgres)])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Store]:
    """Builds the store under test: SqlStore on SQLite and PostgreSQL, and MemoryStore."""
    if request.param == "memory":
        return lambda **kw: MemoryStore(**kw)
    url = (str(tmp_path / "server.db") if request.param == "sqlite"
           else request.getfixturevalue("pg_dsn"))
    return lambda **kw: SqlStore(Database(url), **kw)


def _account(store: Store, devices: int = 1, **keys: int) -> str:
    name = unique_name()
    store.create_account(name, "hash", device_keys(**keys), b"c" * 32, now_ms=T0)
    for _ in range(devices - 1):
        store.add_device(name, device_keys(**keys), b"c" * 32, now_ms=T0, expires_at_ms=LATER)
    for dev in range(1, devices + 1):  # start with empty queues (drop the device_added notices)
        store.acknowledge(name, dev, [e.id for e in store.fetch(name, dev, T0, 100)])
    return name


def test_device_ids_are_never_reused_and_capped(
        new_store: Callable[..., Store]) -> None:
    store = new_store(max_devices=3)
    alice = _account(store, devices=3)
    assert [d.device_id for d in store.list_devices(alice)] == [1, 2, 3]
    with pytest.raises(TooManyDevices):
        store.add_device(alice, device_keys(), b"c" * 32, now_ms=T0, expires_at_ms=LATER)
    store.remove_device(alice, 2, now_ms=T0, expires_at_ms=LATER)
    assert store.add_device(alice, device_keys(), b"c" * 32, now_ms=T0, expires_at_ms=LATER) == 4
    assert [d.device_id for d in store.list_devices(alice)] == [1, 3, 4]
    with pytest.raises(AccountExists):
        store.create_account(alice, "hash", device_keys(), b"c" * 32, now_ms=T0)
    with pytest.raises(NotFound):
        store.list_devices(unique_name())


def test_bundles_consume_one_time_keys_then_fall_back_to_last_resort(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    bob = _account(store, devices=2, one_time=2, kem=1)
    first = store.take_bundles(bob)
    assert [b.device_id for b in first] == [1, 2]
    assert all(b.one_time_prekey is not None and not b.kem_prekey_last_resort for b in first)
    second = store.take_bundles(bob, 1)
    assert len(second) == 1 and second[0].kem_prekey_last_resort
    assert second[0].one_time_prekey is not None
    assert second[0].one_time_prekey != first[0].one_time_prekey
    third = store.take_bundles(bob, 1)[0]
    assert third.one_time_prekey is None and third.kem_prekey_last_resort
    assert store.prekey_count(bob, 1).one_time_prekeys == 0
    assert store.prekey_count(bob, 2).one_time_prekeys == 1
    store.upload_prekeys(bob, 1, PreKeyUpload(one_time_prekeys=(PreKey(77, b"k" * 33),)))
    assert store.take_bundles(bob, 1)[0].one_time_prekey == PreKey(77, b"k" * 33)
    with pytest.raises(NotFound):
        store.take_bundles(bob, 9)


def test_stored_prekeys_are_capped(
        new_store: Callable[..., Store]) -> None:
    store = new_store(max_stored_prekeys=6)
    bob = _account(store, one_time=5, kem=0)
    more = PreKeyUpload(one_time_prekeys=tuple(PreKey(100 + i, b"k" * 33) for i in range(2)))
    with pytest.raises(TooManyPreKeys):
        store.upload_prekeys(bob, 1, more)
    assert store.prekey_count(bob, 1).one_time_prekeys == 5  # the refused upload left nothing


def test_concurrent_bundle_fetches_never_share_a_one_time_key(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    bob = _account(store, one_time=30, kem=30)
    served: list[int] = []
    kem_served: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fetch(n: int) -> None:
        try:
            for _ in range(n):
                bundle = store.take_bundles(bob)[0]
                with lock:
                    if bundle.one_time_prekey is not None:
                        served.append(bundle.one_time_prekey.key_id)
                    if not bundle.kem_prekey_last_resort:
                        kem_served.append(bundle.kem_prekey.key_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    # Exactly as many fetches as keys: every fetch must get one, none twice.
    threads = [threading.Thread(target=fetch, args=(5,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(served) == 30 and len(set(served)) == 30, Counter(served).most_common(3)
    assert len(kem_served) == 30 and len(set(kem_served)) == 30
    assert store.prekey_count(bob, 1).one_time_prekeys == 0


def test_a_send_must_cover_exactly_the_current_devices(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    alice, bob = _account(store, devices=2), _account(store, devices=3)

    def env(user: str, dev: int) -> OutgoingEnvelope:
        return OutgoingEnvelope(user, dev, f"{user}/{dev}".encode())

    wrong = [env(bob, 1), env(bob, 2), env(bob, 7)]
    with pytest.raises(MismatchedDevices) as refused:
        store.submit(alice, 1, bob, wrong, now_ms=T0, expires_at_ms=LATER)
    assert refused.value.missing == sorted([(alice, 2), (bob, 3)])
    assert refused.value.extra == [(bob, 7)]
    assert store.fetch(bob, 1, T0, 10) == []  # a refused send queues nothing at all
    right = [env(bob, 1), env(bob, 2), env(bob, 3), env(alice, 2)]
    assert len(store.submit(alice, 1, bob, right, now_ms=T0, expires_at_ms=LATER)) == 4
    assert [e.content for e in store.fetch(alice, 2, T0, 10)] == [f"{alice}/2".encode()]
    assert store.fetch(alice, 1, T0, 10) == []  # never to the sending device itself
    # A sync-only send to oneself covers the other own devices.
    with pytest.raises(MismatchedDevices):
        store.submit(alice, 1, alice, [env(alice, 1)], now_ms=T0, expires_at_ms=LATER)
    assert len(store.submit(alice, 1, alice, [env(alice, 2)], now_ms=T0,
                            expires_at_ms=LATER)) == 1
    with pytest.raises(NotFound):
        store.submit(alice, 1, unique_name(), [], now_ms=T0, expires_at_ms=LATER)


def test_queues_are_per_device_and_acknowledged_per_device(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    alice, bob = _account(store), _account(store, devices=2)
    for i in range(3):
        store.submit(alice, 1, bob, [OutgoingEnvelope(bob, 1, b"m%d" % i),
                                     OutgoingEnvelope(bob, 2, b"n%d" % i)],
                     now_ms=T0 + i, expires_at_ms=LATER)
    got = store.fetch(bob, 1, T0, 10)
    assert [e.content for e in got] == [b"m0", b"m1", b"m2"]
    assert all(e.source == alice and e.source_device == 1 and e.kind == "message" for e in got)
    other = store.fetch(bob, 2, T0, 10)
    assert store.acknowledge(bob, 1, [e.id for e in other]) == 0  # not device 1's envelopes
    assert store.acknowledge(bob, 1, [got[0].id, got[1].id]) == 2
    assert [e.content for e in store.fetch(bob, 1, T0, 10)] == [b"m2"]
    assert len(store.fetch(bob, 2, T0, 10)) == 3


def test_device_changes_are_announced_to_own_devices_and_contacts(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    alice, bob, carol = _account(store, devices=2), _account(store), _account(store)
    store.submit(bob, 1, alice, [OutgoingEnvelope(alice, 1, b"x"), OutgoingEnvelope(alice, 2,
                                                                                   b"y")],
                 now_ms=T0, expires_at_ms=LATER)
    store.submit(carol, 1, alice, [OutgoingEnvelope(alice, 1, b"?"), OutgoingEnvelope(alice, 2,
                                                                                     b"?")],
                 now_ms=T0, expires_at_ms=LATER)
    for dev in (1, 2):  # alice accepts bob's message and refuses carol's
        got = store.fetch(alice, dev, T0, 10)
        store.acknowledge(alice, dev, [e.id for e in got],
                          refused=[e.id for e in got if e.source == carol])
    new = store.add_device(alice, device_keys(), b"c" * 32, now_ms=T0, expires_at_ms=LATER)
    for user, dev in ((alice, 1), (alice, 2), (bob, 1)):
        notices = [e for e in store.fetch(user, dev, T0, 10) if e.kind == "device_added"]
        assert [(n.source, n.source_device, n.content) for n in notices] == [(alice, new, None)]
    assert store.fetch(carol, 1, T0, 10) == []  # refused, not a contact: learns nothing
    assert store.fetch(alice, new, T0, 10) == []  # a new device gets nothing from before
    store.remove_device(alice, 2, now_ms=T0, expires_at_ms=LATER)
    assert store.fetch(alice, 2, T0, 10) == []  # its queue is gone with it
    removed = [e for e in store.fetch(bob, 1, T0, 10) if e.kind == "device_removed"]
    assert [(e.source, e.source_device) for e in removed] == [(alice, 2)]
    assert store.credential_hash(alice, 2) is None
    with pytest.raises(NotFound):
        store.remove_device(alice, 2, now_ms=T0, expires_at_ms=LATER)


def test_expired_envelopes_are_hidden_then_purged(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    alice, bob = _account(store), _account(store)
    store.submit(alice, 1, bob, [OutgoingEnvelope(bob, 1, b"short")], now_ms=T0,
                 expires_at_ms=T0 + 1000)
    store.submit(alice, 1, bob, [OutgoingEnvelope(bob, 1, b"long")], now_ms=T0,
                 expires_at_ms=LATER)
    attachment = store.put_attachment(b"blob", T0, T0 + 1000)
    assert len(store.fetch(bob, 1, T0 + 999, 10)) == 2
    assert [e.content for e in store.fetch(bob, 1, T0 + 1000, 10)] == [b"long"]
    assert store.get_attachment(attachment, T0 + 1000) is None
    counts = store.purge_expired(T0 + 1000)
    assert counts.envelopes >= 1 and counts.attachments >= 1
    assert counts.envelopes == 1 and counts.attachments == 1
    again = store.purge_expired(T0 + 1000)
    assert (again.envelopes, again.attachments) == (0, 0)
    assert again.waiting >= 1  # bob's long-lived envelope (other tests may share the store)
    if isinstance(store, SqlStore):  # the rows are gone, not just hidden
        assert store.db.fetchone("SELECT COUNT(*) FROM envelopes WHERE content = ?",
                                 (b"short",))[0] == 0
        assert store.db.fetchone("SELECT COUNT(*) FROM attachments WHERE id = ?",
                                 (attachment,))[0] == 0


def _kinds(store: Store, name: str, device: int = 1) -> list[str]:
    got = store.fetch(name, device, T0, 100)
    store.acknowledge(name, device, [e.id for e in got])
    return [e.kind for e in got]


def test_batched_acknowledgements_and_contacts_on_every_store(
        new_store: Callable[..., Store]) -> None:
    """Several devices' acknowledgements in one call (the push channel's batcher; one statement
    on PostgreSQL): duplicates, unknown and other devices' ids delete nothing, an accepted
    message makes its sender a contact, a refused one does not, and a send makes the
    recipients the sender's contacts."""
    store = new_store()
    alice, bob, carol, mallory = (_account(store, devices=2) for _ in range(4))
    for sender in (bob, mallory):
        store.submit(sender, 1, alice, [OutgoingEnvelope(alice, 1, b"m"),
                                        OutgoingEnvelope(alice, 2, b"m"),
                                        OutgoingEnvelope(sender, 2, b"sync")],
                     now_ms=T0, expires_at_ms=LATER)
    store.submit(carol, 1, bob, [OutgoingEnvelope(bob, 1, b"c"), OutgoingEnvelope(bob, 2, b"c"),
                                 OutgoingEnvelope(carol, 2, b"sync")],
                 now_ms=T0, expires_at_ms=LATER)
    a1 = store.fetch(alice, 1, T0, 100)
    a2 = store.fetch(alice, 2, T0, 100)
    b1 = store.fetch(bob, 1, T0, 100)
    by_source = {e.source: e.id for e in a1}
    deleted = store.acknowledge_many([
        Acknowledgement(alice, 1, (*[e.id for e in a1], a1[0].id, 10**12),
                        refused=(by_source[mallory],)),
        Acknowledgement(alice, 2, (a2[0].id, b1[0].id)),  # bob's id is not alice's to delete
        Acknowledgement(bob, 1, (b1[0].id,)),
        Acknowledgement(carol, 1, ()),
    ])
    assert deleted == len(a1) + 1 + 1
    assert [e.id for e in store.fetch(alice, 2, T0, 100)] == [e.id for e in a2[1:]]
    assert store.fetch(bob, 1, T0, 100) == []
    assert store.fetch(alice, 1, T0, 100) == []
    for name in (bob, mallory, carol):
        for dev in (1, 2):
            store.acknowledge(name, dev, [e.id for e in store.fetch(name, dev, T0, 100)])
    store.add_device(alice, device_keys(), b"c" * 32, now_ms=T0, expires_at_ms=LATER)
    assert _kinds(store, bob) == ["device_added"]  # alice accepted bob's message
    assert _kinds(store, mallory) == []  # refused: mallory is no contact of alice
    store.add_device(bob, device_keys(), b"c" * 32, now_ms=T0, expires_at_ms=LATER)
    assert _kinds(store, carol) == ["device_added"]  # carol sent to bob
    assert store.acknowledge_many([]) == 0


def test_queue_quota_and_an_unknown_recipient_on_every_store(
        new_store: Callable[..., Store]) -> None:
    store = new_store()
    alice, bob = _account(store), _account(store)
    store.submit(bob, 1, alice, [OutgoingEnvelope(alice, 1, b"x" * 600)], now_ms=T0,
                 expires_at_ms=LATER, max_queued_bytes=1000)
    with pytest.raises(QueueFull):
        store.submit(bob, 1, alice, [OutgoingEnvelope(alice, 1, b"y" * 600)], now_ms=T0,
                     expires_at_ms=LATER, max_queued_bytes=1000)
    with pytest.raises(NotFound):
        store.submit(bob, 1, "nobody-" + alice, [OutgoingEnvelope(alice, 1, b"z")], now_ms=T0,
                     expires_at_ms=LATER)
    got = store.fetch(alice, 1, T0, 100)
    assert [e.content for e in got] == [b"x" * 600]
    store.acknowledge(alice, 1, [e.id for e in got])
    store.submit(bob, 1, alice, [OutgoingEnvelope(alice, 1, b"y" * 600)], now_ms=T0,
                 expires_at_ms=LATER, max_queued_bytes=1000)
    assert [e.content for e in store.fetch(alice, 1, T0, 100)] == [b"y" * 600]


def test_the_send_limit_is_counted_in_the_send_on_every_store(
        new_store: Callable[..., Store]) -> None:
    """The count is taken in the send's own transaction (pipelined with the account lock on
    PostgreSQL): a refused send (wrong devices) counts, a send over the limit queues nothing,
    and the window starts over."""
    store = new_store()
    alice, bob = _account(store), _account(store, devices=2)
    limit = EventLimit("sends:" + bob, window_ms=60_000, limit=3)

    def send(now: int, devices: tuple[int, ...] = (1,)) -> int:
        return len(store.submit_multi(bob, 1, [alice],
                                  [OutgoingEnvelope(alice, 1, b"m"),
                                   *[OutgoingEnvelope(bob, d, b"s") for d in devices if d != 1]],
                                  now_ms=now, expires_at_ms=LATER + now, limit=limit))

    assert send(T0, (1, 2)) == 2
    with pytest.raises(MismatchedDevices):
        send(T0)  # bob's device 2 is missing: refused, and counted
    assert send(T0 + 1, (1, 2)) == 2
    with pytest.raises(RateLimited):
        send(T0 + 2, (1, 2))
    assert len(store.fetch(alice, 1, T0, 100)) == 2  # nothing from the refused ones
    assert send(T0 + 60_000, (1, 2)) == 2  # a new window
    assert len(store.fetch(alice, 1, T0, 100)) == 3
