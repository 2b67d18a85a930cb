"""The push channel over a real WebSocket against the delivery server on its stack: drain then
push, batched acknowledgements, the queue-empty marker, reconnects, authentication (including
the distinct removed-device close), malformed frames, and no thread held per connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.wire import OutgoingEnvelope
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, unique_name
from tests.support import LiveServer


def _socket(server: LiveServer, client: ServerClient) -> ClientConnection:
    assert client.credential is not None
    return connect(server.url.replace("http://", "ws://") + "/v1/websocket",
                   additional_headers={"Authorization":
                                       f"Bearer {client.credential.credential}"},
                   open_timeout=10)


def _frame(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return frame


def _pair(server: LiveServer) -> tuple[ServerClient, ServerClient]:
    alice, bob = ServerClient(server.url), ServerClient(server.url)
    alice.register(unique_name(), PASSWORD, device_keys())
    bob.register(unique_name(), PASSWORD, device_keys())
    return alice, bob


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, live_server: Callable[..., LiveServer],
           tmp_path: Path) -> LiveServer:
    db = str(tmp_path / "push.db") if request.param == "sqlite" else \
        request.getfixturevalue("pg_dsn")
    return live_server(create_app, _threads=2, db=db, **FAST_ARGON2)


def test_drain_then_push_then_ack(server: LiveServer) -> None:
    alice, bob = _pair(server)
    to_bob = bob.address.username
    alice.send(to_bob, [OutgoingEnvelope(to_bob, 1, b"queued before")])
    with _socket(server, bob) as ws:
        first = _frame(ws)
        assert first["type"] == "envelopes"
        assert [e["source"] for e in first["envelopes"]] == [alice.address.username]
        ws.send(json.dumps({"type": "ack", "ids": [e["id"] for e in first["envelopes"]]}))
        assert _frame(ws) == {"type": "queue_empty"}
        for i in range(3):  # pushed as they are stored
            alice.send(to_bob, [OutgoingEnvelope(to_bob, 1, b"live %d" % i)])
            pushed = _frame(ws)
            assert pushed["type"] == "envelopes" and len(pushed["envelopes"]) == 1
            ws.send(json.dumps({"type": "ack", "ids": [pushed["envelopes"][0]["id"]]}))
            assert _frame(ws) == {"type": "queue_empty"}
    assert bob.receive().envelopes == []  # every pushed envelope was acknowledged


def test_unacknowledged_envelopes_come_again_after_a_reconnect(server: LiveServer) -> None:
    alice, bob = _pair(server)
    to_bob = bob.address.username
    with _socket(server, bob) as ws:
        assert _frame(ws) == {"type": "queue_empty"}
        alice.send(to_bob, [OutgoingEnvelope(to_bob, 1, b"not acknowledged")])
        assert _frame(ws)["type"] == "envelopes"
    with _socket(server, bob) as ws:  # the device drops and comes back
        again = _frame(ws)
        assert again["type"] == "envelopes" and len(again["envelopes"]) == 1
        ws.send(json.dumps({"type": "ack", "ids": [again["envelopes"][0]["id"]]}))
        assert _frame(ws) == {"type": "queue_empty"}


def test_authentication_and_bad_frames(server: LiveServer) -> None:
    alice, bob = _pair(server)
    stranger = ServerClient(server.url)
    stranger.credential = type(bob.credential)(bob.address.username, 1,  # type: ignore[misc]
                                               bob.address.username + ".1.wrong-secret")
    with _socket(server, stranger) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    linked = ServerClient(server.url)
    linked.add_device(alice.address.username, PASSWORD, device_keys())
    alice.remove_device(linked.address.device_id)
    with _socket(server, linked) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
    with _socket(server, bob) as ws:
        assert _frame(ws) == {"type": "queue_empty"}
        ws.send("not json")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_many_open_sockets_hold_no_thread(server: LiveServer) -> None:
    """More connections than the server has threads (2) stay open while HTTP requests and a
    push to the last of them go through."""
    alice, _bob = _pair(server)
    devices = []
    for _ in range(12):
        device = ServerClient(server.url)
        device.register(unique_name(), PASSWORD, device_keys())
        devices.append(device)
    with ExitStack() as stack:
        sockets = [stack.enter_context(_socket(server, d)) for d in devices]
        for ws in sockets:
            assert _frame(ws) == {"type": "queue_empty"}
        assert alice.health()
        last = devices[-1].address.username
        alice.send(last, [OutgoingEnvelope(last, 1, b"to the last")])
        assert _frame(sockets[-1])["type"] == "envelopes"
    logs = server.logs()
    assert "Traceback" not in logs and "event=push_connected" in logs


@pytest.mark.postgres
def test_a_send_through_another_server_process_is_pushed_without_polling(
        live_server: Callable[..., LiveServer], pg_dsn: str) -> None:
    """Two server processes on one PostgreSQL: the socket is on A, the send goes through B.
    B's transaction NOTIFYs; A LISTENs and wakes exactly that connection (no periodic query:
    the push connection has no timer)."""
    a = live_server(create_app, _threads=2, db=pg_dsn, **FAST_ARGON2)
    b = live_server(create_app, _threads=2, db=pg_dsn, **FAST_ARGON2)
    alice, bob = ServerClient(b.url), ServerClient(a.url)
    alice.register(unique_name(), PASSWORD, device_keys())
    bob.register(unique_name(), PASSWORD, device_keys())
    to_bob = bob.address.username
    with _socket(a, bob) as ws:
        assert _frame(ws) == {"type": "queue_empty"}
        for i in range(3):
            alice.send(to_bob, [OutgoingEnvelope(to_bob, 1, b"via B %d" % i)])
            pushed = _frame(ws)
            assert pushed["type"] == "envelopes"
            ws.send(json.dumps({"type": "ack", "ids": [e["id"] for e in pushed["envelopes"]]}))
            assert _frame(ws) == {"type": "queue_empty"}


def test_wakeup_payloads() -> None:
    from e2ee_core.server import wakeups

    text = wakeups.payload([("alice", 1), ("bob", 2), ("alice", 1)])
    assert wakeups.parse(text) == ("", [("alice", 1), ("bob", 2)])
    many = wakeups.payload((f"user{i:05d}", 1) for i in range(2000))
    assert many == wakeups.WAKE_ALL and wakeups.parse(many) == ("", None)
    named = wakeups.payload([("alice", 1)], origin=wakeups.origin())
    assert wakeups.parse(named) == (wakeups.origin(), [("alice", 1)])
    assert wakeups.parse(wakeups.payload(((f"user{i:05d}", 1) for i in range(2000)),
                                         origin="abc")) == ("abc", None)


def test_acknowledgements_of_many_connections_share_transactions(tmp_path: Path) -> None:
    """The push channel's acknowledgements gather while one store transaction runs: 20
    devices acknowledging at once take far fewer than 20 transactions, and every envelope is
    gone afterwards (before: one transaction per acknowledgement frame)."""
    import asyncio

    from e2ee_core.server.push import AckBatcher
    from e2ee_core.server.service import DeliveryService, Settings
    from e2ee_core.server.store import SqlStore
    from e2ee_core.server.wire import (
        AccountRequest,
        Acknowledgement,
        DeviceAddress,
        SendRequest,
    )
    from service_kit.database import Database

    service = DeliveryService(SqlStore(Database(str(tmp_path / "acks.db"))),
                              Settings.from_mapping(FAST_ARGON2))
    sender = service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
    devices = [service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))
               for _ in range(20)]
    who = DeviceAddress(sender.username, sender.device_id)
    for d in devices:
        service.send(who, SendRequest(d.username, (OutgoingEnvelope(d.username, 1, b"x"),)))
    queued = {d.username: service.queued(DeviceAddress(d.username, 1), 10) for d in devices}
    calls: list[int] = []
    real = service.acknowledge_many

    def counted(acks: list[Acknowledgement]) -> int:
        calls.append(len(acks))
        return real(acks)

    service.acknowledge_many = counted  # type: ignore[method-assign]

    async def all_at_once() -> None:
        batcher = AckBatcher(service)
        await asyncio.gather(*(batcher.acknowledge(Acknowledgement(
            d.username, 1, tuple(e.id for e in queued[d.username]))) for d in devices))

    asyncio.run(all_at_once())
    assert sum(calls) == 20 and len(calls) < 5
    assert all(service.queued(DeviceAddress(d.username, 1), 10) == [] for d in devices)


def test_sends_over_the_socket(server: LiveServer) -> None:
    """A device sends over its push socket (as Signal's clients do): the same checks and
    answers as POST /v1/messages, results in order, a malformed send closes with 1003."""
    alice, bob = _pair(server)
    to_bob = bob.address.username
    with _socket(server, alice) as ws:
        assert _frame(ws) == {"type": "queue_empty"}
        ws.send(json.dumps({"type": "send", "id": 1, "message": {
            "recipient": to_bob, "messages": [
                {"username": to_bob, "device_id": 1, "content": "AQID"}]}}))
        assert _frame(ws) == {"type": "send_result", "id": 1, "accepted": 1}
        ws.send(json.dumps({"type": "send", "id": 2, "message": {
            "recipient": to_bob, "messages": [
                {"username": to_bob, "device_id": 7, "content": "AQID"}]}}))
        refused = _frame(ws)
        assert refused["id"] == 2 and refused["status"] == 409
        assert refused["problem"]["missing"] == [{"username": to_bob, "device_id": 1}]
        assert refused["problem"]["extra"] == [{"username": to_bob, "device_id": 7}]
        ws.send(json.dumps({"type": "send_multi", "id": 3, "message": {
            "recipients": [to_bob], "messages": [
                {"username": to_bob, "device_id": 1, "content": "BAUG"}]}}))
        assert _frame(ws) == {"type": "send_result", "id": 3, "accepted": 1}
        ws.send(json.dumps({"type": "send", "id": 4, "message": {"recipient": 5}}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert [e.content for e in bob.receive().envelopes] == [b"\x01\x02\x03", b"\x04\x05\x06"]


def test_a_store_failure_mid_acknowledgement_closes_with_1011_and_no_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The database failing under an acknowledgement (a fault injected into the real service)
    ends that connection with 1011 and one log line; before, the reader task's exception was
    left unretrieved (asyncio printed a traceback) and the socket closed without a code."""
    import asyncio
    import logging

    from e2ee_core.server.push import PushChannel
    from e2ee_core.server.service import DeliveryService, Settings
    from e2ee_core.server.store import SqlStore
    from e2ee_core.server.wire import AccountRequest
    from service_kit.database import Database, DatabaseError

    service = DeliveryService(SqlStore(Database(str(tmp_path / "f.db"))),
                              Settings.from_mapping(FAST_ARGON2))
    device = service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))

    def broken(acks: object) -> int:
        raise DatabaseError("connection to the database lost")

    service.acknowledge_many = broken  # type: ignore[method-assign]
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "websocket.connect"})
        await inbox.put({"type": "websocket.receive", "text": '{"type":"ack","ids":[1]}'})

        async def receive() -> dict[str, Any]:
            return await inbox.get()

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "websocket", "path": "/v1/websocket", "headers": [
            (b"authorization", f"Bearer {device.credential}".encode())]}
        await asyncio.wait_for(PushChannel(service)(scope, receive, send), 10)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert sent[0] == {"type": "websocket.accept"}
    assert sent[-1] == {"type": "websocket.close", "code": 1011}
    assert "event=push_failed reason=DatabaseError" in caplog.text
    assert "Traceback" not in caplog.text and "never retrieved" not in caplog.text
