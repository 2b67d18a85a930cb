"""Abuse limits of the delivery server: password guessing (per account, shared by every server
process through the store, and per client address), with 429 and Retry-After."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import AuthenticationFailed, TooManyAttempts
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
