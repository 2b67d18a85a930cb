"""Disappearing messages: per-conversation timers and a local sweep, with an injectable clock.

* The timer of a conversation is **off by default**; switched on without a value it is
  :data:`~e2ee_core.content.DEFAULT_TIMER_SECONDS` (24 hours). A change travels as a
  :class:`~e2ee_core.content.TimerChange` inside the encrypted content, so the server never
  learns that a conversation uses disappearing messages (except through the optional coarse
  :func:`server_expiry_hint_ms` a client may put on an envelope).
* Every outgoing message carries the timer that applied when it was sent
  (``Content.expire_timer``); a message's own timer is authoritative for that message.
* Expiry: an outgoing message expires ``timer`` after it was sent; an incoming one ``timer``
  after it was read (Signal's rule, :attr:`ExpiryStart.READ`) or after it was sent
  (:attr:`ExpiryStart.SENT`, WhatsApp's rule; a sender's clock in the future is clamped to the
  time of receipt so a sender cannot stretch the lifetime).
* :meth:`DisappearingMessages.sweep` deletes every expired message from the local
  :class:`MessageStore`; :meth:`~DisappearingMessages.next_expiry_ms` tells the app when to
  sweep next.

Usage::

    >>> from e2ee_core.content import Text
    >>> now = [1_700_000_000_000]
    >>> dm = DisappearingMessages(InMemoryMessageStore(), clock=lambda: now[0])
    >>> _ = dm.compose("bob", TimerChange(DEFAULT_TIMER_SECONDS))
    >>> sent = dm.compose("bob", Text("gone tomorrow"))
    >>> sent.expire_timer
    86400
    >>> now[0] += 86_400_000
    >>> [m.content.body for m in dm.sweep()] == [Text("gone tomorrow")]
    True
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol, runtime_checkable

from e2ee_core.content import (
    DEFAULT_TIMER_SECONDS,
    Body,
    Content,
    TimerChange,
)
from e2ee_core.errors import (
    DisappearingError,
    )

__all__ = [
    "DEFAULT_TIMER_SECONDS",
    "SERVER_HINT_GRANULARITY_MS",
    "Clock",
    "ConversationTimers",
    "DisappearingError",
    "DisappearingMessages",
    "ExpiryStart",
    "InMemoryMessageStore",
    "MessageStore",
    "StoredMessage",
    "TimerState",
    "expires_at_ms",
    "server_expiry_hint_ms",
]

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch."""

SERVER_HINT_GRANULARITY_MS = 3600 * 1000
"""Envelope expiry hints are rounded up to the hour, so they reveal only a coarse deadline."""


class ExpiryStart(Enum):
    """When an *incoming* message's timer starts."""

    READ = "read"
    SENT = "sent"


@dataclass(frozen=True)
class TimerState:
    """A conversation's timer (``None``: off) and the sent time of the change that set it."""

    seconds: int | None = None
    changed_at_ms: int = -1


class ConversationTimers:
    """Timer per conversation; off until a change turns it on.

    Concurrent changes converge: a change applies only if its sent time is not older than the
    current setting's (last writer wins; ties by larger timer, so every device agrees).
    """

    def __init__(self, saved: Mapping[str, TimerState] | None = None) -> None:
        """Start from ``saved`` (a previous :meth:`snapshot`) or with every timer off."""
        self._timers: dict[str, TimerState] = dict(saved or {})

    def snapshot(self) -> dict[str, TimerState]:
        """Every conversation's setting, for the app to persist."""
        return dict(self._timers)

    def get(self, conversation_id: str) -> int | None:
        """Seconds, or None when disappearing messages are off."""
        return self._timers.get(conversation_id, TimerState()).seconds

    def state(self, conversation_id: str) -> TimerState:
        return self._timers.get(conversation_id, TimerState())

    def apply(self, conversation_id: str, change: TimerChange, sent_at_ms: int) -> bool:
        """Apply a change sent at ``sent_at_ms``; returns whether the setting changed."""
        current = self.state(conversation_id)
        new = TimerState(change.seconds, sent_at_ms)
        if (sent_at_ms, new.seconds or 0) < (current.changed_at_ms, current.seconds or 0):
            return False
        self._timers[conversation_id] = new
        return new.seconds != current.seconds


def expires_at_ms(content: Content, *, outgoing: bool, received_at_ms: int,
                  read_at_ms: int | None, start: ExpiryStart = ExpiryStart.READ) -> int | None:
    """When a stored message expires, or None (no timer, or an unread incoming message whose
    timer starts on reading)."""
    if content.expire_timer is None:
        return None
    if outgoing:
        begin: int | None = content.sent_at_ms
    elif start is ExpiryStart.SENT:
        begin = min(content.sent_at_ms, received_at_ms)
    else:
        begin = read_at_ms
    return None if begin is None else begin + content.expire_timer * 1000


def server_expiry_hint_ms(content: Content) -> int | None:
    """A coarse deadline (sent time + timer, rounded up to the hour) that a client may attach
    to an envelope so the server deletes it if still undelivered; None without a timer.
    This is metadata the server sees: use it only where deleting undelivered envelopes is wanted.
    """
    if content.expire_timer is None:
        return None
    deadline = content.sent_at_ms + content.expire_timer * 1000
    return -(-deadline // SERVER_HINT_GRANULARITY_MS) * SERVER_HINT_GRANULARITY_MS


@dataclass(frozen=True)
class StoredMessage:
    """A message in the local store, with its expiry (None: does not expire, or not yet)."""

    conversation_id: str
    content: Content
    outgoing: bool
    received_at_ms: int
    read_at_ms: int | None = None
    expires_at_ms: int | None = None

    @property
    def message_id(self) -> bytes:
        return self.content.message_id


@runtime_checkable
class MessageStore(Protocol):
    """The local message store the sweep works on (an app's database adapter implements it)."""

    def put(self, message: StoredMessage) -> None:
        """Insert or replace by (conversation id, message id)."""
        ...

    def get(self, conversation_id: str, message_id: bytes) -> StoredMessage | None: ...

    def delete(self, conversation_id: str, message_id: bytes) -> bool:
        """Remove; returns whether it was there."""
        ...

    def expired(self, now_ms: int) -> list[StoredMessage]:
        """Messages whose ``expires_at_ms`` is at or before ``now_ms``."""
        ...

    def next_expiry_ms(self) -> int | None:
        """The earliest ``expires_at_ms`` held, or None."""
        ...

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        """A conversation's messages in insertion order."""
        ...


class InMemoryMessageStore:
    """A :class:`MessageStore` in memory, with an expiry heap (lazy deletion)."""

    def __init__(self) -> None:
        self._messages: dict[tuple[str, bytes], StoredMessage] = {}
        self._heap: list[tuple[int, str, bytes]] = []

    def put(self, message: StoredMessage) -> None:
        self._messages[(message.conversation_id, message.message_id)] = message
        if message.expires_at_ms is not None:
            heapq.heappush(self._heap, (message.expires_at_ms, message.conversation_id,
                                        message.message_id))

    def get(self, conversation_id: str, message_id: bytes) -> StoredMessage | None:
        return self._messages.get((conversation_id, message_id))

    def delete(self, conversation_id: str, message_id: bytes) -> bool:
        return self._messages.pop((conversation_id, message_id), None) is not None

    def _live_top(self) -> tuple[int, str, bytes] | None:
        while self._heap:
            at, conversation_id, message_id = self._heap[0]
            current = self._messages.get((conversation_id, message_id))
            if current is not None and current.expires_at_ms == at:
                return self._heap[0]
            heapq.heappop(self._heap)  # deleted or re-timed: stale entry
        return None

    def expired(self, now_ms: int) -> list[StoredMessage]:
        due = sorted({(at, c, m) for at, c, m in self._heap if at <= now_ms})
        out = []
        for at, conversation_id, message_id in due:
            current = self._messages.get((conversation_id, message_id))
            if current is not None and current.expires_at_ms == at:
                out.append(current)
        return out

    def next_expiry_ms(self) -> int | None:
        top = self._live_top()
        return None if top is None else top[0]

    def messages(self, conversation_id: str) -> list[StoredMessage]:
        return [m for (c, _), m in self._messages.items() if c == conversation_id]

    def __len__(self) -> int:
        return len(self._messages)


class DisappearingMessages:
    """Timers, expiry and the sweep for one device, over a :class:`MessageStore` and a clock."""

    def __init__(self, store: MessageStore, *, clock: Clock,
                 timers: ConversationTimers | None = None,
                 start: ExpiryStart = ExpiryStart.READ) -> None:
        self.store = store
        self.timers = timers if timers is not None else ConversationTimers()
        self._clock = clock
        self._start = start

    def compose(self, conversation_id: str, body: Body, *,
                group_id: bytes | None = None) -> Content:
        """A new outgoing content stamped with the clock and the conversation's timer; stored
        locally (with its expiry). A :class:`TimerChange` body also changes the timer."""
        now = self._clock()
        timer = self.timers.get(conversation_id)
        if isinstance(body, TimerChange):
            # Strictly after the setting it replaces, so every device orders the two the same.
            now = max(now, self.timers.state(conversation_id).changed_at_ms + 1)
            self.timers.apply(conversation_id, body, now)
            timer = None  # the change notice itself stays in the chat
        content = Content.new(body, sent_at_ms=now, expire_timer=timer, group_id=group_id)
        self._store(conversation_id, content, outgoing=True, received_at_ms=now)
        return content

    def turn_on(self, conversation_id: str,
                seconds: int = DEFAULT_TIMER_SECONDS) -> Content:
        """Switch the timer on (24 hours unless told otherwise); returns the content to send."""
        return self.compose(conversation_id, TimerChange(seconds))

    def turn_off(self, conversation_id: str) -> Content:
        """Switch the timer off; returns the content to send."""
        return self.compose(conversation_id, TimerChange(None))

    def receive(self, conversation_id: str, content: Content) -> StoredMessage:
        """Record an incoming content (applying a timer change); returns the stored message."""
        if isinstance(content.body, TimerChange):
            self.timers.apply(conversation_id, content.body, content.sent_at_ms)
        return self._store(conversation_id, content, outgoing=False,
                           received_at_ms=self._clock())

    def mark_read(self, conversation_id: str, message_id: bytes) -> StoredMessage:
        """Mark an incoming message read now; its timer starts if it starts on reading."""
        message = self.store.get(conversation_id, message_id)
        if message is None:
            raise DisappearingError("no such message")
        if message.read_at_ms is not None or message.outgoing:
            return message
        now = self._clock()
        updated = replace(message, read_at_ms=now, expires_at_ms=expires_at_ms(
            message.content, outgoing=False, received_at_ms=message.received_at_ms,
            read_at_ms=now, start=self._start))
        self.store.put(updated)
        return updated

    def sweep(self) -> list[StoredMessage]:
        """Delete every message expired by now; returns what was deleted."""
        deleted = []
        for message in self.store.expired(self._clock()):
            if self.store.delete(message.conversation_id, message.message_id):
                deleted.append(message)
        return deleted

    def next_expiry_ms(self) -> int | None:
        """When the next message expires (schedule the next sweep then), or None."""
        return self.store.next_expiry_ms()

    def _store(self, conversation_id: str, content: Content, *, outgoing: bool,
               received_at_ms: int) -> StoredMessage:
        if not conversation_id:
            raise DisappearingError("conversation id must be non-empty")
        message = StoredMessage(conversation_id, content, outgoing, received_at_ms,
                                read_at_ms=received_at_ms if outgoing else None)
        message = replace(message, expires_at_ms=expires_at_ms(
            content, outgoing=outgoing, received_at_ms=received_at_ms,
            read_at_ms=message.read_at_ms, start=self._start))
        if message.expires_at_ms is not None and message.expires_at_ms <= self._clock():
            return message  # already expired (e.g. delivered late): never stored
        self.store.put(message)
        return message
