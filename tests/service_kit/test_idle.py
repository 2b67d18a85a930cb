"""Idle, half-sent and slow connections hold no application thread: with 210 of them open
against a service, a normal request still answers; with short timeouts they are all closed, the
half-sent ones with a 408 problem."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from tests.apps import create_echo_app
from tests.service_kit.probes import SERVICES, Answer, start_service
from tests.support import LiveServer

PARTIAL_HEAD = b"POST /v1/x HTTP/1.1\r\nHost: idle\r\nContent-Type: text/pl"
SLOW_BODY = b"POST /v1/x HTTP/1.1\r\nHost: idle\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10
KINDS = {"idle": b"", "partial_head": PARTIAL_HEAD, "slow_body": SLOW_BODY}


@contextmanager
def _open(port: int, per_kind: int) -> Iterator[dict[str, list[socket.socket]]]:
    with ExitStack() as stack:
        held: dict[str, list[socket.socket]] = {kind: [] for kind in KINDS}
        for _ in range(per_kind):
            for kind, data in KINDS.items():
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
                if data:
                    sock.sendall(data)
                held[kind].append(sock)
        yield held


def _drain(sock: socket.socket, wait: float) -> Answer:
    sock.settimeout(wait)
    out = b""
    try:
        while piece := sock.recv(65536):
            out += piece
    except TimeoutError:
        return Answer(out, closed=False)
    except ConnectionResetError:
        pass
    return Answer(out, closed=True)


@pytest.mark.parametrize("name", SERVICES)
def test_a_normal_request_answers_with_210_idle_and_slow_connections_open(
        name: str, live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    service = start_service(name, live_server, tmp_path)
    url = service.server.url + service.healthy_path
    with _open(service.server.port, 70) as held:
        for _ in range(5):
            # A bound on the test, not a performance assertion: a thread-per-connection
            # server would not answer at all while 210 connections are held.
            assert requests.get(url, timeout=5).status_code == 200
        assert all(sock.fileno() >= 0 for socks in held.values() for sock in socks)
    assert requests.get(url, timeout=5).status_code == 200


def test_head_and_body_timeouts_close_them(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_echo_app, _limits={"header_timeout": 1.0, "body_timeout": 1.0})
    with _open(server.port, 10) as held:
        time.sleep(1.5)
        answers = {kind: [_drain(sock, 5.0) for sock in socks] for kind, socks in held.items()}
    assert all(a.closed and a.statuses == [] for a in answers["idle"])
    for kind in ("partial_head", "slow_body"):
        for answer in answers[kind]:
            assert answer.closed and answer.statuses == [408], kind
            assert b"application/problem+json" in answer.data
    assert requests.get(server.url + "/after", timeout=5).status_code == 200


def test_a_kept_alive_connection_is_closed_when_idle(
        live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_echo_app, _keepalive=1)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: idle\r\n\r\n")
        answer = _drain(sock, 5.0)
    assert answer.statuses == [200] and answer.closed


def test_a_stalled_next_request_on_a_kept_alive_connection_times_out(
        live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_echo_app, _keepalive=30,
                         _limits={"header_timeout": 1.0, "body_timeout": 1.0})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nHost: idle\r\n\r\nGET /two HTTP/1.1\r\nHost")
        answer = _drain(sock, 5.0)
    assert answer.statuses == [200, 408] and answer.closed


def _children(pid: int) -> list[int]:
    """The worker processes of the server ``pid`` (not multiprocessing's resource tracker)."""
    try:
        found = [int(p) for p in
                 Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    workers = []
    for child in found:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            workers.append(child)
    return workers


def test_a_killed_worker_is_replaced(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_echo_app, _workers=2)
    deadline = time.monotonic() + 30
    while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first = _children(server.proc.pid)
    assert len(first) == 2
    os.kill(first[0], signal.SIGKILL)
    while time.monotonic() < deadline:
        now = _children(server.proc.pid)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.1)
    assert len(now) == 2 and first[0] not in now
    for _ in range(10):
        assert requests.get(server.url + "/after", timeout=5).status_code == 200


def test_shutdown_is_bounded_with_a_request_in_flight(
        live_server: Callable[..., LiveServer]) -> None:
    """SIGTERM while a request takes longer than the graceful timeout: the server still exits
    (after about GRACEFUL_TIMEOUT seconds), it is not killed."""
    from tests.apps import create_worker_probe_app

    server = live_server(create_worker_probe_app)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /sleep?s=60 HTTP/1.1\r\nHost: idle\r\n\r\n")
    time.sleep(0.5)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=30)
    elapsed = time.monotonic() - started
    # uvicorn waits GRACEFUL_TIMEOUT (5 s) for the request, then ends by re-raising SIGTERM.
    assert code in (0, -signal.SIGTERM)
    assert elapsed < 30
    sock.close()
