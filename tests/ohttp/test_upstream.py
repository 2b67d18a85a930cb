"""The hop client (ohttp_relay.upstream, on urllib3) against scripted raw-socket upstreams."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ohttp_relay.errors import (
    UpstreamError,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnreachable,
)
from ohttp_relay.upstream import UpstreamClient


def _read_request(conn: socket.socket) -> bytes:
    """One whole request: the head, then as many body bytes as its Content-Length says (the
    client may write the body in a later segment than the head)."""
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
                piece = conn.recv(65536)
                if not piece:
                    break
                body += piece
    return head + b"\r\n\r\n" + body


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


def _url(port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


def test_keep_alive_exact_fields_and_content_length() -> None:
    def script(conn: _Recorder, _index: int) -> None:
        while conn.request():
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: message/ohttp-res\r\n"
                         b"Content-Length: 5\r\n\r\nhello")

    with _server(script) as (port, seen, accepted):
        client = UpstreamClient()
        for _ in range(3):
            resp = client.request("POST", _url(port, "/gateway"),
                                  headers=[("Content-Type", "message/ohttp-req")],
                                  body=b"sealed", limit=100)
            assert (resp.status, resp.read_all()) == (200, b"hello")
            assert resp.header("content-type") == "message/ohttp-res"
    assert len(accepted) == 1  # one kept-alive connection
    # Exactly the caller's fields plus Host and Content-Length: no User-Agent, no
    # Accept-Encoding, nothing else of the client library's.
    head, _, body = seen[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /gateway HTTP/1.1"
    assert sorted(line.split(b":")[0].lower() for line in lines[1:]) == [
        b"content-length", b"content-type", b"host"]
    assert f"Host: 127.0.0.1:{port}".encode() in lines
    assert body == b"sealed"


def test_chunked_response_with_trailers_and_informational() -> None:
    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n"
                     b"X-Trailer: t\r\n\r\n")

    with _server(script) as (port, _seen, _accepted):
        resp = UpstreamClient().request("GET", _url(port, "/x?q=1"), headers=[], body=b"",
                                        limit=100)
        assert (resp.status, resp.read_all()) == (201, b"abcde")


def test_idle_connection_closed_by_server_is_reopened() -> None:
    closed = threading.Event()

    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        conn.conn.close()  # an idle keep-alive connection timed out
        closed.set()

    with _server(script) as (port, seen, accepted):
        client = UpstreamClient()
        for _ in range(3):
            closed.clear()
            resp = client.request("POST", _url(port), headers=[], body=b"x", limit=10)
            assert resp.read_all() == b"ok"
            assert closed.wait(5)
            time.sleep(0.05)
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
        client = UpstreamClient(replay_safe=replay_safe)
        body = b"x" if method == "POST" else b""
        assert client.request(method, _url(port), headers=[], body=body,
                              limit=10).read_all() == b"ok"
        if retried:
            assert client.request(method, _url(port), headers=[], body=body,
                                  limit=10).read_all() == b"ok"
            assert len(accepted) == 2
        else:
            with pytest.raises(UpstreamError):
                client.request(method, _url(port), headers=[], body=body, limit=10)
            assert len(accepted) == 1
    assert len(seen) == (2 if retried else 1)  # the unread copy was never processed


@pytest.mark.parametrize("head", [
    b"Content-Length: 5\r\nContent-Length: 6",  # conflicting: a planted next response
    b"Content-Length: 5\r\nContent-Length: 5",  # repeated
    b"Content-Length: 5, 6",
    b"Content-Length: +5",
    b"Content-Length: 0x5",
    b"Content-Length: 005",
    b"Content-Length: 5\r\nTransfer-Encoding: chunked",
])
def test_ambiguous_framing_is_refused_and_the_connection_never_reused(head: bytes) -> None:
    def script(conn: _Recorder, _index: int) -> None:
        while conn.request():
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\nhello!"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nplanted")

    with _server(script) as (port, _seen, accepted):
        client = UpstreamClient()
        with pytest.raises(UpstreamError):
            client.request("GET", _url(port), headers=[], body=b"", limit=100)
        with pytest.raises(UpstreamError):  # a new connection, not the planted response
            client.request("GET", _url(port), headers=[], body=b"", limit=100)
    assert len(accepted) == 2


def test_size_cap_declared_and_streamed() -> None:
    bodies = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n" + b"x" * 50,
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"19\r\n" + b"y" * 25 + b"\r\n0\r\n\r\n",
                   b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 30])

    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        conn.sendall(next(bodies))

    with _server(script) as (port, _seen, _accepted):
        client = UpstreamClient()
        with pytest.raises(UpstreamTooLarge):
            client.request("GET", _url(port), headers=[], body=b"", limit=20)
        for _ in range(2):
            resp = client.request("GET", _url(port), headers=[], body=b"", limit=20)
            with pytest.raises(UpstreamTooLarge):
                resp.read_all()


def test_truncated_garbage_and_timeout() -> None:
    bodies = iter([b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
                   b"garbage\r\n\r\n",
                   None])

    def script(conn: _Recorder, _index: int) -> None:
        conn.request()
        data = next(bodies)
        if data is None:
            time.sleep(1.5)  # never answers in time
            return
        conn.sendall(data)

    with _server(script) as (port, _seen, _accepted):
        client = UpstreamClient(read_timeout=0.5)
        resp = client.request("GET", _url(port), headers=[], body=b"", limit=20)
        with pytest.raises(UpstreamError):
            resp.read_all()
        with pytest.raises(UpstreamError):
            client.request("POST", _url(port), headers=[], body=b"x", limit=20)
        with pytest.raises(UpstreamTimeout):
            client.request("POST", _url(port), headers=[], body=b"x", limit=20)


def test_unreachable_and_unsafe_requests() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = UpstreamClient(connect_timeout=1)
    with pytest.raises(UpstreamUnreachable):
        client.request("GET", _url(port), headers=[], body=b"", limit=10)
    for method, target, headers in [("GET", "/a b", []), ("GET\r\n", "/", []),
                                    ("GET", "/", [("x", "a\r\nInjected: 1")]),
                                    ("GET", "/", [("bad name", "v")])]:
        with pytest.raises(UpstreamError):
            client.request(method, _url(port, target), headers=headers, body=b"", limit=10)
