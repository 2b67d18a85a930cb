"""``GET /v1/messages?wait=`` holds no server thread while it waits (before: each long-poll held
one of the worker's threads for up to 25 s, so with 8 threads, 8 waiting devices blocked every
other request). Against the delivery server on its stack with one thread, on SQLite and
PostgreSQL, the second instance on PostgreSQL waking the first through LISTEN/NOTIFY."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import pytest

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import InvalidRequest
from e2ee_core.server.wire import OutgoingEnvelope
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, unique_name
from tests.support import LiveServer

WAITERS = 10
WAIT = 20.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "poll.db") if request.param == "sqlite" else \
        str(request.getfixturevalue("pg_dsn"))


def _device(url: str) -> ServerClient:
    client = ServerClient(url, timeout=8.0)
    client.register(unique_name(), PASSWORD, device_keys())
    return client


def test_waiting_devices_hold_no_thread(live_server: Callable[..., LiveServer],
                                        db: str) -> None:
    server = live_server(create_app, _threads=1, db=db, **FAST_ARGON2)
    sender = _device(server.url)
    waiters = [_device(server.url) for _ in range(WAITERS)]
    with concurrent.futures.ThreadPoolExecutor(WAITERS) as pool:
        polls = [pool.submit(w.receive, WAIT) for w in waiters]
        # With one server thread, every request below would queue behind the first poll
        # (and time out after 8 s) if the polls held it.
        assert sender.health()
        for waiter in waiters:
            to = waiter.address.username
            sender.send(to, [OutgoingEnvelope(to, 1, b"wake " + to.encode())])
        for waiter, poll in zip(waiters, polls, strict=True):
            batch = poll.result(timeout=WAIT / 2)  # woken by the send, not at the deadline
            assert [e.content for e in batch.envelopes] == \
                [b"wake " + waiter.address.username.encode()]
    assert "Traceback" not in server.logs()


def test_a_wait_returns_at_its_deadline_and_bad_waits_are_refused(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = live_server(create_app, _threads=1, db=str(tmp_path / "p.db"), **FAST_ARGON2)
    device = _device(server.url)
    assert device.receive(0.3).envelopes == []
    for bad in ("-1", "1e3", "26", "abc"):
        response = device._session.get(
            server.url + "/v1/messages", params={"wait": bad}, timeout=8,
            headers={"Authorization": f"Bearer {device.credential.credential}"})  # type: ignore[union-attr]
        assert response.status_code == 400, bad
    stranger = ServerClient(server.url, timeout=8.0)
    response = stranger._session.get(server.url + "/v1/messages", params={"wait": "5"},
                                     timeout=8)
    assert response.status_code == 401  # refused at once, not after the wait
    with pytest.raises(InvalidRequest):
        device.receive(30)


@pytest.mark.postgres
def test_a_send_through_another_instance_wakes_a_long_poll(
        live_server: Callable[..., LiveServer], pg_dsn: str) -> None:
    a = live_server(create_app, _threads=1, db=pg_dsn, **FAST_ARGON2)
    b = live_server(create_app, _threads=1, db=pg_dsn, **FAST_ARGON2)
    waiter = _device(a.url)
    sender = ServerClient(b.url, timeout=8.0)
    sender.register(unique_name(), PASSWORD, device_keys())
    to = waiter.address.username
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(waiter.receive, WAIT)
        sender.send(to, [OutgoingEnvelope(to, 1, b"via B")])
        # woken through LISTEN/NOTIFY, not at the deadline
        assert [e.content for e in poll.result(timeout=WAIT / 2).envelopes] == [b"via B"]


def test_a_database_failure_while_waiting_goes_to_the_app_at_once(tmp_path: Path) -> None:
    """LongPoll sits outside the WSGI stack's error handling: a store failure while it waits
    must hand the request on (the app answers 503) instead of escaping as a 500 + traceback."""
    import asyncio

    from e2ee_core.server.longpoll import LongPoll
    from e2ee_core.server.service import DeliveryService, Settings
    from e2ee_core.server.store import SqlStore
    from e2ee_core.server.wire import AccountRequest
    from service_kit.database import Database, DatabaseError

    service = DeliveryService(SqlStore(Database(str(tmp_path / "lp.db"))),
                              Settings.from_mapping(FAST_ARGON2))
    device = service.register(AccountRequest(unique_name(), PASSWORD, device_keys()))

    def broken(*args: object) -> object:
        raise DatabaseError("connection to the database lost")

    service.queued = broken  # type: ignore[method-assign]
    handed: list[bytes] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        handed.append(scope["query_string"])  # type: ignore[arg-type]

    async def scenario() -> None:
        scope = {"type": "http", "method": "GET", "path": "/v1/messages",
                 "query_string": b"wait=20",
                 "headers": [(b"authorization", f"Bearer {device.credential}".encode())]}
        await asyncio.wait_for(LongPoll(service, app)(scope, None, None), 5)  # type: ignore[arg-type]

    asyncio.run(scenario())
    assert handed == [b"wait=0"]
