"""The history save queue (issue #15), for :class:`~e2ee_core.client.history.History`: what
:class:`~e2ee_core.client.conversations.Conversations` reports (a message stored, changed or
deleted for everyone) is queued in the local store in the caller's transaction, and
:meth:`HistorySaving.flush` saves (and deletes) the queue in order, sealed under the newest
epoch (checked with the server at least every EPOCH_CHECK_INTERVAL_MS and whenever the
account's device set changed), with the attachment references of the same messages. A failed
flush keeps the queue; nothing is ever raised from it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import groupby

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.errors import HistoryError
from e2ee_core.client.history_attachments import HistoryAttachments
from e2ee_core.client.history_epochs import EPOCH_CHECK_INTERVAL_MS, HistoryEpochs
from e2ee_core.client.history_payload import (
    ATTACHMENT_DELETION,
    DELETION,
    INBOX,
    HistoryPayload,
    is_deletion,
    kept_reactions,
)
from e2ee_core.content import AttachmentPointer, Content
from e2ee_core.labyrinth import epochs, mailbox
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.server.consts import LABYRINTH_MAX_RECORDS_PER_SAVE
from e2ee_core.server.errors import ServerError
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import RecordKey, StoredRecord

log = logging.getLogger("e2ee_core.client")

MAX_SAVE_BATCH = 500  # records per flush (the client splits them into server-sized requests)
# After a failed save, how long a push-channel listener waits before it tries again on its
# own (a receive or a send always tries).
FLUSH_RETRY_MS = 30_000


class HistorySaving:
    """The queue of records to save or delete, and its flush."""

    def __init__(self, ctx: DeviceContext, lab: LabyrinthClient, epochs: HistoryEpochs,
                 attachments: HistoryAttachments) -> None:
        self.ctx = ctx
        self.lab = lab
        self.epochs = epochs
        self.attachments = attachments
        self._loading = False  # storing what was loaded: not queued again
        self._failed_at: int | None = None  # the last failed flush (clock ms)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Nothing is queued inside (messages being stored from the mailbox itself)."""
        self._loading = True
        try:
            yield
        finally:
            self._loading = False

    # -- saving: what the conversations store tells it, in the caller's transaction -----------
    def stored(self, conversation: str, content: Content, sender: str, sender_device: int, *,
               outgoing: bool) -> None:
        """A new visible message was stored: its record is queued in the same transaction (a
        local write; not for disappearing messages, nor while loading from the mailbox)."""
        if self._loading or content.expire_timer is not None or not self.epochs.enabled:
            return
        reactions = kept_reactions(self.ctx.store.reactions(conversation, content.message_id))
        self.ctx.store.history_enqueue([(conversation, content.message_id.hex(),
                                         content.sent_at_ms, HistoryPayload(
                                             sender, sender_device, outgoing, content,
                                             reactions=reactions).encode())])

    def changed(self, conversation: str, message_id: bytes) -> None:
        """An edit or a reaction changed a stored message: its record is queued again with
        the message's current state, in place of a queued older one."""
        if self._loading or not self.epochs.enabled:
            return
        store = self.ctx.store
        row = store.message_row(conversation, message_id)
        if row is None or row.content is None or row.deleted:
            return
        content = Content.decode(row.content)
        if content.expire_timer is not None:
            return
        payload = HistoryPayload(row.sender, row.sender_device, row.outgoing, content,
                                 edited=row.edited, reactions=kept_reactions(
                                     store.reactions(conversation, message_id)))
        store.history_replace(conversation, message_id.hex(), content.sent_at_ms,
                              payload.encode())

    def deleted(self, conversation: str, message_id: bytes) -> None:
        """A message is being deleted for everyone (by this account, or by its author as
        received here; called before its content is dropped): the deletion of its record, and
        of its attachment reference if it has one, is queued in place of a queued save."""
        if self._loading or not self.epochs.enabled:
            return
        payload = DELETION
        row = self.ctx.store.message_row(conversation, message_id)
        if row is not None and row.content is not None:
            body = Content.decode(row.content).body
            if isinstance(body, AttachmentPointer):
                payload = ATTACHMENT_DELETION + body.blob_id
        self.ctx.store.history_replace(conversation, message_id.hex(), 0, payload)

    def flush(self) -> int:
        """Save (and delete) what is queued, in order, sealed under the newest epoch; how many
        records were saved or deleted. Any failure keeps the rest of the queue for the next
        flush (logged, never raised)."""
        if not self.epochs.enabled:
            return 0
        store = self.ctx.store
        done = 0
        try:
            if self.epochs.known() and store.labyrinth_get("rotate") == b"1":
                self.epochs.rotate()
                store.labyrinth_set("rotate", b"")
            if self.epochs.known() and self.epochs.needs_admission():
                self.epochs.admit_devices()
            queued = store.history_queued(MAX_SAVE_BATCH)
            if not queued:
                self._failed_at = None
                return 0
            current = self.epoch_for_saving()
            while queued:
                for deletion, group in groupby(queued, key=lambda row: is_deletion(row[4])):
                    run = list(group)
                    if deletion:
                        self.attachments.drop_references([(thread, message_id, payload[1:])
                                               for _, thread, message_id, _, payload in run
                                               if payload[:1] == ATTACHMENT_DELETION])
                        step = LABYRINTH_MAX_RECORDS_PER_SAVE
                        for i in range(0, len(run), step):
                            self.ctx.call(self.lab.delete, [
                                RecordKey(INBOX, thread, message_id)
                                for _, thread, message_id, _, _ in run[i:i + step]])
                    else:
                        self.attachments.put_references(run, current)
                        keys = mailbox.EpochKeys(current)  # each thread's key derived once
                        self.ctx.call(self.lab.save, [
                            StoredRecord(*self.seal(keys, thread, message_id, timestamp,
                                                     payload))
                            for _, thread, message_id, timestamp, payload in run])
                    store.history_dequeue([row[0] for row in run])
                    done += len(run)
                queued = store.history_queued(MAX_SAVE_BATCH)
            self._failed_at = None
        except (HistoryError, ServerError, LabyrinthError) as exc:
            self._failed_at = self.ctx.clock()
            log.info("client.history.save_deferred reason=%s queued=%d", type(exc).__name__,
                     store.history_queue_length())
        return done

    def flush_pending(self) -> int:
        """:meth:`flush` when something is queued, unless a flush failed less than
        FLUSH_RETRY_MS ago (for a push-channel listener's idle turns: an edit, a reaction or a
        delete arrives in a batch with no new message)."""
        if not self.epochs.enabled or self.ctx.store.history_queue_length() == 0:
            return 0
        failed = self._failed_at
        if failed is not None and 0 <= self.ctx.clock() - failed < FLUSH_RETRY_MS:
            return 0
        return self.flush()

    def epoch_for_saving(self) -> epochs.Epoch:
        """The newest epoch, checked with the server unless it was checked less than
        EPOCH_CHECK_INTERVAL_MS ago and this account's device set is unchanged since: a device
        removed by another device is then noticed at the latest when this device learns of the
        removal (the whitepaper's condition for post-revocation secrecy) or a minute later."""
        store = self.ctx.store
        own = ",".join(sorted(map(str, store.known_devices(self.ctx.username)))).encode()
        now = self.ctx.clock()
        last = store.labyrinth_get("epoch_checked")
        if last is not None and self.epochs.known():
            at, _, devices = last.partition(b" ")
            if devices == own and 0 <= now - int(at) < EPOCH_CHECK_INTERVAL_MS:
                return self.epochs.known()[-1].epoch
        epoch = self.epochs.catch_up().epoch
        store.labyrinth_set("epoch_checked", str(now).encode() + b" " + own)
        return epoch

    @staticmethod
    def seal(keys: mailbox.EpochKeys, thread: str, message_id: str, timestamp: int,
              payload: bytes) -> tuple[str, str, str, int, int, int, bytes]:
        record = keys.seal(inbox_id=INBOX, thread_id=thread, message_id=message_id,
                           timestamp=timestamp, message=payload)
        return (record.inbox_id, record.thread_id, record.message_id, record.timestamp,
                record.epoch_id, record.version, record.blob)

