"""The client side of the push channel (``/v1/websocket``, see :mod:`e2ee_core.server.push`):
one WebSocket, through the maintained ``websockets`` library, with typed events and errors."""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from e2ee_core.server.client import error_from_problem
from e2ee_core.server.errors import (
    AuthenticationFailed,
    DeviceWasRemoved,
    InvalidRequest,
    PayloadTooLarge,
    ServerUnreachable,
)
from e2ee_core.server.push import CLOSE_AUTH_FAILED, CLOSE_DEVICE_REMOVED
from e2ee_core.server.wire import (
    DeviceCredential,
    Envelope,
    MultiSendRequest,
    SendFrame,
    SendRequest,
    decode_int,
)
from service_kit.consts import WEBSOCKET_MAX_MESSAGE

_MAX_FRAME = 16 * 1024 * 1024  # a batch of up to 100 envelopes of 256 KiB, base64, with room


@dataclass(frozen=True)
class PushEvent:
    """``envelopes`` pushed (oldest first), or ``queue_empty`` (no envelopes)."""

    envelopes: list[Envelope]
    queue_empty: bool = False


class PushConnection:
    """An open push channel. Iterate :meth:`next_event`; acknowledge with :meth:`ack`; send
    with :meth:`submit`. Used from one thread."""

    def __init__(self, base_url: str, credential: DeviceCredential, *,
                 timeout: float = 10.0) -> None:
        url = base_url.replace("https://", "wss://").replace("http://", "ws://") + \
            "/v1/websocket"
        try:
            # Entered as a context manager (websockets 17.1 deprecates a bare connect()); left
            # by close().
            self._ws: ClientConnection = connect(
                url, additional_headers={"Authorization": f"Bearer {credential.credential}"},
                open_timeout=timeout, max_size=_MAX_FRAME, user_agent_header=None,
                compression=None).__enter__()  # no deflate: ciphertext does not compress
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError):
            raise ServerUnreachable() from None
        self._buffered: deque[PushEvent] = deque()
        self._next_id = 0

    def next_event(self, timeout: float | None = None) -> PushEvent | None:
        """The next event, or None when nothing came within ``timeout`` seconds."""
        if self._buffered:
            return self._buffered.popleft()
        frame = self._recv(timeout)
        if frame is None:
            return None
        return self._event(frame)

    def submit(self, request: SendRequest | MultiSendRequest, *,
               timeout: float = 30.0) -> int:
        """Send over the socket (see :class:`~e2ee_core.server.wire.SendFrame`): the count of
        envelopes accepted, or the typed error an HTTP send would raise. Pushes that arrive
        meanwhile are kept for :meth:`next_event`. :class:`PayloadTooLarge` when the frame
        would exceed the server's WebSocket limit (send it over HTTP)."""
        self._next_id += 1
        request_id = self._next_id
        text = json.dumps(SendFrame(request_id, request).to_json(), separators=(",", ":"))
        if len(text) > WEBSOCKET_MAX_MESSAGE:
            raise PayloadTooLarge("too large for the push channel")
        try:
            self._ws.send(text)
        except ConnectionClosed:
            raise ServerUnreachable() from None
        deadline = time.monotonic() + timeout
        while True:
            frame = self._recv(max(deadline - time.monotonic(), 0.0))
            if frame is None:
                raise ServerUnreachable("no answer to a send on the push channel")
            if frame.get("type") != "send_result":
                self._buffered.append(self._event(frame))
                continue
            if frame.get("id") != request_id:
                raise ServerUnreachable("the server sent a malformed push frame")
            if "accepted" in frame:
                try:
                    return decode_int(frame["accepted"], "accepted")
                except InvalidRequest:
                    raise ServerUnreachable("the server sent a malformed push frame") from None
            status = frame.get("status")
            raise error_from_problem(status if isinstance(status, int) else 0,
                                     frame.get("problem"))

    def _recv(self, timeout: float | None) -> dict[str, Any] | None:
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
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the stack
            frame = None
        if not isinstance(frame, dict):
            raise ServerUnreachable("the server sent a malformed push frame")
        return frame

    @staticmethod
    def _event(frame: dict[str, Any]) -> PushEvent:
        try:
            if frame.get("type") == "queue_empty":
                return PushEvent([], queue_empty=True)
            if frame.get("type") == "envelopes":
                return PushEvent([Envelope.from_json(e) for e in frame["envelopes"]])
        except (ValueError, KeyError, TypeError, AttributeError, InvalidRequest,
                RecursionError):
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
