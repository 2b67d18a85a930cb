"""Loading history from the mailbox (issue #15), for
:class:`~e2ee_core.client.history.History`: a conversation's older messages page by page
(:meth:`HistoryLoading.load_older`) or the whole mailbox (:meth:`HistoryLoading.load_all`).
All or nothing: every record is opened and checked before anything is stored, in one
transaction, with its edited flag and reactions (and not queued for saving again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from e2ee_core.client.context import DeviceContext
from e2ee_core.client.conversations import Conversations
from e2ee_core.client.errors import HistoryUnavailable
from e2ee_core.client.history_epochs import HistoryEpochs
from e2ee_core.client.history_payload import INBOX, HistoryPayload
from e2ee_core.client.history_saving import HistorySaving
from e2ee_core.client.models import Message
from e2ee_core.labyrinth import mailbox
from e2ee_core.labyrinth.errors import LabyrinthError
from e2ee_core.server.errors import ServerError
from e2ee_core.server.labyrinth_client import LabyrinthClient
from e2ee_core.server.labyrinth_wire import Cursor, LoadQuery, StoredRecord


class HistoryLoading:
    """Reading the mailbox into the local store."""

    def __init__(self, ctx: DeviceContext, lab: LabyrinthClient, epochs: HistoryEpochs,
                 conversations: Conversations, saving: HistorySaving) -> None:
        self.ctx = ctx
        self.lab = lab
        self.epochs = epochs
        self.conversations = conversations
        self.saving = saving

    def load_older(self, conversation: str, limit: int = 100) -> list[Message]:
        """Load up to ``limit`` messages of ``conversation`` older than those loaded so far
        (newest first from the mailbox). All or nothing: :class:`HistoryError` and no local
        change when anything fails."""
        store = self.ctx.store
        cursor_name = f"cursor:{conversation}"
        raw_cursor = store.labyrinth_get(cursor_name)
        if raw_cursor == b"end":
            return []
        try:
            self.epochs.catch_up()
            query = LoadQuery(inbox_id=INBOX, thread_id=conversation, limit=limit,
                              cursor=None if raw_cursor is None else Cursor.decode(
                                  raw_cursor.decode("ascii")))
            page = self.ctx.call(self.lab.load, query)
        except (ServerError, LabyrinthError) as exc:
            raise HistoryUnavailable(f"loading failed: {type(exc).__name__}") from None
        opened = self.open_all(page.records)
        with store.atomic():
            new = self.store_loaded(reversed(opened))
            store.labyrinth_set(cursor_name, b"end" if page.cursor is None
                                else page.cursor.encode().encode("ascii"))
        return new

    def load_all(self) -> list[Message]:
        """Load every record of the mailbox (a restored or linked device reading the whole
        history); all or nothing."""
        try:
            self.epochs.catch_up()
            records = list(self.lab.iter_records(LoadQuery(inbox_id=INBOX, limit=1000)))
        except (ServerError, LabyrinthError) as exc:
            raise HistoryUnavailable(f"loading failed: {type(exc).__name__}") from None
        opened = self.open_all(records)
        with self.ctx.store.atomic():
            return self.store_loaded(reversed(opened))

    def open_all(self, records: Sequence[StoredRecord]
                  ) -> list[tuple[str, HistoryPayload]]:
        # Each thread's key derived once per epoch (mailbox.EpochKeys), not once per record.
        by_id = {k.epoch.epoch_id: mailbox.EpochKeys(k.epoch) for k in self.epochs.known()}
        out: list[tuple[str, HistoryPayload]] = []
        for record in records:
            keys = by_id.get(record.epoch_id)
            if keys is None:
                raise HistoryUnavailable("a record of an epoch this device cannot reach")
            try:
                plaintext = keys.open(record)
            except LabyrinthError as exc:
                raise HistoryUnavailable(f"a record does not open: {type(exc).__name__}"
                                         ) from None
            payload = HistoryPayload.decode(plaintext)
            if payload.content.message_id.hex() != record.message_id:
                raise HistoryUnavailable("a record's message id does not match its content")
            out.append((record.thread_id, payload))
        return out

    def store_loaded(self, opened: Iterable[tuple[str, HistoryPayload]]) -> list[Message]:
        """Store loaded messages (the caller holds the transaction) with their edited flag and
        reactions; a message this device already has keeps its local state."""
        store = self.ctx.store
        new: list[Message] = []
        with self.saving.paused():  # what is loaded is not queued again
            for conversation, payload in opened:
                got = self.conversations.store_content(
                    conversation, payload.content, payload.sender, payload.sender_device,
                    outgoing=payload.outgoing)
                if got and (payload.edited or payload.reactions):
                    message_id = payload.content.message_id
                    if payload.edited:
                        store.replace_content(conversation, message_id, payload.content,
                                              edited=True)
                    for reactor, emoji in payload.reactions:
                        store.set_reaction(conversation, message_id, reactor, emoji)
                    got = [self.conversations.message(conversation, message_id)]
                new += got
        return new

