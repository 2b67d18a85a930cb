"""Abuse limits of the delivery server: password guessing (per account, shared by every server
process through the store, and per client address) and bundle fetches, with 429 and
Retry-After; one-time prekeys that cannot be drained; contacts only from one's own sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import (
    AuthenticationFailed,
    QueueFull,
    RateLimited,
    TooManyAttempts,
)
from e2ee_core.server.wire import OutgoingEnvelope
from tests.server.support import (
    FAST_ARGON2,
    PASSWORD,
    FakeClock,
    device_keys,
    in_process_session,
    unique_name,
)

BASE = "http://e2ee.test"


def _app(db: str, clock: FakeClock, **settings: Any) -> ServerClient:
    app = create_app({"db": db, "clock": clock, **FAST_ARGON2, **settings})
    return ServerClient(BASE, session=in_process_session(app))


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_password_guessing_is_limited_per_account_across_processes(
        engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Two server instances on one store (as two worker processes): ten wrong passwords in all,
    then even the right one is refused with 429 until the window ends. Before, 20 wrong then
    right was accepted."""
    db = str(tmp_path / "s.db") if engine == "sqlite" else request.getfixturevalue("pg_dsn")
    clock = FakeClock()
    one = _app(db, clock, password_attempts_per_address=1000)
    two = _app(db, clock, password_attempts_per_address=1000)
    name = unique_name()
    one.register(name, PASSWORD, device_keys())
    for i in range(10):
        with pytest.raises(AuthenticationFailed):
            (one if i % 2 else two).add_device(name, "wrong-password-" + str(i), device_keys())
    for instance in (one, two):
        with pytest.raises(TooManyAttempts) as refused:
            instance.add_device(name, PASSWORD, device_keys())
        assert 1 <= refused.value.retry_after <= 900
    other = unique_name()  # another account is not affected
    one.register(other, PASSWORD, device_keys())
    one.add_device(other, PASSWORD, device_keys())
    clock.advance(901)
    two.add_device(name, PASSWORD, device_keys())  # the window is over
    for i in range(9):  # a right password cleared the count: nine more are allowed
        with pytest.raises(AuthenticationFailed):
            one.add_device(name, "wrong-password-again-" + str(i), device_keys())
    one.add_device(name, PASSWORD, device_keys())


def test_password_attempts_are_limited_per_address(tmp_path: Path) -> None:
    clock = FakeClock()
    client = _app(str(tmp_path / "a.db"), clock, password_attempts_per_address=5)
    names = [unique_name() for _ in range(6)]
    for name in names:
        client.register(name, PASSWORD, device_keys())
    for name in names[:5]:  # spread over accounts: each account stays under its own limit
        with pytest.raises(AuthenticationFailed):
            client.add_device(name, "wrong-password-x", device_keys())
    with pytest.raises(TooManyAttempts):
        client.add_device(names[5], PASSWORD, device_keys())


def test_429_carries_retry_after_as_a_problem(tmp_path: Path) -> None:
    clock = FakeClock()
    app = create_app({"db": str(tmp_path / "h.db"), "clock": clock, **FAST_ARGON2,
                      "password_max_failures": 1})
    session = in_process_session(app)
    client = ServerClient(BASE, session=session)
    name = unique_name()
    client.register(name, PASSWORD, device_keys())
    with pytest.raises(AuthenticationFailed):
        client.add_device(name, "wrong-password-x", device_keys())
    body = {"username": name, "password": PASSWORD,
            "device": device_keys().to_json()}
    resp = session.post(BASE + "/v1/devices", json=body, timeout=5)
    assert resp.status_code == 429
    assert resp.headers["Content-Type"] == "application/problem+json"
    assert 1 <= int(resp.headers["Retry-After"]) <= 900
    assert resp.json()["type"] == TooManyAttempts.problem_type()


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_one_time_prekeys_cannot_be_drained(engine: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    """Before: 120 bundle fetches took a device from 97 EC + 17 KEM one-time keys to 0/0.
    Now each target hands out at most `one_time_prekey_fetches_per_target` a window (bundles
    without them afterwards, so others still reach it), and each requester is limited."""
    db = str(tmp_path / "d.db") if engine == "sqlite" else request.getfixturevalue("pg_dsn")
    clock = FakeClock()
    client = _app(db, clock, one_time_prekey_fetches_per_target=5,
                  bundle_fetches_per_requester=40)
    bob, mallory, carol = unique_name(), unique_name(), unique_name()
    bob_device = client.register(bob, PASSWORD, device_keys(one_time=20, kem=20))
    mallory_client = ServerClient(BASE, session=client._session)
    mallory_client.register(mallory, PASSWORD, device_keys())
    handed = 0
    for _ in range(40):
        (bundle,) = mallory_client.fetch_bundles(bob)
        handed += bundle.one_time_prekey is not None
    assert handed == 5
    with pytest.raises(RateLimited) as limited:
        mallory_client.fetch_bundles(bob)
    assert limited.value.retry_after >= 1
    bob_client = ServerClient(BASE, bob_device, session=client._session)
    count = bob_client.prekey_count()
    assert (count.one_time_prekeys, count.kem_prekeys) == (15, 15)
    carol_client = ServerClient(BASE, session=client._session)
    carol_client.register(carol, PASSWORD, device_keys())
    (bundle,) = carol_client.fetch_bundles(bob)  # others still reach bob (no one-time key now)
    assert bundle.identity_key and bundle.one_time_prekey is None
    assert bundle.kem_prekey_last_resort
    clock.advance(3601)  # a new window
    (bundle,) = carol_client.fetch_bundles(bob)
    assert bundle.one_time_prekey is not None
    assert bob_client.receive().prekeys_low is False


def test_a_strangers_envelope_does_not_make_it_a_contact(tmp_path: Path) -> None:
    """Device notices go to the accounts one has sent to, and to those whose messages one
    accepted. Before, one garbage envelope from a stranger made it a contact that heard of every
    later device change of the recipient; now the recipient acknowledges it as refused."""
    clock = FakeClock()
    base = _app(str(tmp_path / "c.db"), clock)
    alice, stranger = unique_name(), unique_name()
    a1 = ServerClient(BASE, base.register(alice, PASSWORD, device_keys()),
                      session=base._session)
    s1 = ServerClient(BASE, session=base._session)
    s1.register(stranger, PASSWORD, device_keys())
    s1.send(alice, [OutgoingEnvelope(alice, 1, b"garbage")])
    ServerClient(BASE, session=base._session).add_device(alice, PASSWORD, device_keys())
    assert [e.kind for e in s1.receive().envelopes] == []  # no notice of alice's new device
    got = a1.receive().envelopes
    garbage = [e.id for e in got if e.kind == "message"]
    a1.acknowledge([e.id for e in got], refused=garbage)  # alice's client could not open it
    ServerClient(BASE, session=base._session).add_device(alice, PASSWORD, device_keys())
    assert [e.kind for e in s1.receive().envelopes] == []  # still not a contact
    a1.acknowledge(e.id for e in a1.receive().envelopes)
    a1.send(stranger, [OutgoingEnvelope(stranger, 1, b"hello"),
                       OutgoingEnvelope(alice, 2, b"hello (sync)"),
                       OutgoingEnvelope(alice, 3, b"hello (sync)")])
    ServerClient(BASE, session=base._session).add_device(alice, PASSWORD, device_keys())
    kinds = [e.kind for e in s1.receive().envelopes]
    assert kinds == ["message", "device_added"]  # alice chose to talk: now it hears of them


def test_an_accepted_message_makes_its_sender_a_contact(tmp_path: Path) -> None:
    clock = FakeClock()
    base = _app(str(tmp_path / "k.db"), clock)
    alice, bob = unique_name(), unique_name()
    a1 = ServerClient(BASE, base.register(alice, PASSWORD, device_keys()), session=base._session)
    b1 = ServerClient(BASE, session=base._session)
    b1.register(bob, PASSWORD, device_keys())
    b1.send(alice, [OutgoingEnvelope(alice, 1, b"hi")])
    a1.acknowledge(e.id for e in a1.receive().envelopes)  # accepted
    ServerClient(BASE, session=base._session).add_device(alice, PASSWORD, device_keys())
    assert [e.kind for e in b1.receive().envelopes] == ["device_added"]


def test_quotas_on_queues_sends_and_attachments(tmp_path: Path) -> None:
    """Before: 30 MiB queued into a victim in 0.6 s, five 22 MiB attachments in 1.1 s, no
    limit on sends. Each is now a 429 with Retry-After, documented in Settings."""
    clock = FakeClock()
    base = _app(str(tmp_path / "q.db"), clock, max_queued_bytes_per_device=1000,
                sends_per_device_per_minute=4, attachment_bytes_per_hour=1000)
    alice, bob = unique_name(), unique_name()
    a1 = ServerClient(BASE, base.register(alice, PASSWORD, device_keys()), session=base._session)
    b1 = ServerClient(BASE, session=base._session)
    b1.register(bob, PASSWORD, device_keys())
    b1.send(alice, [OutgoingEnvelope(alice, 1, b"x" * 600)])
    with pytest.raises(QueueFull) as full:
        b1.send(alice, [OutgoingEnvelope(alice, 1, b"y" * 600)])
    assert full.value.retry_after >= 1
    a1.acknowledge(e.id for e in a1.receive().envelopes)  # alice drains her queue
    b1.send(alice, [OutgoingEnvelope(alice, 1, b"y" * 600)])
    b1.send(alice, [OutgoingEnvelope(alice, 1, b"z")])
    with pytest.raises(RateLimited):  # the fourth send this minute (the refused one counted)
        b1.send(alice, [OutgoingEnvelope(alice, 1, b"w")])
    clock.advance(61)
    b1.send(alice, [OutgoingEnvelope(alice, 1, b"w")])
    b1.upload_attachment(b"a" * 600)
    with pytest.raises(RateLimited):
        b1.upload_attachment(b"b" * 600)
    a1.upload_attachment(b"c" * 600)  # per account
    clock.advance(3601)
    b1.upload_attachment(b"b" * 600)
