"""The local message history: every content stored once per (conversation, message id) and
applied (edits, deletes, reactions, read and delivery receipts, timer changes), disappearing
messages, and what the app reads back (messages, chat list, unread, status)."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.errors import UnknownMessage
from e2ee_core.client.models import ChatSummary, Message
from e2ee_core.client.store import MessageRow, SqlMessageStore
from e2ee_core.content import (
    AttachmentPointer,
    Content,
    Delete,
    DeliveryReceipt,
    Edit,
    Reaction,
    ReadReceipt,
    Sticker,
    Text,
    TimerChange,
    Unknown,
)
from e2ee_core.disappearing import (
    ConversationTimers,
    DisappearingMessages,
    StoredMessage,
    expires_at_ms,
)

_VISIBLE = (Text, Sticker, AttachmentPointer, TimerChange, Unknown)


class HistoryHook(Protocol):
    """Told of every stored change, in the transaction that makes it (the mailbox queue,
    :class:`~e2ee_core.client.history.History`)."""

    def stored(self, conversation: str, content: Content, sender: str, sender_device: int, *,
               outgoing: bool) -> None: ...

    def changed(self, conversation: str, message_id: bytes) -> None: ...

    def deleted(self, conversation: str, message_id: bytes) -> None:
        """Called before the message's content is dropped."""


class Conversations:
    """Stores and reads the conversations of one device."""

    def __init__(self, ctx: DeviceContext) -> None:
        self.ctx = ctx
        store = ctx.store
        self.timers = ConversationTimers(store.timers())
        self.messages_view = SqlMessageStore(store, ctx.address)
        self.disappearing = DisappearingMessages(self.messages_view, clock=ctx.clock,
                                                 timers=self.timers, start=ctx.expiry_start)
        self.history: HistoryHook | None = None

    # -- storing -------------------------------------------------------------------------------
    def store_content(self, conversation: str, content: Content, sender: str,
                      sender_device: int, *, outgoing: bool) -> list[Message]:
        """Store a content once and apply it (edit, delete, reaction, receipt, timer); the
        caller holds the transaction. Returns the new visible message, if any."""
        store = self.ctx.store
        body = content.body
        now = self.ctx.clock()
        visible = isinstance(body, _VISIBLE)
        read_at = now if outgoing else None
        expiry = expires_at_ms(content, outgoing=outgoing, received_at_ms=now,
                               read_at_ms=read_at, start=self.ctx.expiry_start) \
            if visible else None
        if expiry is not None and expiry <= now:
            visible = False  # arrived already expired: never shown, still deduplicated
        if not store.insert_message(conversation, content, sender=sender,
                                    sender_device=sender_device, outgoing=outgoing,
                                    visible=visible, received_at_ms=now,
                                    read_at_ms=read_at, expires_at_ms=expiry):
            return []
        if isinstance(body, TimerChange):
            self.timers.apply(conversation, body, content.sent_at_ms)
            store.save_timer(conversation, self.timers.state(conversation))
        elif isinstance(body, Reaction):
            store.set_reaction(conversation, body.target_id, sender, body.emoji)
            if self.history is not None:
                self.history.changed(conversation, body.target_id)
        elif isinstance(body, Edit | Delete):
            self._edit_or_delete(conversation, body, sender)
        elif isinstance(body, ReadReceipt):
            for message_id in body.message_ids:
                store.add_receipt(conversation, message_id, sender, content.sent_at_ms)
                if sender == self.ctx.username:  # read on one of our devices: read here too
                    stored = self.messages_view.get(conversation, message_id)
                    if stored is not None and not stored.outgoing:
                        self.disappearing.mark_read(conversation, message_id)
        elif isinstance(body, DeliveryReceipt) and sender != self.ctx.username:
            for message_id in body.message_ids:
                store.add_delivery(conversation, message_id, sender, content.sent_at_ms)
        if not visible:
            return []
        if self.history is not None:
            self.history.stored(conversation, content, sender, sender_device, outgoing=outgoing)
        return [self.message(conversation, content.message_id)]

    def _edit_or_delete(self, conversation: str, body: Edit | Delete, sender: str) -> None:
        store = self.ctx.store
        target = store.message_row(conversation, body.target_id)
        if target is None or target.sender != sender or target.content is None:
            return  # only the author edits or deletes, and only what is still there
        if isinstance(body, Delete):
            if self.history is not None:  # while its content is still there
                self.history.deleted(conversation, body.target_id)
            self.messages_view.delete(conversation, body.target_id)
            store.mark_deleted(conversation, body.target_id)
            return
        old = Content.decode(target.content)
        if isinstance(old.body, Text):
            store.replace_content(conversation, body.target_id,
                                  dataclasses.replace(old, body=Text(body.text)), edited=True)
            if self.history is not None:
                self.history.changed(conversation, body.target_id)

    def mark_read_here(self, conversation: str, message_id: bytes) -> bool:
        """Mark an incoming message read on this device (read-based timers start); False for
        an outgoing one."""
        message = self.messages_view.get(conversation, message_id)
        if message is None:
            raise UnknownMessage("no such message in this conversation")
        if message.outgoing:
            return False
        with self.ctx.store.atomic():
            self.disappearing.mark_read(conversation, message_id)
        return True

    # -- reading -------------------------------------------------------------------------------
    def message(self, conversation: str, message_id: bytes) -> Message:
        """One stored message (edits applied)."""
        row = self.ctx.store.message_row(conversation, message_id)
        if row is None:
            raise UnknownMessage("no such message in this conversation")
        return self._message(row)

    def messages(self, conversation: str | None = None) -> list[Message]:
        """Stored messages of one conversation (or all), in the order they were stored."""
        return [self._message(r) for r in self.ctx.store.message_rows(conversation)]

    def chats(self) -> list[ChatSummary]:
        """The conversations with stored messages, most recent first, with their unread
        (incoming, not marked read, not deleted) counts."""
        summaries: dict[str, ChatSummary] = {}
        for message in self.messages():
            old = summaries.get(message.conversation)
            unread = int(not message.outgoing and message.read_at_ms is None
                         and not message.deleted)
            summaries[message.conversation] = ChatSummary(
                message.conversation, message.received_at_ms,
                (old.unread if old else 0) + unread, message)
        return sorted(summaries.values(), key=lambda c: c.last_at_ms, reverse=True)

    def unread(self, conversation: str) -> list[Message]:
        """Incoming messages of ``conversation`` not marked read yet, oldest first."""
        return [m for m in self.messages(conversation)
                if not m.outgoing and m.read_at_ms is None and not m.deleted]

    def _message(self, row: MessageRow) -> Message:
        store = self.ctx.store
        content = None if row.content is None else Content.decode(row.content)
        delivered: tuple[str, ...] = ()
        read: tuple[str, ...] = ()
        if row.outgoing and row.sender == self.ctx.username:
            others = {self.ctx.username}
            delivered = tuple(sorted(set(store.delivered_to(row.conversation, row.message_id))
                                     - others))
            read = tuple(sorted(set(store.readers(row.conversation, row.message_id)) - others))
        return Message(row.conversation, row.message_id, row.sender, row.sender_device,
                       row.outgoing, content, row.received_at_ms, row.read_at_ms,
                       row.expires_at_ms, row.edited, row.deleted,
                       store.reactions(row.conversation, row.message_id), delivered, read)

    def read_by(self, conversation: str, message_id: bytes) -> dict[str, int]:
        """Accounts whose read receipt for this message arrived, with their read time (ms)."""
        return self.ctx.store.readers(conversation, message_id)

    # -- disappearing --------------------------------------------------------------------------
    def sweep(self) -> list[StoredMessage]:
        """Delete every disappearing message whose time is up; returns what was deleted."""
        with self.ctx.store.atomic():
            return self.disappearing.sweep()

    def next_expiry_ms(self) -> int | None:
        return self.disappearing.next_expiry_ms()

    def timer(self, conversation: str) -> int | None:
        return self.timers.get(conversation)
