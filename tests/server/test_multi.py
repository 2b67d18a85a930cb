"""Multi-recipient sends (a group message in one request): every device of every recipient and
the sender's other devices once, accepted or refused as a whole (409 lists every mismatch)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import InvalidRequest, MismatchedDevices, NotFound
from e2ee_core.server.wire import DeviceAddress, OutgoingEnvelope
from tests.server.support import (
    FAST_ARGON2,
    PASSWORD,
    FakeClock,
    device_keys,
    in_process_session,
    unique_name,
)

BASE = "http://e2ee.test"


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def session(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    db = {"sqlite": str(tmp_path / "m.db"), "memory": "memory:"}.get(request.param)
    if db is None:
        db = request.getfixturevalue("pg_dsn")
    return in_process_session(create_app({"db": db, "clock": FakeClock(), **FAST_ARGON2}))


def _account(session: object, devices: int) -> list[ServerClient]:
    name = unique_name()
    first = ServerClient(BASE, session=session)  # type: ignore[arg-type]
    first.register(name, PASSWORD, device_keys())
    more = []
    for _ in range(devices - 1):
        client = ServerClient(BASE, session=session)  # type: ignore[arg-type]
        client.add_device(name, PASSWORD, device_keys())
        more.append(client)
    clients = [first, *more]
    for c in clients:
        c.acknowledge(e.id for e in c.receive().envelopes)
    return clients


def _to(addresses: list[DeviceAddress], text: bytes) -> list[OutgoingEnvelope]:
    return [OutgoingEnvelope(a.username, a.device_id, text) for a in addresses]


def test_one_request_reaches_every_member_device_and_own_devices_once(session: object) -> None:
    alice = _account(session, 2)
    members = [_account(session, 2), _account(session, 1), _account(session, 3)]
    names = [m[0].address.username for m in members]
    targets = [c.address for m in members for c in m] + [alice[1].address]
    assert alice[0].send_multi(names, _to(targets, b"group")) == len(targets)
    for client in [c for m in members for c in m] + [alice[1]]:
        got = client.receive().envelopes
        assert [(e.kind, e.content) for e in got] == [("message", b"group")]  # exactly once
        assert got[0].source == alice[0].address.username


def test_a_stale_device_set_refuses_the_whole_send_and_lists_every_mismatch(
        session: object) -> None:
    alice = _account(session, 1)
    bob, carol = _account(session, 2), _account(session, 1)
    names = [bob[0].address.username, carol[0].address.username]
    ghost = DeviceAddress(carol[0].address.username, 9)
    stale = [bob[0].address, carol[0].address, ghost]  # misses bob's 2nd device, adds a ghost
    with pytest.raises(MismatchedDevices) as refused:
        alice[0].send_multi(names, _to(stale, b"x"))
    assert refused.value.missing == [(bob[1].address.username, bob[1].address.device_id)]
    assert refused.value.extra == [(ghost.username, ghost.device_id)]
    for client in [*bob, *carol]:
        assert client.receive().envelopes == []  # nothing queued for anyone
    with pytest.raises(NotFound):
        alice[0].send_multi([*names, unique_name()], _to([c.address for c in [*bob, *carol]],
                                                          b"x"))
    for client in [*bob, *carol]:
        assert client.receive().envelopes == []
    with pytest.raises(InvalidRequest):
        alice[0].send_multi([names[0], names[0]], _to([c.address for c in bob], b"x"))
