"""Inputs the coverage-guided fuzzer (fuzz/, `make fuzz`, target "wire") found or that its
target made reachable, each a typed refusal now; the inputs sit in fuzz/corpus/wire/."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from e2ee_core.server.app import create_app
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import InvalidRequest, ServerUnreachable
from e2ee_core.server.push_client import PushConnection
from e2ee_core.server.wire import AckRequest, DeviceCredential, decode_ack_frame
from tests.server.support import FAST_ARGON2, PASSWORD, device_keys, unique_name
from tests.support import LiveServer

DEEP = '{"type":"ack","ids":' + "[" * 5000 + "]" * 5000 + "}"


def test_an_ack_frame_decodes() -> None:
    assert decode_ack_frame('{"type":"ack","ids":[3,4],"refused":[4]}') == AckRequest((3, 4), (4,))


@pytest.mark.parametrize("text", [DEEP, "[" * 100_000, "", "not json", '{"type":"envelopes"}',
                                  "[]", '{"type":"ack","ids":[0]}', '{"type":"ack"}'])
def test_a_malformed_ack_frame_is_an_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequest):
        decode_ack_frame(text)


def test_a_deeply_nested_frame_closes_the_socket_as_a_bad_frame(
        live_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    # json.loads raises RecursionError (not a ValueError) on deep nesting: the push channel let
    # it escape its reader instead of closing with 1003 like any other malformed frame.
    server = live_server(create_app, _threads=2, db=str(tmp_path / "push.db"), **FAST_ARGON2)
    bob = ServerClient(server.url)
    bob.register(unique_name(), PASSWORD, device_keys())
    assert bob.credential is not None
    with connect(server.url.replace("http://", "ws://") + "/v1/websocket",
                 additional_headers={"Authorization": f"Bearer {bob.credential.credential}"},
                 open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "queue_empty"}
        ws.send(DEEP)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


def test_a_deeply_nested_push_frame_from_the_server_is_a_typed_error() -> None:
    # The client's side of the same frame: PushConnection.next_event let RecursionError out.
    def handler(connection: ServerConnection) -> None:
        connection.send(DEEP)
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            connection.recv(timeout=10)  # hold the socket open until the client closes it

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.socket.getsockname()[1]
        credential = DeviceCredential("alice", 1, "alice.1." + "A" * 43)
        push = PushConnection(f"http://127.0.0.1:{port}", credential)
        try:
            with pytest.raises(ServerUnreachable):
                push.next_event(timeout=10)
        finally:
            push.close()
            server.shutdown()
        thread.join(timeout=10)


def test_a_retry_after_of_superscript_digits_is_the_default_wait() -> None:
    """``'²'.isdigit()`` is true but ``int('²')`` raises ValueError (found by reading after the
    headers fuzz target found the same in the PrivateToken parser)."""
    from e2ee_core.server.client import error_from_problem
    from e2ee_core.server.errors import RateLimited

    err = error_from_problem(429, {"type": RateLimited.problem_type()}, "\u00b2")
    assert isinstance(err, RateLimited) and err.retry_after == 1
    err = error_from_problem(429, {"type": RateLimited.problem_type(), "retry_after": "\u00b3"})
    assert isinstance(err, RateLimited) and err.retry_after == 1
