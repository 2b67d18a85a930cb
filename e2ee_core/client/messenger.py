"""``Messenger``: one device of a multi-device account, on top of the delivery server.

A thin façade over the parts, each in its own module and sharing one
:class:`~e2ee_core.client.context.DeviceContext`:

* :mod:`.enrolment`: register, link, resume; prekeys kept topped up and rotated;
* :mod:`.fanout`: client fanout (one envelope per device, own devices included) and the
  server's 409 device-set answers;
* :mod:`.devices`: accepted device sets, sessions, change notices;
  :mod:`.verification`: safety numbers, verification, block list;
* :mod:`.inbox`: receiving (HTTP or the push channel), batched store transactions, receipts;
* :mod:`.conversations`: the local history (edits, reactions, receipts, disappearing messages);
* :mod:`.group_chats`: Sender-Key groups;
* :mod:`.store`: every SQL statement, typed rows.

A ``Messenger`` is used from the thread that created it (its database connection is per
thread; an in-memory state lives only in that connection).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

import requests

from e2ee_core.attachments import blob_size, decrypt_attachment, encrypt_attachment
from e2ee_core.client import consts
from e2ee_core.client.context import Clock, DeviceContext, wall_clock
from e2ee_core.client.conversations import Conversations
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.enrolment import Prekeys, enrol, resume
from e2ee_core.client.errors import AccountBlocked, AttachmentTooLarge, TransparencyError
from e2ee_core.client.fanout import Fanout
from e2ee_core.client.frames import Frame
from e2ee_core.client.group_chats import GroupChats
from e2ee_core.client.history import History
from e2ee_core.client.inbox import Inbox
from e2ee_core.client.models import (
    ChatSummary,
    ContactDevices,
    DeviceSafety,
    Message,
    group_conversation,
    group_id_of,
)
from e2ee_core.client.store import ClientStore, Notice
from e2ee_core.client.verification import Verification
from e2ee_core.content import (
    AttachmentPointer,
    Body,
    Content,
    Delete,
    Edit,
    Reaction,
    ReadReceipt,
    Text,
    TimerChange,
)
from e2ee_core.device import Device
from e2ee_core.disappearing import (
    DisappearingMessages,
    ExpiryStart,
    StoredMessage,
    server_expiry_hint_ms,
)
from e2ee_core.groups import SenderAddress
from e2ee_core.server.client import ServerClient
from e2ee_core.server.errors import PayloadTooLarge
from e2ee_core.server.wire import OutgoingEnvelope

__all__ = ["ChatSummary", "Clock", "ContactDevices", "DeviceSafety", "Message", "Messenger",
           "Notice", "group_conversation"]


class Messenger:
    """One device of an account: keys, sessions, local messages, groups, and the server link.

    Create with :meth:`register` (new account, device 1), :meth:`link` (another device of an
    existing account, needs the password) or :meth:`open` (resume a saved state). ``state`` is
    an SQLite file (created 0600) or None for an in-memory state. ``delivery_receipts``: tell
    senders when their messages reached this device (on by default).
    """

    def __init__(self, store: ClientStore, server: ServerClient, *,
                 clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
                 max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES,
                 delivery_receipts: bool = True) -> None:
        ctx = DeviceContext(store, server, Device(store.protocol), clock or wall_clock,
                            store.require_meta("username"), int(store.require_meta("device_id")),
                            expiry_start)
        self.ctx = ctx
        self.max_attachment_bytes = max_attachment_bytes
        self.prekeys = Prekeys(ctx)
        self.device_sets = DeviceSets(ctx)
        self.fanout = Fanout(ctx, self.device_sets)
        self.conversations = Conversations(ctx)
        self.group_chats = GroupChats(ctx, self.device_sets, self.fanout, self.conversations)
        self.device_sets.events = self.group_chats
        self.verification = Verification(ctx, self.device_sets, self.fanout)
        self.history = History(ctx, self.device_sets, self.conversations)
        self.conversations.history = self.history  # queued in the storing transaction
        self.inbox = Inbox(ctx, self.device_sets, self.fanout, self.group_chats,
                           self.conversations, maintain_prekeys=self.maintain_prekeys,
                           delivery_receipts=delivery_receipts)

    def __repr__(self) -> str:
        return f"Messenger(device_id={self.device_id})"

    # -- who and what --------------------------------------------------------------------------
    @property
    def store(self) -> ClientStore:
        return self.ctx.store

    @property
    def server(self) -> ServerClient:
        return self.ctx.server

    @property
    def device(self) -> Device:
        return self.ctx.device

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def username(self) -> str:
        return self.ctx.username

    @property
    def device_id(self) -> int:
        return self.ctx.device_id

    @property
    def local_address(self) -> SenderAddress:
        return SenderAddress(self.username, self.device_id)

    @property
    def mismatches(self) -> int:
        """409 answers handled so far (observability for tests and apps)."""
        return self.fanout.mismatches

    @property
    def disappearing(self) -> DisappearingMessages:
        return self.conversations.disappearing

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def register(cls, server_url: str, username: str, password: str, *,
                 state: str | Path | None = None, session: requests.Session | None = None,
                 prekeys: int = consts.PREKEY_BATCH, kem_prekeys: int = consts.KEM_PREKEY_BATCH,
                 clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
                 max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES,
                 delivery_receipts: bool = True) -> Messenger:
        """Create the account ``username`` with this new device as device 1."""
        store, server = enrol("register", server_url, username, password, state=state,
                              session=session, prekeys=prekeys, kem_prekeys=kem_prekeys,
                              now_s=(clock or wall_clock)() // 1000)
        return cls(store, server, clock=clock, expiry_start=expiry_start,
                   max_attachment_bytes=max_attachment_bytes,
                   delivery_receipts=delivery_receipts)

    @classmethod
    def link(cls, server_url: str, username: str, password: str, *,
             state: str | Path | None = None, session: requests.Session | None = None,
             prekeys: int = consts.PREKEY_BATCH, kem_prekeys: int = consts.KEM_PREKEY_BATCH,
             clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
             max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES,
             delivery_receipts: bool = True) -> Messenger:
        """Add this new device to the existing account ``username`` (the account password is
        required). Other devices and contacts are told by the server; this device receives
        only what is sent from now on."""
        store, server = enrol("link", server_url, username, password, state=state,
                              session=session, prekeys=prekeys, kem_prekeys=kem_prekeys,
                              now_s=(clock or wall_clock)() // 1000)
        return cls(store, server, clock=clock, expiry_start=expiry_start,
                   max_attachment_bytes=max_attachment_bytes,
                   delivery_receipts=delivery_receipts)

    @classmethod
    def open(cls, state: str | Path, *, session: requests.Session | None = None,
             clock: Clock | None = None, expiry_start: ExpiryStart = ExpiryStart.READ,
             max_attachment_bytes: int = consts.SERVER_MAX_ATTACHMENT_BYTES,
             delivery_receipts: bool = True) -> Messenger:
        """Resume the device saved in ``state``."""
        store, server = resume(state, session=session)
        return cls(store, server, clock=clock, expiry_start=expiry_start,
                   max_attachment_bytes=max_attachment_bytes,
                   delivery_receipts=delivery_receipts)

    def close(self) -> None:
        """Close the server connection and the local database."""
        self.server.close()
        self.store.close()

    def maintain_prekeys(self, *, threshold: int = consts.PREKEY_REFILL_THRESHOLD,
                         batch: int = consts.PREKEY_BATCH,
                         kem_batch: int = consts.KEM_PREKEY_BATCH) -> bool:
        """See :meth:`e2ee_core.client.enrolment.Prekeys.maintain`."""
        return self.prekeys.maintain(threshold=threshold, batch=batch, kem_batch=kem_batch)

    # -- sending -------------------------------------------------------------------------------
    def send_text(self, conversation: str, text: str) -> Content:
        """Send a text message to an account (all its devices) or a group conversation."""
        return self.send(conversation, Text(text))

    def send(self, conversation: str, body: Body) -> Content:
        """Send any content body (sticker, reaction, edit, delete, receipt, attachment pointer,
        timer change...) to an account or a group; returns the sent content. The message is
        stored locally and synced to this account's other devices."""
        group_id = group_id_of(conversation)
        if group_id is not None:
            for member in self.group_chats.group(group_id).members:  # refuse before anyone
                if member != self.username:
                    self.device_sets.check_sendable(member)
        elif conversation != self.username:
            if self.store.is_blocked(conversation):
                raise AccountBlocked(conversation)
            self.device_sets.ensure_known(conversation)
            self.device_sets.check_sendable(conversation)
        content = self._compose(conversation, body, group_id)
        if group_id is not None:
            self.group_chats.send(group_id, content)
        else:
            self.fanout.send_pairwise(conversation, content,
                                      expires_at_ms=server_expiry_hint_ms(content))
        with self.store.atomic():
            self.conversations.store_content(conversation, content, self.username,
                                             self.device_id, outgoing=True)  # and queued
        self.fanout.flush_outbox()
        self.history.flush()  # one save request; a failure keeps the queue
        return content

    def _compose(self, conversation: str, body: Body, group_id: bytes | None) -> Content:
        timers = self.conversations.timers
        now = self.clock()
        timer = timers.get(conversation)
        if isinstance(body, TimerChange):
            # Strictly after the setting it replaces, so every device orders the two alike.
            now = max(now, timers.state(conversation).changed_at_ms + 1)
            timer = None  # the change notice itself stays
        return Content.new(body, sent_at_ms=now, expire_timer=timer, group_id=group_id)

    def react(self, conversation: str, target_id: bytes, emoji: str | None) -> Content:
        """React to a message (None removes this account's reaction)."""
        return self.send(conversation, Reaction(target_id, emoji))

    def edit(self, conversation: str, target_id: bytes, text: str) -> Content:
        """Replace the text of one of this account's messages, for everyone."""
        return self.send(conversation, Edit(target_id, text))

    def delete_for_everyone(self, conversation: str, target_id: bytes) -> Content:
        """Delete one of this account's messages on every device of every participant (and
        from this account's encrypted mailbox, when history is on)."""
        return self.send(conversation, Delete(target_id))  # the deletion queued and flushed

    def set_timer(self, conversation: str, seconds: int | None) -> Content:
        """Turn disappearing messages on (``seconds``) or off (None) for a conversation."""
        return self.send(conversation, TimerChange(seconds))

    def mark_read(self, conversation: str, message_ids: Iterable[bytes]) -> Content | None:
        """Mark incoming messages read here (starting read-based timers) and send a read
        receipt to the conversation (and, through the sync, to this account's devices)."""
        ids = [m for m in message_ids if self.conversations.mark_read_here(conversation, m)]
        if not ids:
            return None
        return self.send(conversation, ReadReceipt(tuple(ids)))

    def send_attachment(self, conversation: str, data: bytes, *, content_type: str,
                        file_name: str | None = None) -> Content:
        """Encrypt ``data`` with a fresh key, upload the padded blob, send the pointer (the
        key travels only inside the end-to-end encrypted message)."""
        if blob_size(len(data)) > self.max_attachment_bytes:
            raise AttachmentTooLarge("attachment exceeds the server's blob limit")
        blob, pointer = encrypt_attachment(data, content_type=content_type,
                                           file_name=file_name)
        try:
            ref = self.ctx.call(self.server.upload_attachment, blob)
        except PayloadTooLarge:
            raise AttachmentTooLarge("attachment exceeds the server's blob limit") from None
        pointer = dataclasses.replace(pointer, blob_id=ref.id.encode("ascii"))
        return self.send(conversation, pointer)

    def download_attachment(self, pointer: AttachmentPointer) -> bytes:
        """Download and decrypt an attachment (digest, tag and padding checked)."""
        blob = self.ctx.call(self.server.download_attachment, pointer.blob_id.decode())
        return decrypt_attachment(blob, pointer)

    def fanout_envelopes(self, recipient: str, content: Content) -> list[OutgoingEnvelope]:
        """The client-fanout step of a send, without the server call: ``content`` encrypted
        over the pairwise session of every device of ``recipient`` this device knows and of
        every other own device (sessions are started from fetched bundles where missing).
        All ratchet steps commit in one local transaction before the envelopes are returned."""
        return self.fanout.pairwise_envelopes(self.fanout.targets(recipient),
                                              Frame(recipient, content).encode())

    # -- receiving -----------------------------------------------------------------------------
    def receive(self, wait: float = 0.0) -> list[Message]:
        """Fetch, decrypt, store and acknowledge everything queued for this device (waiting up
        to ``wait`` seconds when nothing is). Returns the new visible messages. Then, when
        due, this account's device-list history is checked (:meth:`check_transparency`)."""
        messages = self.inbox.receive(wait)  # queued for the mailbox as they were stored
        self.history.flush()  # one save request per receive
        self._monitor_if_due()
        return messages

    def check_transparency(self) -> list[Notice]:
        """Verify this account's device-list history in the key-transparency directory now;
        returns the ``kt_*`` notices it raised (e.g. ``kt_unknown_device``: a device this
        device never heard of). Raises a :class:`~e2ee_core.client.errors.TransparencyError`
        when the server's proofs do not hold (also recorded as a notice)."""
        return self.device_sets.kt.monitor()

    def require_auditor(self, url: str, namespace: str, keys: Iterable[bytes]) -> None:
        """From now on accept a key-transparency epoch only with the signature of the auditor
        at ``url`` (``e2ee-kt-audit serve``) over the same root for log ``namespace``, made
        with one of ``keys`` (its Ed25519 public keys). Defeats a server showing this device a
        different view than others: such an epoch is refused (:class:`~e2ee_core.client.
        errors.ForkedView`), as is one the auditor has not signed yet (:class:`~e2ee_core.
        client.errors.EpochNotAudited`: try again after the auditor's next run)."""
        self.device_sets.kt.require_auditor(url, namespace, keys)

    def _monitor_if_due(self) -> None:
        """On the first receive, every KT_MONITOR_INTERVAL_MS and after a device notice about
        this account; a failed check is already a notice, receiving goes on."""
        if self.device_sets.kt.monitor_due():
            try:
                self.device_sets.kt.monitor()
            except TransparencyError:
                pass

    def listen(self, on_messages: Callable[[list[Message]], object], *,
               stop: threading.Event, max_backoff: float = consts.PUSH_MAX_BACKOFF_SECONDS,
               on_idle: Callable[[], object] | None = None,
               idle_every: float = consts.PUSH_POLL_STOP_SECONDS) -> None:
        """Receive through the push channel until ``stop`` is set: the queue is drained, then
        envelopes arrive as they are stored and are acknowledged over the socket in batches;
        ``on_messages`` gets each batch's new visible messages. A broken connection is
        reopened with a growing pause (up to ``max_backoff`` seconds, reset once connected).
        Prekeys are checked on each connect. :class:`DeviceRemoved` ends it (only on the
        server's explicit answer); :class:`AuthenticationFailed` ends it and changes nothing.
        ``on_idle`` runs on this same thread at least every ``idle_every`` seconds while
        connected (an interactive app sends from there: the messenger is not shared across
        threads). This account's device-list history is checked when due, at the start and
        after each batch (:meth:`check_transparency`)."""
        self._monitor_if_due()

        def saved(new: list[Message]) -> object:
            self.history.flush()
            shown = on_messages(new)
            self._monitor_if_due()  # key transparency, as after a receive
            return shown

        def idle() -> object:
            self.history.flush_pending()  # edits, reactions, deletes of batches without news
            return None if on_idle is None else on_idle()

        self.inbox.listen(saved, stop=stop, max_backoff=max_backoff, on_idle=idle,
                          idle_every=idle_every)

    # -- stored messages -----------------------------------------------------------------------
    def message(self, conversation: str, message_id: bytes) -> Message:
        """One stored message (edits applied)."""
        return self.conversations.message(conversation, message_id)

    def messages(self, conversation: str | None = None) -> list[Message]:
        """Stored messages of one conversation (or all), in the order they were stored."""
        return self.conversations.messages(conversation)

    def chats(self) -> list[ChatSummary]:
        """The conversations with stored messages, most recent first, with unread counts."""
        return self.conversations.chats()

    def unread(self, conversation: str) -> list[Message]:
        """Incoming messages of ``conversation`` not marked read yet, oldest first."""
        return self.conversations.unread(conversation)

    def read_by(self, conversation: str, message_id: bytes) -> dict[str, int]:
        """Accounts whose read receipt for this message arrived, with their read time (ms)."""
        return self.conversations.read_by(conversation, message_id)

    def delivered_to(self, conversation: str, message_id: bytes) -> dict[str, int]:
        """Accounts whose delivery receipt for this message arrived, with the time (ms)."""
        return self.store.delivered_to(conversation, message_id)

    def sweep(self) -> list[StoredMessage]:
        """Delete every disappearing message whose time is up (by this Messenger's clock);
        returns what was deleted. Call it at :meth:`next_expiry_ms`."""
        return self.conversations.sweep()

    def next_expiry_ms(self) -> int | None:
        """When the next stored message expires, or None."""
        return self.conversations.next_expiry_ms()

    def timer(self, conversation: str) -> int | None:
        """The conversation's disappearing timer in seconds (None: off)."""
        return self.conversations.timer(conversation)

    # -- control over endpoints ----------------------------------------------------------------
    def devices(self, username: str) -> ContactDevices:
        """A contact's current devices (fetched now; differences become notices), each with
        its safety number against this device, and the combined safety number."""
        return self.verification.devices_of(username)

    def verify(self, username: str, safety_number: str | None = None) -> ContactDevices:
        """Mark ``username`` verified (after the users compared the combined safety number;
        pass it to have it checked). Clears a pending change."""
        return self.verification.verify(username, safety_number)

    def accept_changes(self, username: str) -> None:
        """Accept a verified contact's changed devices without re-verifying."""
        self.verification.accept_changes(username)

    def notices(self, after_id: int = 0) -> list[Notice]:
        """Device-change notices (added, removed, identity changed) and key-transparency
        notices (``kt_*``), oldest first."""
        return self.verification.notices(after_id)

    def block(self, username: str) -> None:
        """Block an account (see :meth:`Verification.block`)."""
        self.verification.block(username)

    def unblock(self, username: str) -> None:
        self.verification.unblock(username)

    def blocked(self) -> list[str]:
        """The accounts this device blocked, by name."""
        return self.verification.blocked()

    def remove_device(self, device_id: int) -> None:
        """Remove one of this account's devices (this one included). The server stops
        delivering to it at once and tells the other devices and the contacts."""
        self.ctx.call(self.server.remove_device, device_id)
        if device_id == self.device_id:
            self.ctx.mark_removed()
            return
        self.device_sets.device_gone(self.username, device_id)
        self.fanout.flush_outbox()
        self.history.device_removed()  # a new mailbox epoch without it

    # -- message history in the encrypted mailbox (e2ee_core.client.history) ------------------
    def enable_history(self) -> bool:
        """Save this device's messages in the account's Labyrinth mailbox from now on; whether
        it is a member already (a linked device is admitted by an enabled one)."""
        return self.history.enable()

    def load_history(self, conversation: str, limit: int = 100) -> list[Message]:
        """Load up to ``limit`` older messages of ``conversation`` from the mailbox (all or
        nothing)."""
        return self.history.load_older(conversation, limit)

    def load_all_history(self) -> list[Message]:
        """Load the whole mailbox (a linked or restored device); all or nothing."""
        return self.history.load_all()

    def history_attachment(self, conversation: str, message_id: bytes) -> bytes:
        """A stored message's attachment, fetched through its reference in the mailbox (which
        exists until the message is deleted for everyone); decrypted and checked."""
        return self.history.attachment(conversation, message_id)

    def create_recovery_code(self) -> str:
        """A recovery code that restores the history on a new device (shown once)."""
        return self.history.create_recovery_code()

    def restore_history(self, code: str) -> int:
        """Join the mailbox with a recovery code (up to three typos corrected)."""
        return self.history.restore(code)

    def maintain_history(self) -> int:
        """Join or catch up with the mailbox, admit linked devices waiting for it and save
        what is queued; how many messages were saved."""
        if self.history.sync():
            self.history.admit_devices()
        return self.history.flush()

    # -- groups --------------------------------------------------------------------------------
    def create_group(self, members: Iterable[str]) -> str:
        """Create a group with these other accounts; returns its conversation id."""
        return self.group_chats.create(members)

    def group_members(self, conversation: str) -> tuple[str, ...]:
        return self.group_chats.members(conversation)

    def groups(self) -> list[str]:
        """Conversation ids of the groups this device is a member of."""
        return self.group_chats.conversations_joined()

    def add_members(self, conversation: str, names: Iterable[str]) -> None:
        """Add accounts; they cannot read earlier messages."""
        self.group_chats.add_members(conversation, names)

    def remove_members(self, conversation: str, names: Iterable[str]) -> None:
        """Remove accounts: every remaining device replaces its sender key."""
        self.group_chats.remove_members(conversation, names)

    def leave_group(self, conversation: str) -> None:
        self.group_chats.remove_members(conversation, [self.username])
