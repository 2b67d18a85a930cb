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

Within one server process a send hands the envelopes it stored to the connections of exactly
its destination devices (:meth:`~e2ee_core.server.hub.PushHub.deliver`; see
:class:`_Connection` for when a connection pushes them without reading its queue); sends and
acknowledgements are group-committed (:class:`GroupCommit`). The HTTP API stays:
``GET /v1/messages`` works as before, and both see the same queue.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

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
    Envelope,
    MultiSendRequest,
    SendFrame,
    SendRequest,
    bearer_credential,
    decode_client_frame,
)

if TYPE_CHECKING:
    from e2ee_core.server.service import DeliveryService

log = logging.getLogger("e2ee_core.server.push")

Message = MutableMapping[str, Any]
T = TypeVar("T")
R = TypeVar("R")
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


class GroupCommit(Generic[T, R]):
    """Store calls of every push connection on one event loop, made together: while one call
    runs on a worker thread, the next items gather and go in the next call, at most
    ``max_items`` at a time (no timer, so a lone item is written at once). ``write`` returns
    one result per item, an exception in the place of an item that failed; an exception it
    raises fails every item of its call."""

    def __init__(self, write: Callable[[list[T]], Sequence[R | Exception]], *,
                 max_items: int) -> None:
        self._write_items = write
        self.max_items = max_items
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writing = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if not self._writing:
            self._writing = True
            self._task = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:self.max_items]
                del self._pending[:self.max_items]
                try:
                    results = await asyncio.to_thread(self._write_items,
                                                      [item for item, _ in batch])
                except Exception as exc:  # each waiting connection learns of it
                    results = [exc] * len(batch)
                for (_, done), result in zip(batch, results, strict=True):
                    if done.done():
                        continue
                    if isinstance(result, Exception):
                        done.set_exception(result)
                    else:
                        done.set_result(result)
        finally:
            self._writing = False


class AckBatcher(GroupCommit[Acknowledgement, None]):
    """The acknowledgements of the loop's connections, in one store transaction per batch; a
    connection's acknowledgement completes once its transaction committed."""

    def __init__(self, service: DeliveryService) -> None:
        def write(acks: list[Acknowledgement]) -> list[None]:
            service.acknowledge_many(acks)
            return [None] * len(acks)

        super().__init__(write, max_items=consts.MAX_ACKS_PER_TRANSACTION)

    async def acknowledge(self, ack: Acknowledgement) -> None:
        await self.submit(ack)


class SendBatcher(GroupCommit[tuple[DeviceAddress, "SendRequest | MultiSendRequest"], int]):
    """The sends over the loop's connections, in one store transaction per batch
    (:meth:`DeliveryService.send_batch`: each accepted or refused on its own)."""

    def __init__(self, service: DeliveryService) -> None:
        super().__init__(service.send_batch, max_items=consts.MAX_SENDS_PER_TRANSACTION)

    async def send(self, who: DeviceAddress, request: SendRequest | MultiSendRequest) -> int:
        return await self.submit((who, request))


class PushChannel:
    """The ASGI endpoint of ``/v1/websocket`` (see the module docstring)."""

    def __init__(self, service: DeliveryService, *, poll_seconds: float | None = None) -> None:
        self.service = service
        self._batchers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AckBatcher, SendBatcher]] = \
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
        batchers = self._batchers.get(loop)
        if batchers is None:
            batchers = self._batchers[loop] = (AckBatcher(service), SendBatcher(service))
        acks, sends = batchers
        await _Connection(service, who, receive, send, self.poll_seconds, acks=acks,
                          sends=sends).run()
        log.info("event=push_disconnected")


class _Connection:
    """One device's socket. What it pushes comes from two places:

    * **reads of the queue** (on connect, after a plain wake-up, and whenever the connection
      does not know its queue exactly), oldest first, as many as fit in flight;
    * **offers** (:meth:`offer`): the envelopes a send in this process just stored for the
      device, pushed without reading the queue, but only while the connection knows its queue
      *exactly*: everything queued for it is in flight or offered. It does once a read from the
      start of the queue came back complete (the connection was registered before the read, so
      every later send in this process offers what it stores). Anything it cannot account for
      (a plain wake-up: a send in another process or a device notice; offers overflowing;
      an offer a read may already have returned) makes it read again.
    """

    def __init__(self, service: DeliveryService, who: DeviceAddress, receive: Receive,
                 send: Send, poll_seconds: float | None, *, acks: AckBatcher,
                 sends: SendBatcher) -> None:
        self.service = service
        self.acks = acks
        self.sends = sends
        self.sending = asyncio.Lock()
        self.poll_seconds = poll_seconds
        self.who = who
        self.receive = receive
        self.send = send
        self.address = (who.username, who.device_id)
        self.loop = asyncio.get_running_loop()
        self.wakeup = asyncio.Event()
        self.in_flight: set[int] = set()  # pushed, not acknowledged yet
        self.last_pushed = 0  # the highest envelope id pushed
        self.exact = False  # the queue is exactly in_flight + offered (see the class doc)
        self.offered: list[Envelope] = []
        self.max_read_id = 0  # the highest id a read of the queue returned
        self.doubts = 0  # how often news made the queue unknown (see _read_queue)
        self.said_empty = False
        self.closed = False

    # -- the hub's news (on this loop) ------------------------------------------------------
    def wake(self) -> None:
        self._doubt()
        self.wakeup.set()

    def offer(self, envelopes: list[Envelope]) -> None:
        if len(self.offered) + len(envelopes) > consts.MAX_ENVELOPES_PER_RECEIVE:
            self.offered.clear()  # bounded: the queue has them, a read will find them
            self._doubt()
        else:
            self.offered.extend(envelopes)
        self.wakeup.set()

    def _doubt(self) -> None:
        self.exact = False
        self.doubts += 1

    async def run(self) -> None:
        hub = self.service.push
        hub.register(self.address, self)
        reader = asyncio.create_task(self._read())
        metrics.PUSH_OPEN.inc()
        try:
            while not reader.done():
                self.wakeup.clear()
                await self._push_queued()
                waiter = asyncio.create_task(self.wakeup.wait())
                done, _ = await asyncio.wait({waiter, reader}, timeout=self.poll_seconds,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if not done:  # the poll timer: sends in other processes cannot wake this one
                    self._doubt()
        finally:
            hub.unregister(self.address, self)
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
        """Push what is new: the offers if the queue is known exactly, else what a read finds.
        While envelopes are in flight a read asks only for those after the last pushed (at
        most MAX_ENVELOPES_PER_RECEIVE in flight); once all are acknowledged it reads the whole
        queue, which also finds an envelope a concurrent transaction committed with a smaller
        id (PostgreSQL), and the device hears when its queue is empty."""
        room = consts.MAX_ENVELOPES_PER_RECEIVE - len(self.in_flight)
        if room <= 0:
            return  # the device acknowledges first (bounded per connection)
        fresh: list[Envelope] = []
        if not self.exact:
            fresh = await self._read_queue(room)
            room -= len(fresh)
        if self.exact:
            fresh += self._take_offers(room, {e.id for e in fresh})
        else:
            self.offered.clear()  # not pushed out of order: the next read finds them
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
        elif self.exact and not self.in_flight and not self.said_empty:
            self.said_empty = True
            await self._emit('{"type":"queue_empty"}')

    async def _read_queue(self, room: int) -> list[Envelope]:
        """Read the queue (see :meth:`_push_queued`); the connection knows its queue exactly
        once a read from its start came back complete, unless news it cannot account for came
        while it read (a wake-up for a send another process committed after the read's
        snapshot): then it reads again."""
        after = self.last_pushed if self.in_flight else 0
        self.offered.clear()  # stored before this read: it returns them
        doubts = self.doubts
        found = await asyncio.to_thread(self.service.queued, self.who, room, after)
        if found:
            self.max_read_id = max(self.max_read_id, found[-1].id)
        if after == 0 and len(found) < room and self.doubts == doubts:
            self.exact = True
        return [e for e in found if e.id not in self.in_flight]

    def _take_offers(self, room: int, read: set[int]) -> list[Envelope]:
        """The offered envelopes to push now. One a read may have returned already (its id is
        not above what reads returned, and it is not in flight: pushed and acknowledged, or
        committed out of id order) is not pushed: a read settles it."""
        offered, self.offered = self.offered, []
        fresh = []
        for envelope in offered:
            if envelope.id in self.in_flight or envelope.id in read:
                continue
            if envelope.id <= self.max_read_id:
                self.exact = False
                self.wakeup.set()
                continue
            fresh.append(envelope)
        if len(fresh) > room:  # the rest stays queued; reads push it in order
            self.exact = False
            self.wakeup.set()
            return []
        return fresh

    async def _emit(self, text: str) -> None:
        async with self.sending:  # pushes and send results come from two tasks
            await self.send({"type": "websocket.send", "text": text})

    async def _submit(self, frame: SendFrame) -> None:
        """A send over the socket: the same service call as ``POST /v1/messages[/multi]``."""
        result: dict[str, Any] = {"type": "send_result", "id": frame.id}
        try:
            result["accepted"] = await self.sends.send(self.who, frame.request)
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
                self.wakeup.set()  # read the whole queue again (or room was made)
