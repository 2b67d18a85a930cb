"""The push channel: one authenticated WebSocket (RFC 6455, framed by the maintained
`websockets` library under uvicorn) per online device, served on the event loop: a connection
holds no thread while it waits.

Protocol (JSON text frames):

* the client opens ``GET /v1/websocket`` with ``Authorization: Bearer <credential>``; a wrong
  credential is closed with code 4401, the right credential of a removed device with 4410
  (the one answer on which a client may conclude it was removed);
* the server pushes ``{"type": "envelopes", "envelopes": [Envelope]}``: first what is queued
  (oldest first, in batches), then each new envelope as it is stored; after the queue has been
  drained (and whenever it is empty again) it sends ``{"type": "queue_empty"}``;
* the client acknowledges in batches: ``{"type": "ack", "ids": [int], "refused": [int]}``
  (as ``POST /v1/messages/ack``: the envelopes are deleted; ``refused`` ones make no contact);
* the client may send over the socket too, as Signal's clients do:
  ``{"type": "send" | "send_multi", "id": N, "message": SendRequest | MultiSendRequest}``
  (frames up to 1 MiB; larger sends use HTTP), answered in order by ``{"type": "send_result",
  "id": N, "accepted": count}`` or ``{"type": "send_result", "id": N, "status": S, "problem":
  {...}}``: the same service call, checks, quotas and problem documents as ``POST
  /v1/messages[/multi]``, without an HTTP request and a thread crossing per send;
* a malformed frame closes the connection with 1003 (nothing is acknowledged by it).

Wake-ups within one server process go through :class:`~e2ee_core.server.hub.PushHub` (a send
wakes exactly the connections of its destination devices). The HTTP API stays:
``GET /v1/messages`` works as before, and both see the same queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from e2ee_core.server import consts, metrics
from e2ee_core.server.errors import (
    DeviceWasRemoved,
    InvalidRequest,
    ServerError,
    problem_document,
)
from e2ee_core.server.hub import size_executor
from e2ee_core.server.wire import (
    Acknowledgement,
    DeviceAddress,
    SendFrame,
    SendRequest,
    bearer_credential,
    decode_client_frame,
)

if TYPE_CHECKING:
    from e2ee_core.server.service import DeliveryService

log = logging.getLogger("e2ee_core.server.push")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CLOSE_AUTH_FAILED = 4401
CLOSE_DEVICE_REMOVED = 4410
CLOSE_BAD_FRAME = 1003
CLOSE_SERVER_ERROR = 1011


def _bearer(scope: Message) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return bearer_credential(value.decode("latin-1"))
    return ""


class AckBatcher:
    """The acknowledgements of every push connection on one event loop, written together:
    while one store transaction runs, the next acknowledgements gather, and go in the next one
    (no timer, so a lone acknowledgement is written at once). A connection's acknowledgement
    completes once its transaction committed."""

    def __init__(self, service: DeliveryService) -> None:
        self.service = service
        self._pending: list[tuple[Acknowledgement, asyncio.Future[None]]] = []
        self._writing = False
        self._task: asyncio.Task[None] | None = None

    async def acknowledge(self, ack: Acknowledgement) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((ack, done))
        if not self._writing:
            self._writing = True
            self._task = asyncio.create_task(self._write())
        await done

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await asyncio.to_thread(self.service.acknowledge_many,
                                            [ack for ack, _ in batch])
                except Exception as exc:  # each waiting connection learns of it
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._writing = False


class PushChannel:
    """The ASGI endpoint of ``/v1/websocket`` (see the module docstring)."""

    def __init__(self, service: DeliveryService, *, poll_seconds: float | None = None) -> None:
        self.service = service
        self._batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AckBatcher] = \
            weakref.WeakKeyDictionary()
        #: When sends in other processes cannot wake this one (several workers on SQLite),
        #: each connection also re-checks its queue this often; None: never (PostgreSQL
        #: LISTEN/NOTIFY, or a single process).
        self.poll_seconds = poll_seconds

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        service = self.service
        size_executor(asyncio.get_running_loop(), service.loop_db_threads)
        if (await receive())["type"] != "websocket.connect":  # ASGI: the handshake comes first
            return
        try:
            who = await asyncio.to_thread(service.authenticate, _bearer(scope))
        except DeviceWasRemoved:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_DEVICE_REMOVED})
            metrics.push_connection("device_removed")
            return
        except ServerError:
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_AUTH_FAILED})
            metrics.push_connection("auth_failed")
            return
        await send({"type": "websocket.accept"})
        log.info("event=push_connected")
        metrics.push_connection("accepted")
        loop = asyncio.get_running_loop()
        acks = self._batchers.get(loop)
        if acks is None:
            acks = self._batchers[loop] = AckBatcher(service)
        await _Connection(service, who, receive, send, self.poll_seconds, acks=acks).run()
        log.info("event=push_disconnected")


class _Connection:
    def __init__(self, service: DeliveryService, who: DeviceAddress, receive: Receive,
                 send: Send, poll_seconds: float | None, *, acks: AckBatcher) -> None:
        self.service = service
        self.acks = acks
        self.sending = asyncio.Lock()
        self.poll_seconds = poll_seconds
        self.who = who
        self.receive = receive
        self.send = send
        self.address = (who.username, who.device_id)
        self.wake = asyncio.Event()
        self.in_flight: set[int] = set()  # pushed, not acknowledged yet
        self.last_pushed = 0  # the highest envelope id pushed
        self.said_empty = False
        self.closed = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        hub = self.service.push
        hub.register(self.address, loop, self.wake)
        reader = asyncio.create_task(self._read())
        metrics.PUSH_OPEN.inc()
        try:
            while not reader.done():
                self.wake.clear()
                await self._push_queued()
                waiter = asyncio.create_task(self.wake.wait())
                await asyncio.wait({waiter, reader}, timeout=self.poll_seconds,
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
        finally:
            hub.unregister(self.address, loop, self.wake)
            reader.cancel()
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                # e.g. the database went away mid-acknowledgement: the device reconnects and
                # gets again what it did not see acknowledged; no traceback in the logs
                log.warning("event=push_failed reason=%s",
                            type(reader.exception()).__name__)
                if not self.closed:
                    self.closed = True
                    try:
                        await self.send({"type": "websocket.close", "code": CLOSE_SERVER_ERROR})
                    except Exception:  # the connection is already gone
                        log.debug("event=push_close_failed")
            metrics.PUSH_OPEN.dec()
            metrics.PUSH_IN_FLIGHT.dec(len(self.in_flight))

    async def _push_queued(self) -> None:
        """Push what is new. While envelopes are in flight only those after the last pushed
        are read (at most MAX_ENVELOPES_PER_RECEIVE in flight); once all are acknowledged the
        whole queue is read again, which also finds an envelope a concurrent transaction
        committed with a smaller id (PostgreSQL) and tells the device when it is empty."""
        service, who = self.service, self.who
        room = consts.MAX_ENVELOPES_PER_RECEIVE - len(self.in_flight)
        if room <= 0:
            return  # the device acknowledges first (bounded per connection)
        after = self.last_pushed if self.in_flight else 0
        found = await asyncio.to_thread(service.queued, who, room, after)
        fresh = [e for e in found if e.id not in self.in_flight]
        if self.closed:
            return
        if fresh:
            self.last_pushed = max(self.last_pushed, *(e.id for e in fresh))
            self.in_flight.update(e.id for e in fresh)
            metrics.PUSH_IN_FLIGHT.inc(len(fresh))
            self.said_empty = False
            await self._emit(json.dumps(
                {"type": "envelopes", "envelopes": [e.to_json() for e in fresh]},
                separators=(",", ":")))
            log.debug("event=envelopes_pushed envelopes=%d", len(fresh))
            metrics.ENVELOPES_DELIVERED.labels("push").inc(len(fresh))
        elif not found and not self.in_flight and not self.said_empty:
            self.said_empty = True
            await self._emit('{"type":"queue_empty"}')

    async def _emit(self, text: str) -> None:
        async with self.sending:  # pushes and send results come from two tasks
            await self.send({"type": "websocket.send", "text": text})

    async def _submit(self, frame: SendFrame) -> None:
        """A send over the socket: the same service call as ``POST /v1/messages[/multi]``."""
        service, request = self.service, frame.request
        result: dict[str, Any] = {"type": "send_result", "id": frame.id}
        try:
            if isinstance(request, SendRequest):
                result["accepted"] = await asyncio.to_thread(service.send, self.who, request)
            else:
                result["accepted"] = await asyncio.to_thread(service.send_multi, self.who,
                                                             request)
        except ServerError as err:
            result["status"] = err.status
            result["problem"] = problem_document(err)
        await self._emit(json.dumps(result, separators=(",", ":")))

    async def _read(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                self.closed = True
                return
            try:
                ack = decode_client_frame(message.get("text") or "")
            except InvalidRequest:
                log.info("event=push_bad_frame")
                metrics.PUSH_BAD_FRAMES.inc()
                self.closed = True
                await self.send({"type": "websocket.close", "code": CLOSE_BAD_FRAME})
                return
            if isinstance(ack, SendFrame):
                await self._submit(ack)  # in order: the next frame waits for this result
                continue
            await self.acks.acknowledge(Acknowledgement(self.who.username, self.who.device_id,
                                                        ack.ids, ack.refused))
            before = len(self.in_flight)
            self.in_flight.difference_update(ack.ids)
            metrics.PUSH_IN_FLIGHT.dec(before - len(self.in_flight))
            if not self.in_flight or before >= consts.MAX_ENVELOPES_PER_RECEIVE:
                self.wake.set()  # read the whole queue again (or room was made)
