"""The wake-ups of one server process: which push connections and long-polls wait for which
device (:class:`PushHub`). A send wakes exactly the waiters of its destination devices; the
PostgreSQL listener (:mod:`.wakeups`) wakes them for sends other processes handled."""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor


class PushHub:
    """The push connections of this process, per device; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[tuple[str, int], set[tuple[asyncio.AbstractEventLoop,
                                                       asyncio.Event]]] = {}

    def register(self, address: tuple[str, int], loop: asyncio.AbstractEventLoop,
                 event: asyncio.Event) -> None:
        with self._lock:
            self._waiting.setdefault(address, set()).add((loop, event))

    def unregister(self, address: tuple[str, int], loop: asyncio.AbstractEventLoop,
                   event: asyncio.Event) -> None:
        with self._lock:
            entries = self._waiting.get(address)
            if entries is not None:
                entries.discard((loop, event))
                if not entries:
                    del self._waiting[address]

    def notify(self, addresses: Iterable[tuple[str, int]]) -> None:
        """Wake the connections of these devices (from any thread)."""
        with self._lock:
            targets = [entry for a in set(addresses) for entry in self._waiting.get(a, ())]
        for loop, event in targets:
            loop.call_soon_threadsafe(event.set)

    def notify_all(self) -> None:
        """Wake every connection (device notices, which go to many accounts)."""
        with self._lock:
            targets = [entry for entries in self._waiting.values() for entry in entries]
        for loop, event in targets:
            loop.call_soon_threadsafe(event.set)

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
