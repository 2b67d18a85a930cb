"""The lean keep-alive HTTP/1.1 hop client against a scripted socket server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ohttp_relay.hop import HopClient, HopError, HopTooLarge, HopUnreachable


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            want = int(line.split(b":", 1)[1])
            while len(body) < want:
                body += conn.recv(65536)
    return data


class _Recorder:
    def __init__(self, conn: socket.socket, seen: list[bytes]) -> None:
        self.conn = conn
        self.seen = seen

    def request(self) -> bytes:
        data = _read_request(self.conn)
        if data:
            self.seen.append(data)
        return data

    def sendall(self, data: bytes) -> None:
        self.conn.sendall(data)


@contextmanager
def _server(script: Callable[[_Recorder, int], None]
            ) -> Iterator[tuple[int, list[bytes], list[int]]]:
    """Each accepted connection runs ``script(conn, index)``; requests seen are recorded."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    seen: list[bytes] = []
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            with conn:
                try:
                    script(_Recorder(conn, seen), len(accepted))
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port, seen, accepted
    finally:
        listener.close()


def test_keep_alive_one_write_exact_fields_and_content_length() -> None:
    def script(conn: _Recorder, _index: int) -> None:
        while conn.request():
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: message/ohttp-res\r\n"
                         b"Content-Length: 5\r\n\r\nhello")

    with _server(script) as (port, seen, accepted):
        client = HopClient()
        for _ in range(3):
            resp = client.request("POST", ("127.0.0.1", port), "/gateway",
                                  headers=[("Content-Type", "message/ohttp-req")],
                                  body=b"sealed", limit=100)
            assert (resp.status, resp.content) == (200, b"hello")
            assert resp.header("content-type") == "message/ohttp-res"
    assert len(accepted) == 1  # one kept-alive connection
    assert seen[0] == (f"POST /gateway HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "Content-Type: message/ohttp-req\r\nContent-Length: 6\r\n\r\n"
                       "sealed").encode()


def test_chunked_response_with_trailers_and_informational() -> None:
    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n"
                     b"X-Trailer: t\r\n\r\n")

    with _server(script) as (port, _seen, _accepted):
        resp = HopClient().request("GET", ("127.0.0.1", port), "/x?q=1", headers=[],
                                   body=b"", limit=100)
    assert (resp.status, resp.content) == (201, b"abcde")


def test_idle_connection_closed_by_server_is_reopened() -> None:
    closed = threading.Event()

    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.conn.close()  # an idle keep-alive connection timed out
        closed.set()

    with _server(script) as (port, seen, accepted):
        client = HopClient()
        for _ in range(3):
            closed.clear()
            resp = client.request("POST", ("127.0.0.1", port), "/", headers=[], body=b"x",
                                  limit=10)
            assert resp.content == b"ok"
            assert closed.wait(5)
    assert len(accepted) == 3
    assert len(seen) == 3  # each request was sent (and processed) exactly once


def _racing_server() -> Callable[[_Recorder, int], None]:
    """The first connection answers one request, then closes without reading the next one (the
    keep-alive timeout racing the client's write); later connections answer normally."""
    def script(conn: _Recorder, index: int) -> None:
        conn.request()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if index == 1:
            time.sleep(0.3)  # the client writes its second request meanwhile; never read
            return
        while conn.request():
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return script


@pytest.mark.parametrize(("method", "replay_safe", "retried"),
                         [("POST", True, True), ("GET", False, True), ("POST", False, False)])
def test_request_unanswered_on_a_closing_connection_is_repeated_only_when_harmless(
        method: str, replay_safe: bool, retried: bool) -> None:
    with _server(_racing_server()) as (port, seen, accepted):
        client = HopClient(replay_safe=replay_safe)
        address = ("127.0.0.1", port)
        body = b"x" if method == "POST" else b""
        assert client.request(method, address, "/", headers=[], body=body,
                              limit=10).content == b"ok"
        if retried:
            assert client.request(method, address, "/", headers=[], body=body,
                                  limit=10).content == b"ok"
            assert len(accepted) == 2
        else:
            with pytest.raises(HopError):
                client.request(method, address, "/", headers=[], body=body, limit=10)
            assert len(accepted) == 1
    assert len(seen) == (2 if retried else 1)  # the unread copy was never processed


def test_close_delimited_too_large_and_truncated() -> None:
    bodies = iter([b"HTTP/1.0 200 OK\r\n\r\nuntil-close",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"x" * 50,
                   b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
                   b"garbage\r\n\r\n"])

    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        conn.sendall(next(bodies))

    with _server(script) as (port, _seen, _accepted):
        client = HopClient()
        address = ("127.0.0.1", port)
        assert client.request("GET", address, "/", headers=[], body=b"",
                              limit=20).content == b"until-close"
        with pytest.raises(HopTooLarge):
            client.request("GET", address, "/", headers=[], body=b"", limit=20)
        with pytest.raises(HopError):
            client.request("GET", address, "/", headers=[], body=b"", limit=20)
        with pytest.raises(HopError):
            client.request("GET", address, "/", headers=[], body=b"", limit=20)


def test_unreachable_and_unsafe_request_lines() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HopClient(connect_timeout=1)
    with pytest.raises(HopUnreachable):
        client.request("GET", ("127.0.0.1", port), "/", headers=[], body=b"", limit=10)
    for method, target, headers in [("GET", "/a b", []), ("GET\r\n", "/", []),
                                    ("GET", "/", [("x", "a\r\nInjected: 1")]),
                                    ("GET", "/", [("bad name", "v")]),
                                    ("GET", "/", [("x", "snow \u2603")])]:
        with pytest.raises(HopError):
            client.request(method, ("127.0.0.1", port), target, headers=headers, body=b"",
                           limit=10)
