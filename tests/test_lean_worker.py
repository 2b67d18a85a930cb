"""The lean request path (e2ee_core.infra.http1 + worker.LeanWorker).

Unit and property tests of the strict head recogniser and the response head, then black-box
tests over raw sockets: the environ an app sees under LeanWorker equals the one gunicorn builds
(KeepAliveWorker, same app, same bytes) for simple and for not-simple requests, response framing,
errors, and mixed pipelines where the lean path hands requests over to gunicorn."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2ee_core.infra import http1
from e2ee_core.infra.serving import KEEPALIVE_WORKER, LEAN_WORKER
from tests.apps import create_environ_app
from tests.support import LiveServer

LIMITS = http1.Limits(proxy_fields=frozenset({"X-FORWARDED-PROTO", "FORWARDED"}))


# --- the head recogniser ---------------------------------------------------------------------

def test_a_simple_head_is_recognised() -> None:
    data = (b"POST /relay?x=1 HTTP/1.1\r\nHost: a:1\r\nContent-Type:  message/ohttp-req \r\n"
            b"Content-Length: 3\r\nAccept: a\r\nAccept: b\r\n\r\nabcNEXT")
    head = http1.parse_simple_head(data, LIMITS)
    assert isinstance(head, http1.SimpleHead)
    assert (head.method, head.path, head.query, head.content_length) == ("POST", "/relay", "x=1", 3)
    assert head.fields == (("HOST", "a:1"), ("CONTENT-TYPE", "message/ohttp-req"),
                           ("CONTENT-LENGTH", "3"), ("ACCEPT", "a"), ("ACCEPT", "b"))
    assert data[head.size:] == b"abcNEXT" and not head.close


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.0\r\n\r\n",                                   # not HTTP/1.1
    b"GET http://a/ HTTP/1.1\r\n\r\n",                           # absolute-form
    b"GET /a#b HTTP/1.1\r\n\r\n",                                # fragment
    b"BREW / HTTP/1.1\r\n\r\n",                                  # uncommon method
    b"get / HTTP/1.1\r\n\r\n",                                   # lower-case method
    b"GET  / HTTP/1.1\r\n\r\n",                                  # two spaces
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",            # a Latin-1 "digit"
    b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
    b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"GET / HTTP/1.1\r\nX_Forwarded_For: 1.2.3.4\r\n\r\n",          # underscore in a name
    b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n",         # a proxy field
    b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n",                       # obsolete line folding
    b"GET / HTTP/1.1\r\nA : b\r\n\r\n",                            # space before the colon
    b"GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",                          # bare CR
    b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n",                         # NUL
    b"GET / HTTP/1.1\nA: b\r\n\r\n",                               # bare LF
    b"GET / HTTP/1.1\r\n: b\r\n\r\n",                              # empty name
])
def test_everything_else_goes_to_gunicorn(data: bytes) -> None:
    assert http1.parse_simple_head(data, LIMITS) is None


def test_limits_hand_the_request_to_gunicorn() -> None:
    small = http1.Limits(request_line=20, fields=2, field_size=10)
    assert http1.parse_simple_head(b"GET /" + b"a" * 30 + b" HTTP/1.1\r\n\r\n", small) is None
    assert http1.parse_simple_head(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", small) is None
    assert http1.parse_simple_head(b"GET / HTTP/1.1\r\nA: 123456789\r\n\r\n", small) is None
    assert http1.parse_simple_head(b"GET / HTTP/1.1\r\nA: " + b"1" * (small.max_head + 1),
                                   small) is None


_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-!#$%&'*+.^`|~",
                 min_size=1, max_size=12)
_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20)
_PATH = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e, exclude_characters="#?"),
                max_size=20).map(lambda p: "/" + p)
_FIELDS = st.lists(st.tuples(_TOKEN, _VALUE), max_size=6).filter(
    lambda fs: not any(n.upper() in ("CONTENT-LENGTH", "HOST", "CONTENT-TYPE", "TRANSFER-ENCODING",
                                     "EXPECT", "UPGRADE", "HTTP2-SETTINGS", "CONNECTION")
                       for n, _ in fs))


def _head(method: str, path: str, fields: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{n}: {v}" for n, v in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@given(st.sampled_from(sorted(http1.SIMPLE_METHODS)), _PATH, _FIELDS)
def test_generated_simple_heads_round_trip(method: str, path: str,
                                           fields: list[tuple[str, str]]) -> None:
    data = _head(method, path, fields)
    head = http1.parse_simple_head(data + b"rest", LIMITS)
    assert isinstance(head, http1.SimpleHead)
    assert head.method == method and head.target == path and head.size == len(data)
    assert head.fields == tuple((n.upper(), v.strip(" \t")) for n, v in fields)
    for cut in range(len(data) - 1):  # every prefix: still possibly simple, never an answer
        assert http1.parse_simple_head(data[:cut], LIMITS) is http1.NEED_MORE


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    result = http1.parse_simple_head(data, LIMITS)
    assert result is None or result is http1.NEED_MORE or isinstance(result, http1.SimpleHead)


# --- the response head -------------------------------------------------------------------------

def _fields(head: http1.ResponseHead) -> list[str]:
    return head.data.decode("latin-1").split("\r\n")


def test_response_framing() -> None:
    known = http1.response_head("200 OK", [("A", "b")], method="GET", known_length=5, close=False)
    assert "Content-Length: 5" in _fields(known) and not known.chunked
    streamed = http1.response_head("200 OK", [], method="GET", known_length=None, close=False)
    assert "Transfer-Encoding: chunked" in _fields(streamed) and streamed.chunked
    head = http1.response_head("200 OK", [], method="HEAD", known_length=None, close=False)
    assert head.bodiless and not head.chunked
    empty = http1.response_head("204 No Content", [("Content-Length", "0")], method="GET",
                                known_length=0, close=False)
    assert empty.bodiless and not any(f.startswith("Content-Length") for f in _fields(empty))
    closing = http1.response_head("200 OK", [("Connection", "close"), ("Keep-Alive", "x"),
                                             ("Transfer-Encoding", "gzip")],
                                  method="GET", known_length=0, close=False)
    assert closing.close and "Connection: close" in _fields(closing)
    assert not any(f.startswith(("Keep-Alive", "Transfer-Encoding")) for f in _fields(closing))


@given(st.text(max_size=20), st.text(max_size=40))
def test_response_fields_never_inject_lines(name: str, value: str) -> None:
    try:
        head = http1.response_head("200 OK", [(name, value)], method="GET", known_length=0,
                                   close=False)
    except http1.ResponseHeadError as err:  # a fixed message, never the field itself
        assert str(err) in ("invalid response field name", "invalid response field value",
                            "invalid Content-Length")
        return
    assert head.data.count(b"\r\n\r\n") == 1 and head.data.endswith(b"\r\n\r\n")
    assert b"\n" not in head.data.replace(b"\r\n", b"")


@pytest.mark.parametrize("status", ["", "20", "2000 OK", "abc OK", "200 OK\r\nX: y", "099 x",
                                    "200 O\x00K", "200\tOK"])
def test_bad_status_lines_are_refused(status: str) -> None:
    with pytest.raises(http1.ResponseHeadError):
        http1.response_head(status, [], method="GET", known_length=0, close=False)


# --- black box: LeanWorker against gunicorn's own handling ------------------------------------

class _Conn:
    """One raw HTTP/1.1 connection; responses read with Content-Length or chunked framing."""

    def __init__(self, server: LiveServer) -> None:
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError("closed")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        status_line = self._line()
        while status_line.split()[1].startswith(b"1"):  # 100 Continue
            while self._line():
                pass
            status_line = self._line()
        fields: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        status = int(status_line.split()[1])
        body = b""
        if method == "HEAD" or status in (204, 304):
            return status, fields, body
        if fields.get("transfer-encoding") == "chunked":
            while size := int(self._line().split(b";")[0], 16):
                while len(self.buf) < size + 2:
                    self._fill()
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
            self._line()
            return status, fields, body
        length = int(fields.get("content-length", "0"))
        while len(self.buf) < length:
            if not self._fill():
                raise ConnectionError("closed")
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, fields, body

    def closed(self) -> bool:
        try:
            return not self.buf and not self._fill()
        except OSError:
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> _Conn:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, LiveServer]]:
    from pathlib import Path

    from tests.support import start_live_server

    log_dir = Path(tmp_path_factory.mktemp("lean-logs"))
    started = {name: start_live_server(create_environ_app, {}, log_dir, threads=4,
                                       keepalive=5, worker_class=cls)
               for name, cls in (("lean", LEAN_WORKER), ("gunicorn", KEEPALIVE_WORKER))}
    yield started
    for server in started.values():
        server.stop()


def _exchange(server: LiveServer, raw: bytes, method: str = "GET"
              ) -> tuple[int, dict[str, str], bytes]:
    with _Conn(server) as conn:
        conn.send(raw)
        return conn.response(method)


def _seen(server: LiveServer, raw: bytes) -> tuple[int, dict[str, object]]:
    """Status and what the app saw, minus what differs by server (its port, our Host)."""
    status, _fields, body = _exchange(server, raw)
    if status != 200:
        return status, {}
    seen: dict[str, object] = json.loads(body)
    environ = seen["environ"]
    assert isinstance(environ, dict)
    environ.pop("SERVER_PORT", None)  # the two servers listen on different ports
    return status, seen


def _compare(servers: dict[str, LiveServer], raw: bytes, *, simple: bool) -> None:
    (status, lean), (their_status, theirs) = (_seen(servers[n], raw) for n in ("lean", "gunicorn"))
    assert status == their_status
    if status == 200:
        assert theirs.pop("handled_by") == "gunicorn"
        assert lean.pop("handled_by") == ("lean" if simple else "gunicorn")
        assert lean == theirs


SIMPLE_REQUESTS = [
    b"GET /a%20b/%C3%A9?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nX-Empty:\r\nConnection: close\r\n\r\n",
    b"DELETE /%2F%ff HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n",
]
OTHER_REQUESTS = [  # not the simple shape: gunicorn handles these under both workers
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"GET /old HTTP/1.0\r\nHost: h\r\n\r\n",
    b"GET /f HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n",
]


@pytest.mark.parametrize("raw", SIMPLE_REQUESTS)
def test_simple_requests_take_the_lean_path_and_see_gunicorns_environ(
        servers: dict[str, LiveServer], raw: bytes) -> None:
    _compare(servers, raw, simple=True)


@pytest.mark.parametrize("raw", OTHER_REQUESTS)
def test_other_requests_are_handed_to_gunicorn(servers: dict[str, LiveServer],
                                               raw: bytes) -> None:
    _compare(servers, raw, simple=False)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "DELETE", "OPTIONS", "PATCH"]), path=_PATH,
       query=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                   exclude_characters="#"), max_size=12),
       fields=_FIELDS, body=st.binary(max_size=40))
def test_generated_requests_see_the_same_environ(servers: dict[str, LiveServer], method: str,
                                                 path: str, query: str,
                                                 fields: list[tuple[str, str]],
                                                 body: bytes) -> None:
    target = path + (f"?{query}" if query else "")
    raw = _head(method, target, [("Host", "h"), *fields, ("Content-Length", str(len(body)))])
    simple = http1.parse_simple_head(raw, LIMITS) is not None
    _compare(servers, raw + body, simple=simple)


def test_the_lean_path_serves_keepalive_pipelines_mixed_with_gunicorn_requests(
        servers: dict[str, LiveServer]) -> None:
    with _Conn(servers["lean"]) as conn:
        conn.send(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
                  b"POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                  b"POST /three HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"1\r\nx\r\n0\r\n\r\n"
                  b"GET /four HTTP/1.1\r\nHost: h\r\n\r\n")
        paths = []
        for _ in range(4):
            status, _f, body = conn.response()
            assert status == 200
            seen = json.loads(body)
            paths.append((seen["environ"]["PATH_INFO"], seen["body"]))
        assert paths == [("/one", ""), ("/two", "abc"), ("/three", "x"), ("/four", "")]


def test_streamed_head_and_bodiless_responses(servers: dict[str, LiveServer]) -> None:
    with _Conn(servers["lean"]) as conn:
        conn.send(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        status, fields, body = conn.response()
        assert (status, fields["transfer-encoding"], body) == (200, "chunked", b"one,two,three")
        conn.send(b"HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        status, fields, body = conn.response("HEAD")
        assert status == 200 and "content-length" not in fields
        conn.send(b"GET /empty HTTP/1.1\r\nHost: h\r\n\r\n")
        status, fields, _ = conn.response()
        assert status == 204 and "content-length" not in fields
        conn.send(b"HEAD /unread HTTP/1.1\r\nHost: h\r\n\r\n")  # a declared length, no body
        status, fields, _ = conn.response("HEAD")
        assert status == 200 and fields["content-length"] == "2"
        conn.send(b"GET /again HTTP/1.1\r\nHost: h\r\n\r\n")
        assert conn.response()[0] == 200  # still the same kept-alive connection


def test_a_crashing_app_gets_a_500_without_details(servers: dict[str, LiveServer]) -> None:
    with _Conn(servers["lean"]) as conn:
        conn.send(b"GET /crash HTTP/1.1\r\nHost: h\r\n\r\n")
        status, fields, body = conn.response()
        assert status == 500 and fields["connection"] == "close"
        assert b"secret" not in body and conn.closed()
    assert "secret-crash-detail" not in servers["lean"].logs()
    assert "class=RuntimeError" in servers["lean"].logs()


def test_a_field_with_a_line_break_is_never_sent(servers: dict[str, LiveServer]) -> None:
    with _Conn(servers["lean"]) as conn:
        conn.send(b"GET /badheader HTTP/1.1\r\nHost: h\r\n\r\n")
        status, fields, body = conn.response()
        assert status == 500 and "set-cookie" not in fields and b"never sent" not in body


def test_a_short_body_closes_the_connection(servers: dict[str, LiveServer]) -> None:
    with _Conn(servers["lean"]) as conn:
        conn.send(b"GET /short HTTP/1.1\r\nHost: h\r\n\r\n")
        head = conn._line()
        assert head.startswith(b"HTTP/1.1 200")
        while conn._line():
            pass
        while conn._fill():
            pass
        assert conn.buf == b"abc"  # then the connection ends: the framing cannot be kept


def test_unread_content_is_skipped_or_the_connection_closed(
        servers: dict[str, LiveServer]) -> None:
    # all of the content arrived with the head: skipped, the connection stays usable
    with _Conn(servers["lean"]) as conn:
        conn.send(b"POST /unread HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nabcd"
                  b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n")
        assert conn.response()[2] == b"ok"
        assert json.loads(conn.response()[2])["environ"]["PATH_INFO"] == "/next"
    # content still to come: the server closes instead of waiting for it
    with _Conn(servers["lean"]) as conn:
        conn.send(b"POST /unread HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\nab")
        assert conn.response()[2] == b"ok"
        assert conn.closed()


def test_malformed_requests_get_gunicorns_answer(servers: dict[str, LiveServer]) -> None:
    for raw in (b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
                b"GET /\x01 HTTP/1.1\r\n\r\n"):
        answers = [_exchange(servers[name], raw)[0] for name in ("lean", "gunicorn")]
        assert answers[0] == answers[1] and 400 <= answers[0] < 500


def test_large_bodies_are_read_as_the_app_asks(servers: dict[str, LiveServer]) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    status, _f, answer = _exchange(
        servers["lean"],
        b"POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert status == 200 and json.loads(answer)["body"].encode("latin-1") == body


def test_services_name_the_lean_worker(live_server: Callable[..., LiveServer]) -> None:
    server = live_server(create_environ_app, _threads=2)
    assert "Using worker: e2ee_core.infra.worker.LeanWorker" in server.logs()


@given(st.floats(min_value=-1e9, max_value=4e9, allow_nan=False))
def test_http_date_matches_email_utils(now: float) -> None:
    import math
    from email.utils import formatdate

    # the second that holds ``now`` (formatdate itself rounds to microseconds first)
    assert http1.http_date(now) == formatdate(math.floor(now), usegmt=True)
    assert http1.http_date(now) == http1.http_date(now)  # cached or not, the same text
