"""The wake-ups of one server process: which push connections and long-polls wait for which
device (:class:`PushHub`).

Two kinds of news reach a waiter, on its own event loop:

* :meth:`PushHub.deliver`: a send *this process* stored hands over the envelopes themselves, so
  a push connection that knows its queue exactly pushes them without reading the queue;
* :meth:`PushHub.notify` / :meth:`PushHub.notify_all`: "look at the queue" (sends other
  processes handled, through the PostgreSQL listener of :mod:`.wakeups`; device notices;
  a listener that reconnected).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from e2ee_core.server.wire import Envelope


class Waiter(Protocol):
    """A push connection or a long-poll, as the hub sees it. Both methods run on ``loop``."""

    loop: asyncio.AbstractEventLoop

    def wake(self) -> None:
        """Something may have been queued for the device: read the queue."""

    def offer(self, envelopes: list[Envelope]) -> None:
        """These envelopes were just stored for the device (committed, in this process)."""


class EventWaiter:
    """A waiter that only needs to know *that* something came (a long-poll): both kinds of
    news set its event."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    def wake(self) -> None:
        self.event.set()

    def offer(self, envelopes: list[Envelope]) -> None:
        self.event.set()


class PushHub:
    """The waiters of this process, per device; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, int], set[Waiter]] = {}

    def register(self, address: tuple[str, int], waiter: Waiter) -> None:
        with self._lock:
            self._waiting.setdefault(address, set()).add(waiter)

    def unregister(self, address: tuple[str, int], waiter: Waiter) -> None:
        with self._lock:
            entries = self._waiting.get(address)
            if entries is not None:
                entries.discard(waiter)
                if not entries:
                    del self._waiting[address]

    def deliver(self, stored: Sequence[tuple[tuple[str, int], Envelope]]) -> None:
        """Hand envelopes this process just stored (after their transaction committed) to the
        waiters of their destination devices (from any thread)."""
        per_device: dict[tuple[str, int], list[Envelope]] = defaultdict(list)
        with self._lock:
            waiting = self._waiting
            for address, envelope in stored:
                if address in waiting:
                    per_device[address].append(envelope)
            targets = [(w, envelopes) for a, envelopes in per_device.items()
                       for w in waiting.get(a, ())]
        for waiter, envelopes in targets:
            waiter.loop.call_soon_threadsafe(waiter.offer, list(envelopes))

    def notify(self, addresses: Iterable[tuple[str, int]]) -> None:
        """Wake the waiters of these devices to read their queues (from any thread)."""
        with self._lock:
            targets = [w for a in set(addresses) for w in self._waiting.get(a, ())]
        for waiter in targets:
            waiter.loop.call_soon_threadsafe(waiter.wake)

    def notify_all(self) -> None:
        """Wake every waiter (device notices, which go to many accounts)."""
        with self._lock:
            targets = [w for entries in self._waiting.values() for w in entries]
        for waiter in targets:
            waiter.loop.call_soon_threadsafe(waiter.wake)

    def connections(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._waiting.values())


_sized: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def size_executor(loop: asyncio.AbstractEventLoop, threads: int) -> None:
    """Give the event loop's default executor (what ``asyncio.to_thread`` uses for the store
    calls of push connections and long-polls) ``threads`` workers, once per loop."""
    if loop in _sized:
        return
    _sized.add(loop)
    loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="e2ee-store"))
