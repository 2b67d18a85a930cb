"""The client side of the push channel (``/v1/websocket``, see :mod:`e2ee_core.server.push`):
one WebSocket, through the maintained ``websockets`` library, with typed events and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from e2ee_core.server.errors import (
    AuthenticationFailed,
    DeviceWasRemoved,
    InvalidRequest,
    ServerUnreachable,
)
from e2ee_core.server.push import CLOSE_AUTH_FAILED, CLOSE_DEVICE_REMOVED
from e2ee_core.server.wire import DeviceCredential, Envelope

_MAX_FRAME = 16 * 1024 * 1024  # a batch of up to 100 envelopes of 256 KiB, base64, with room


@dataclass(frozen=True)
class PushEvent:
    """``envelopes`` pushed (oldest first), or ``queue_empty`` (no envelopes)."""

    envelopes: list[Envelope]
    queue_empty: bool = False


class PushConnection:
    """An open push channel. Iterate :meth:`next_event`; acknowledge with :meth:`ack`."""

    def __init__(self, base_url: str, credential: DeviceCredential, *,
                 timeout: float = 10.0) -> None:
        url = base_url.replace("https://", "wss://").replace("http://", "ws://") + \
            "/v1/websocket"
        try:
            self._ws: ClientConnection = connect(
                url, additional_headers={"Authorization": f"Bearer {credential.credential}"},
                open_timeout=timeout, max_size=_MAX_FRAME, user_agent_header=None,
                compression=None)  # ciphertext does not compress (see service_kit.serving)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError):
            raise ServerUnreachable() from None

    def next_event(self, timeout: float | None = None) -> PushEvent | None:
        """The next event, or None when nothing came within ``timeout`` seconds."""
        try:
            raw = self._ws.recv(timeout=timeout)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            if code == CLOSE_DEVICE_REMOVED:
                raise DeviceWasRemoved() from None
            if code == CLOSE_AUTH_FAILED:
                raise AuthenticationFailed() from None
            raise ServerUnreachable() from None
        try:
            frame = json.loads(raw)
            if frame.get("type") == "queue_empty":
                return PushEvent([], queue_empty=True)
            if frame.get("type") == "envelopes":
                return PushEvent([Envelope.from_json(e) for e in frame["envelopes"]])
        except (ValueError, KeyError, TypeError, AttributeError, InvalidRequest,
                RecursionError):  # RecursionError: nesting deeper than the stack
            pass
        raise ServerUnreachable("the server sent a malformed push frame")

    def ack(self, ids: list[int], refused: list[int]) -> None:
        frame: dict[str, object] = {"type": "ack", "ids": ids}
        if refused:
            frame["refused"] = refused
        try:
            self._ws.send(json.dumps(frame))
        except ConnectionClosed:
            raise ServerUnreachable() from None

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PushConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
