"""The push channel's hand-off: a send stored by this server process hands its envelopes to the
recipients' push connections (``PushHub.deliver``), which push them without reading the queue
while they know it exactly; anything else (a send in another process, a device notice, an
offer a read may already have returned) makes a connection read. Driven in-process through the
ASGI endpoint with the real service, on SQLite and PostgreSQL, counting the queue reads."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Coroutine, MutableMapping
from typing import Any

from e2ee_core.server import wakeups
from e2ee_core.server.push import PushChannel
from e2ee_core.server.service import DeliveryService, Settings
from e2ee_core.server.store import SqlStore
from e2ee_core.server.wire import (
    AccountRequest,
    DeviceAddress,
    DeviceCredential,
    Envelope,
    OutgoingEnvelope,
    SendRequest,
)
from service_kit.database import Database
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, unique_name

TIMEOUT = 10.0


class CountingService(DeliveryService):
    """The real service, counting the push channel's queue reads."""

    reads = 0

    def queued(self, actor: DeviceAddress, limit: int, after_id: int = 0) -> list[Envelope]:
        self.reads += 1
        return super().queued(actor, limit, after_id)


class Socket:
    """One device's push connection, driven through the ASGI interface."""

    def __init__(self, service: DeliveryService, device: DeviceCredential) -> None:
        self.inbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        scope = {"type": "websocket", "path": "/v1/websocket", "headers": [
            (b"authorization", f"Bearer {device.credential}".encode())]}
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(PushChannel(service)(scope, self.inbox.get,
                                                             self.outbox.put))

    async def frame(self) -> dict[str, Any]:
        while True:
            message = await asyncio.wait_for(self.outbox.get(), TIMEOUT)
            if message["type"] == "websocket.send":
                frame: dict[str, Any] = json.loads(message["text"])
                return frame

    async def no_frame(self, seconds: float = 0.3) -> None:
        """Nothing more is pushed within ``seconds``."""
        try:
            message = await asyncio.wait_for(self.outbox.get(), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {message}")

    def ack(self, ids: list[int]) -> None:
        self.inbox.put_nowait({"type": "websocket.receive",
                               "text": json.dumps({"type": "ack", "ids": ids})})

    async def close(self) -> None:
        self.inbox.put_nowait({"type": "websocket.disconnect"})
        await asyncio.wait_for(self.task, TIMEOUT)


def _world(db_url: str) -> tuple[CountingService, DeviceCredential, DeviceCredential]:
    service = CountingService(SqlStore(Database(db_url)), Settings.from_mapping(FAST_ARGON2))
    alice = service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
    bob = service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
    return service, alice, bob


def _send(service: DeliveryService, sender: DeviceCredential, to: DeviceCredential,
          content: bytes) -> Coroutine[Any, Any, int]:
    request = SendRequest(to.username, (OutgoingEnvelope(to.username, 1, content),))
    return asyncio.to_thread(service.send, DeviceAddress(sender.username, 1), request)


def _run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_sends_of_this_process_are_pushed_without_reading_the_queue(db_url: str) -> None:
    """After the drain on connect (one read), 20 sends are pushed, acknowledged and followed by
    queue_empty with no further read (before: two reads per envelope: one on the wake-up, one
    after the acknowledgement emptied what was in flight)."""
    service, alice, bob = _world(db_url)

    async def scenario() -> None:
        ws = Socket(service, bob)
        assert await ws.frame() == {"type": "queue_empty"}
        assert service.reads == 1
        for i in range(20):
            await _send(service, alice, bob, b"live %d" % i)
            pushed = await ws.frame()
            assert pushed["type"] == "envelopes"
            [envelope] = pushed["envelopes"]
            assert (envelope["source"], envelope["content"]) == (alice.username,
                                                                 _b64(b"live %d" % i))
            stored = service.queued(DeviceAddress(bob.username, 1), 10)
            service.reads -= 1  # that read was this test's
            assert [e.to_json() for e in stored] == [envelope]  # what the store holds
            ws.ack([envelope["id"]])
            assert await ws.frame() == {"type": "queue_empty"}
        assert service.reads == 1
        await ws.close()

    _run(scenario)
    assert service.queued(DeviceAddress(bob.username, 1), 10) == []


def test_a_plain_wakeup_reads_the_queue(db_url: str) -> None:
    """An envelope stored without an offer (as by another server process, whose NOTIFY wakes
    this one) is found by a read on the wake-up, in order with what was offered."""
    service, alice, bob = _world(db_url)

    async def scenario() -> None:
        ws = Socket(service, bob)
        assert await ws.frame() == {"type": "queue_empty"}
        ids = await asyncio.to_thread(  # stored behind the hub's back, then a plain wake-up
            service.store.submit, alice.username, 1, bob.username,
            [OutgoingEnvelope(bob.username, 1, b"from elsewhere")], now_ms=service.now_ms(),
            expires_at_ms=service.now_ms() + 60_000)
        await ws.no_frame()
        service.push.notify([(bob.username, 1)])
        pushed = await ws.frame()
        assert [e["id"] for e in pushed["envelopes"]] == ids
        await _send(service, alice, bob, b"offered")  # in flight: an offer is pushed after it
        offered = await ws.frame()
        assert [e["content"] for e in offered["envelopes"]] == [_b64(b"offered")]
        ws.ack(ids + [e["id"] for e in offered["envelopes"]])
        assert await ws.frame() == {"type": "queue_empty"}
        await ws.close()

    _run(scenario)


def test_a_wakeup_during_a_read_makes_the_connection_read_again(db_url: str) -> None:
    """A send in another process that commits after a read's snapshot, its wake-up arriving
    while the read runs: the read's answer must not make the connection believe it knows its
    queue (it would then wait for offers that never come); it reads again and pushes it."""
    service, alice, bob = _world(db_url)
    real_queued = DeliveryService.queued
    sneaked: list[list[int]] = []

    def queued(actor: DeviceAddress, limit: int, after_id: int = 0) -> list[Envelope]:
        found = real_queued(service, actor, limit, after_id)  # the snapshot
        if not sneaked:  # then "another process" commits and its NOTIFY wakes this one
            sneaked.append(service.store.submit(
                alice.username, 1, bob.username,
                [OutgoingEnvelope(bob.username, 1, b"behind the read")],
                now_ms=service.now_ms(), expires_at_ms=service.now_ms() + 60_000))
            service.push.notify([(bob.username, 1)])
        return found

    service.queued = queued  # type: ignore[method-assign]

    async def scenario() -> None:
        ws = Socket(service, bob)
        pushed = await ws.frame()
        assert pushed["type"] == "envelopes"
        assert [e["id"] for e in pushed["envelopes"]] == sneaked[0]
        ws.ack(sneaked[0])
        assert await ws.frame() == {"type": "queue_empty"}
        await ws.close()

    _run(scenario)


def test_an_offer_a_read_already_pushed_is_not_pushed_again(db_url: str) -> None:
    """The race the hand-off must survive: the send's offer reaches the connection only after
    a read returned the same envelope and the device acknowledged it. The envelope is pushed
    once; the connection reads to settle the doubtful offer and says the queue is empty."""
    service, alice, bob = _world(db_url)
    held: list[Any] = []
    real_deliver = service.push.deliver
    service.push.deliver = held.append  # type: ignore[method-assign, assignment]

    async def scenario() -> None:
        ws = Socket(service, bob)
        assert await ws.frame() == {"type": "queue_empty"}
        await _send(service, alice, bob, b"once")  # its offer is held back
        service.push.notify([(bob.username, 1)])  # a read finds it instead
        pushed = await ws.frame()
        ws.ack([e["id"] for e in pushed["envelopes"]])
        assert await ws.frame() == {"type": "queue_empty"}
        reads = service.reads
        real_deliver(held.pop())  # the late offer
        await ws.no_frame()
        assert service.reads == reads + 1  # settled by a read, which found nothing
        service.push.deliver = real_deliver  # type: ignore[method-assign]
        await _send(service, alice, bob, b"next")  # and offers are used again after it
        pushed = await ws.frame()
        assert [e["content"] for e in pushed["envelopes"]] == [_b64(b"next")]
        ws.ack([e["id"] for e in pushed["envelopes"]])
        assert await ws.frame() == {"type": "queue_empty"}
        assert service.reads == reads + 1
        await ws.close()

    _run(scenario)


def test_offers_beyond_what_may_be_in_flight_are_read_in_order(db_url: str) -> None:
    """More envelopes than may be in flight: what does not fit is left to reads, and the device
    gets every envelope once, oldest first."""
    from e2ee_core.server import consts

    service, alice, bob = _world(db_url)
    total = consts.MAX_ENVELOPES_PER_RECEIVE + 30

    async def scenario() -> None:
        ws = Socket(service, bob)
        assert await ws.frame() == {"type": "queue_empty"}
        for i in range(total):
            await _send(service, alice, bob, b"%d" % i)
        got: list[str] = []
        while len(got) < total:
            frame = await ws.frame()
            assert frame["type"] == "envelopes"
            got += [e["content"] for e in frame["envelopes"]]
            ws.ack([e["id"] for e in frame["envelopes"]])
        assert got == [_b64(b"%d" % i) for i in range(total)]
        assert await ws.frame() == {"type": "queue_empty"}
        await ws.close()

    _run(scenario)


def test_a_process_skips_its_own_notifications() -> None:
    """The PostgreSQL listener wakes connections for sends of other processes only: a send of
    this process already handed its envelopes over (its payload names this process)."""
    from e2ee_core.server.hub import PushHub

    woken: list[object] = []

    class Hub(PushHub):
        def notify(self, addresses: Any) -> None:
            woken.append(list(addresses))

        def notify_all(self) -> None:
            woken.append("all")

    listener = wakeups.PgListener("postgresql://unused", Hub())

    class Notice:
        def __init__(self, payload: str) -> None:
            self.payload = payload

    listener._deliver(Notice(wakeups.payload([("bob", 1)], origin=wakeups.origin())))
    assert woken == []
    listener._deliver(Notice(wakeups.payload([("bob", 1)], origin="another")))
    listener._deliver(Notice(wakeups.payload([("bob", 2)])))  # a payload naming no process
    assert woken == [[("bob", 1)], [("bob", 2)]]


def test_each_process_has_its_own_origin() -> None:
    """Workers fork from one parent: each must name itself differently."""
    parent = wakeups.origin()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, wakeups.origin().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child and child != parent and wakeups.origin() == parent


def _b64(data: bytes) -> str:
    from e2ee_core.server.wire import encode_bytes

    return encode_bytes(data)
