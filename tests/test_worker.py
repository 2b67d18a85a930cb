"""The gunicorn worker for threaded services (e2ee_core.infra.worker.KeepAliveWorker), black-box
over real sockets: keep-alive and pipelining, waiting threads giving way to queued work, the
keep-alive timeout, and shutdown with a connection held by a waiting thread."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.apps import create_worker_probe_app
from tests.support import LiveServer


def _connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode()


class _Responses:
    """Reads HTTP/1.1 responses (Content-Length framed) off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def next(self) -> tuple[int, bytes, dict[str, str]]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(fields["content-length"])
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split()[1]), body, fields

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data


def _body_path(body: bytes) -> str:
    return body.decode().split()[0]


def test_threaded_services_use_the_keepalive_worker(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_worker_probe_app, _threads=4)
    assert "Using worker: e2ee_core.infra.worker.LeanWorker" in server.logs()
    single = live_server(create_worker_probe_app)
    assert "Using worker: sync" in single.logs()


def test_keepalive_and_pipelined_requests_on_one_connection(
        live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_worker_probe_app, _threads=4)
    with _connect(server) as sock:
        responses = _Responses(sock)
        seen = []
        for i in range(60):  # one request at a time: the handling thread keeps the connection
            sock.sendall(_request(f"/seq{i}"))
            status, body, fields = responses.next()
            assert status == 200 and _body_path(body) == f"/seq{i}"
            assert fields.get("connection", "keep-alive").lower() != "close"
            seen.append(int(body.split()[1]))
        assert seen == sorted(seen) and len(set(seen)) == 60
        sock.sendall(b"".join(_request(f"/pipe{i}") for i in range(5)))  # in one segment
        assert [_body_path(responses.next()[1]) for _ in range(5)] == [
            f"/pipe{i}" for i in range(5)]


def test_more_connections_than_threads_all_served(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_worker_probe_app, _threads=3)

    def client(n: int) -> list[str]:
        with _connect(server) as sock:
            responses = _Responses(sock)
            got = []
            for i in range(25):
                sock.sendall(_request(f"/c{n}-{i}"))
                got.append(_body_path(responses.next()[1]))
                if i % 5 == 0:
                    time.sleep(0.02)  # idle a little: connections move between threads
            return got

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(client, range(10)))
    assert results == [[f"/c{n}-{i}" for i in range(25)] for n in range(10)]


def test_a_waiting_thread_gives_way_to_queued_work(live_server: Callable[..., LiveServer]) -> None:
    """Two threads: one waits on idle connection A, the other is stuck in a slow request on B.
    A request on C must not wait: the waiting thread hands A back to the poll loop and serves
    C, so C is answered before A's next request (sent 0.1 s after C, while the thread would
    still be waiting on A) and while B is still running."""
    server = live_server(create_worker_probe_app, _threads=2, _keepalive=30)
    time.sleep(0.5)  # the start-up probe's connection is closed: no thread waits on it
    # (each connection is opened just before its request: gunicorn hands a new connection to
    # a pool thread at once, which would then wait for its first bytes)
    with _connect(server) as a:
        a_responses = _Responses(a)
        a.sendall(_request("/a"))
        assert _body_path(a_responses.next()[1]) == "/a"  # a thread now waits on A
        with _connect(server) as b:
            b.sendall(_request("/sleep?s=8"))
            time.sleep(0.1)  # the other thread picks up B's slow request
            with _connect(server) as c:
                c.sendall(_request("/c"))
                time.sleep(0.1)  # A's thread would wait up to worker.LINGER = 0.5 s
                a.sendall(_request("/a2"))
                c_path, c_number = _Responses(c).next()[1].decode().split()
                a_path, a_number = a_responses.next()[1].decode().split()
                assert (c_path, a_path) == ("/c", "/a2")
                assert int(c_number) < int(a_number)  # C did not queue behind A's thread
            b.settimeout(0)
            with pytest.raises(BlockingIOError):
                b.recv(1)  # nor behind B's slow request


def test_idle_connection_is_closed_after_the_keepalive_timeout(
        live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_worker_probe_app, _threads=4, _keepalive=1)
    with _connect(server) as sock:
        sock.sendall(_request("/once"))
        responses = _Responses(sock)
        assert _body_path(responses.next()[1]) == "/once"
        assert sock.recv(1) == b""  # closed by the server, not by our 20 s socket timeout


def test_shutdown_with_a_connection_held_by_a_waiting_thread(
        live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_worker_probe_app, _threads=4, _keepalive=60)
    with _connect(server) as sock:
        sock.sendall(_request("/held"))
        assert _body_path(_Responses(sock).next()[1]) == "/held"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        assert sock.recv(1) == b""


