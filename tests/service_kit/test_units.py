"""The serving stack's I/O-free parts: request rules, typed settings, the body guard."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service_kit.asgi_guard import BufferedBody
from service_kit.errors import ConfigError, RefusedRequest
from service_kit.request_rules import check_head
from service_kit.settings import load_settings

OK_HEADERS = [(b"host", b"x")]


def _status(method: str, target: bytes, version: str,
            headers: list[tuple[bytes, bytes]]) -> int | None:
    try:
        check_head(method, target, version, headers)
    except RefusedRequest as refusal:
        return refusal.status
    return None


def test_request_rules() -> None:
    assert _status("GET", b"/a?b=c", "1.1", OK_HEADERS) is None
    assert _status("GET", b"/", "1.0", []) is None  # HTTP/1.0 needs no Host
    assert _status("OPTIONS", b"*", "1.1", OK_HEADERS) is None
    assert _status("GET", b"*", "1.1", OK_HEADERS) == 400
    assert _status("GET", b"/", "0.9", []) == 505
    assert _status("GET", b"/", "2.0", OK_HEADERS) == 505
    assert _status("GET", b"http://a/b", "1.1", OK_HEADERS) == 400
    assert _status("CONNECT", b"a:443", "1.1", OK_HEADERS) == 400
    assert _status("GET", b"/", "1.1", []) == 400
    assert _status("GET", b"/", "1.1", OK_HEADERS * 2) == 400
    for value in (b"00", b"05", b"+5", b"-1", b"5, 5", b" 5", b"0x5", b"", b"1" * 19):
        assert _status("POST", b"/", "1.1", [*OK_HEADERS, (b"content-length", value)]) == 400
    for value in (b"0", b"5", b"123456789"):
        assert _status("POST", b"/", "1.1", [*OK_HEADERS, (b"content-length", value)]) is None
    assert _status("POST", b"/", "1.1", [*OK_HEADERS, (b"transfer-encoding", b"Chunked")]) is None
    for coding in (b"gzip, chunked", b"identity", b"chunked, chunked", b"gzip"):
        assert _status("POST", b"/", "1.1",
                       [*OK_HEADERS, (b"transfer-encoding", coding)]) == 501


@given(st.text(max_size=8), st.binary(max_size=40), st.sampled_from(["0.9", "1.0", "1.1", "2"]),
       st.lists(st.tuples(st.sampled_from([b"host", b"content-length", b"transfer-encoding",
                                           b"x-a"]), st.binary(max_size=12)), max_size=6))
def test_request_rules_never_fail_otherwise(method: str, target: bytes, version: str,
                                            headers: list[tuple[bytes, bytes]]) -> None:
    status = _status(method, target, version, headers)
    assert status in (None, 400, 501, 505)
    if status is None:  # what passes is what the services may act on
        assert target.startswith(b"/") or (target == b"*" and method == "OPTIONS")
        assert version in ("1.0", "1.1")


@dataclass(frozen=True)
class _Example:
    url: str
    limit: int = 3
    ratio: float = 0.5
    flag: bool = False
    secret: str | None = None
    names: Sequence[str] = ()
    routes: Mapping[str, str] = field(default_factory=dict)


def test_settings_typed_and_unknown_keys_refused() -> None:
    got = load_settings(_Example, {"url": "u", "limit": 4, "ratio": 1, "names": ["a"],
                                   "routes": {"/a": "b"}, "secret": None})
    assert got == _Example("u", 4, 1.0, False, None, ("a",), {"/a": "b"})
    bad: list[dict[str, Any]] = [
        {}, {"url": "u", "limt": 4}, {"url": 1}, {"url": "u", "limit": "4"},
        {"url": "u", "limit": True}, {"url": "u", "flag": 1}, {"url": "u", "names": "ab"},
        {"url": "u", "routes": {"/a": 1}}, {"url": "u", "ratio": "x"}, {"url": "u", "secret": 3},
    ]
    for config in bad:
        with pytest.raises(ConfigError):
            load_settings(_Example, config)


def _run(app: BufferedBody, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
         ) -> tuple[list[dict[str, Any]], list[bytes]]:
    sent: list[dict[str, Any]] = []
    seen: list[bytes] = []
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        seen.append(message["body"])
        assert not message["more_body"]
        if message["body"] == b"crash":
            raise RuntimeError("secret detail")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app.app = inner
    asyncio.run(app({"type": "http", "headers": headers}, receive, send))
    return sent, seen


def test_body_guard_reads_whole_bodies_within_the_limit() -> None:
    guard = BufferedBody(lambda *_: None, max_body=10)  # type: ignore[arg-type, return-value]
    sent, seen = _run(guard, [b"ab", b"cd", b""], [])
    assert seen == [b"abcd"] and sent[0]["status"] == 200
    for chunks, headers in (([b"x" * 6, b"y" * 6], []),
                            ([b"x"], [(b"content-length", b"11")])):
        sent, seen = _run(guard, chunks, headers)
        assert seen == [] and sent[0]["status"] == 413
        assert (b"connection", b"close") in sent[0]["headers"]
        assert json.loads(sent[1]["body"])["status"] == 413
    sent, _ = _run(guard, [b"crash"], [])
    assert sent[0]["status"] == 500 and b"secret" not in sent[1]["body"]


class _Transport:
    """Records what the protocol writes; enough of asyncio.Transport for uvicorn."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5555)}.get(name,
                                                                                       default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _feed(data: bytes) -> _Transport:
    """One connection of the services' protocol fed ``data`` in a single read."""
    import uvicorn
    from uvicorn.server import ServerState

    from service_kit.http_protocol import GuardedHttpToolsProtocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def run() -> _Transport:
        config = uvicorn.Config(app=app, http="httptools", lifespan="off", log_config=None)
        config.load()
        protocol = GuardedHttpToolsProtocol(config, ServerState(), {},
                                            asyncio.get_running_loop())
        transport = _Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(data)
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(run())


def test_a_head_over_the_limit_in_one_read_is_refused() -> None:
    """A 160 KB head of 40 fields, each under the field limit, arriving in one read (parsed in
    one go): 431, not served."""
    head = (b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(40)) + b"\r\n")
    transport = _feed(head)
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert transport.closed
    ok = _feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 4000 + b"\r\n\r\n")
    assert not ok.written.startswith(b"HTTP/1.1 431 ")
