"""A device receiving through the push channel (``Messenger.listen``) against the server on its
real stack: the backlog first, then live messages as they are sent, acknowledged over the
socket; reconnecting after the server restarts; stopping on the server's removed answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from e2ee_core.client import DeviceRemoved, Message
from tests.messenger.support import Account
from tests.support import LiveServer


def _wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class _Listener:
    def __init__(self, device: object) -> None:
        self.got: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.device = device
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        def seen(batch: list[Message]) -> None:
            self.got += [m.text for m in batch if m.text is not None]
        try:
            self.device.listen(seen, stop=self.stop)  # type: ignore[attr-defined]
        except BaseException as exc:  # the test reads it
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def test_backlog_then_live_messages_through_the_push_channel(
        stack_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = stack_server()
    alice = Account(server.url, 1, state_dir=tmp_path)
    bob = Account(server.url, 1, state_dir=tmp_path)
    a0, b0 = alice.devices[0], bob.devices[0]
    a0.send_text(bob.name, "while bob was offline")
    listener = _Listener(b0)
    try:
        _wait_for(lambda: listener.got == ["while bob was offline"])
        for i in range(3):
            a0.send_text(bob.name, f"live {i}")
        _wait_for(lambda: listener.got[1:] == ["live 0", "live 1", "live 2"])
    finally:
        listener.close()
    assert listener.error is None
    assert b0.server.receive().envelopes == []  # everything was acknowledged over the socket
    assert b0.receive() == []


def test_a_removed_device_stops_listening(stack_server: Callable[..., LiveServer],
                                          tmp_path: Path) -> None:
    server = stack_server()
    alice = Account(server.url, 2, state_dir=tmp_path)
    a0, a1 = alice.devices
    listener = _Listener(a1)
    try:
        a0.remove_device(a1.device_id)
        _wait_for(lambda: listener.error is not None)
    finally:
        listener.close()
    assert isinstance(listener.error, DeviceRemoved)


def test_listening_survives_a_server_restart(live_server: Callable[..., LiveServer],
                                             tmp_path: Path) -> None:
    """The connection breaks when the server stops; the device reconnects (backing off) to the
    restarted server on the same port and drains what was sent meanwhile."""
    from e2ee_core.server.app import create_app
    from tests.server.support import FAST_ARGON2
    from tests.support import start_live_server

    db = str(tmp_path / "restart.db")
    first = live_server(create_app, db=db, **FAST_ARGON2)
    alice = Account(first.url, 1, state_dir=tmp_path)
    bob = Account(first.url, 1, state_dir=tmp_path)
    listener = _Listener(bob.devices[0])
    try:
        alice.devices[0].send_text(bob.name, "before the restart")
        _wait_for(lambda: listener.got == ["before the restart"])
        first.stop()
        second = _restart_on(first.port, db, tmp_path, start_live_server, create_app,
                             FAST_ARGON2)
        try:
            alice.devices[0].send_text(bob.name, "after the restart")
            _wait_for(lambda: listener.got[-1:] == ["after the restart"], timeout=30)
        finally:
            second.stop()
    finally:
        listener.close()
    assert listener.error is None


def _restart_on(port: int, db: str, tmp_path: Path, start: Callable[..., LiveServer],
                factory: object, argon: dict[str, int]) -> LiveServer:
    import tests.support as support

    original = support.free_port
    support.free_port = lambda: port  # the same address the device knows
    try:
        return start(factory, {"db": db, **argon}, tmp_path)
    finally:
        support.free_port = original


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_while_listening_sends_go_over_the_socket(stack_server: Callable[..., LiveServer],
                                                  tmp_path: Path) -> None:
    """Before: every send was an HTTP request, also while the device held its push socket."""
    server = stack_server()
    alice = Account(server.url, 1, state_dir=tmp_path)
    bob = Account(server.url, 2, state_dir=tmp_path)
    a0, (b0, b1) = alice.devices[0], bob.devices
    a0.send_text(bob.name, "hello")
    http_sends: list[str] = []
    b0.server._session.hooks["response"].append(
        lambda r, *a, **k: http_sends.append(r.request.path_url)
        if r.request.method == "POST" and r.request.path_url.startswith("/v1/messages")
        and not r.request.path_url.endswith("/ack") else None)
    replied = threading.Event()
    got: list[str] = []
    stop = threading.Event()

    def reply() -> None:
        if got and not replied.is_set():
            replied.set()
            b0.send_text(alice.name, "replied over the socket")  # fans out to a0 and b1

    def seen(batch: list[Message]) -> None:
        got.extend(m.text for m in batch if m.text is not None)

    thread = threading.Thread(target=lambda: b0.listen(seen, stop=stop, on_idle=reply,
                                                       idle_every=0.05), daemon=True)
    thread.start()
    try:
        _wait_for(replied.is_set)
        _wait_for(lambda: any(m.text == "replied over the socket" for m in a0.receive()), 20)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert "replied over the socket" in [m.text for m in b1.receive()]
    # delivery receipts and the reply: all over the socket, none over HTTP
    assert http_sends == []
