"""Receiving: envelopes from the server (HTTP receive or the push channel) decrypted, stored
and acknowledged.

* **Batched transactions.** A batch of envelopes (a backlog drained on connect, a push) is
  handled in one local transaction. A run of messages is first tried as one write-behind
  block (``ClientStore.write_behind``: each session record is written once, at commit, not
  once per message); if any envelope of it fails, that attempt is rolled back whole and the run
  is redone with a savepoint per envelope, so a poisoned one is undone alone and refused while
  the rest commit. Server notices (device changes, which may ask the server for device lists)
  run between runs of messages, outside it.
* **Exactly once.** The store's (conversation, message id) key and the processed-envelope table
  give exactly-once storage under the server's at-least-once delivery; the batch is
  acknowledged only after it committed.
* **Refusals.** What cannot be opened, and everything from a blocked account, is acknowledged
  as *refused*: the server then does not make the sender a contact (no device notices).
* **Receipts.** New visible messages from other accounts are acknowledged to their senders
  with one delivery receipt per sender and batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from e2ee_core.client import consts
from e2ee_core.client.context import Address, DeviceContext
from e2ee_core.client.conversations import Conversations
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import AccountBlocked, DeviceRemoved
from e2ee_core.client.fanout import Fanout
from e2ee_core.client.frames import GROUP, PAIRWISE, Frame, InvalidFrame, unwrap
from e2ee_core.client.group_chats import GroupChats
from e2ee_core.client.models import Message
from e2ee_core.content import MAX_RECEIPT_IDS, Content, DeliveryReceipt
from e2ee_core.device import Ciphertext, MessageType
from e2ee_core.errors import DuplicateMessage, E2EEError, UntrustedIdentity
from e2ee_core.groups import DuplicateGroupMessage
from e2ee_core.server.errors import DeviceWasRemoved, ServerError, ServerUnreachable
from e2ee_core.server.push_client import PushConnection
from e2ee_core.server.wire import Envelope

log = logging.getLogger("e2ee_core.client")

Acknowledge = Callable[[list[int], list[int]], object]
"""Acknowledge envelope ids, the second list those refused."""


class Inbox:
    """Fetches or is pushed envelopes, and turns them into stored messages."""

    def __init__(self, ctx: DeviceContext, devices: DeviceSets, fanout: Fanout,
                 groups: GroupChats, conversations: Conversations, *,
                 maintain_prekeys: Callable[[], object],
                 delivery_receipts: bool = True) -> None:
        self.ctx = ctx
        self.devices = devices
        self.fanout = fanout
        self.groups = groups
        self.conversations = conversations
        self.maintain_prekeys = maintain_prekeys
        self.delivery_receipts = delivery_receipts
        self._refused: list[int] = []  # envelopes of this batch that could not be opened

    # -- pulling -------------------------------------------------------------------------------
    def receive(self, wait: float = 0.0) -> list[Message]:
        """Fetch, decrypt, store and acknowledge everything queued for this device (waiting up
        to ``wait`` seconds when nothing is). Returns the new visible messages."""
        wait = min(max(wait, 0.0), consts.MAX_WAIT_SECONDS)
        new: list[Message] = []
        used_prekeys = False
        for _ in range(consts.MAX_BATCHES_PER_RECEIVE):
            batch = self.ctx.call(self.ctx.server.receive, wait)
            got, prekeys = self.take(batch.envelopes, self.ctx.server.acknowledge)
            new += got
            used_prekeys |= prekeys or batch.prekeys_low  # the hint: prekeys fetched by others
            if not batch.more:
                break
            wait = 0.0
        self.fanout.flush_outbox()
        if used_prekeys:
            self.maintain_prekeys()
        return new

    # -- the push channel ----------------------------------------------------------------------
    def listen(self, on_messages: Callable[[list[Message]], object], *,
               stop: threading.Event, max_backoff: float = consts.PUSH_MAX_BACKOFF_SECONDS,
               on_idle: Callable[[], object] | None = None,
               idle_every: float = consts.PUSH_POLL_STOP_SECONDS) -> None:
        """See :meth:`e2ee_core.client.Messenger.listen`."""
        pause = consts.PUSH_FIRST_BACKOFF_SECONDS
        server = self.ctx.server
        while not stop.is_set():
            self.ctx.check_not_removed()
            credential = server.credential
            assert credential is not None
            try:
                with PushConnection(server.base_url, credential) as channel:
                    self.ctx.channel = channel  # sends go over it while it is open
                    pause = consts.PUSH_FIRST_BACKOFF_SECONDS
                    self.maintain_prekeys()
                    while not stop.is_set():
                        if on_idle is not None:
                            on_idle()
                        event = channel.next_event(timeout=idle_every)
                        if event is None or not event.envelopes:
                            continue
                        new, prekeys = self.take(event.envelopes, channel.ack)
                        self.fanout.flush_outbox()
                        if prekeys:
                            self.maintain_prekeys()
                        if new:
                            on_messages(new)
            except DeviceWasRemoved:
                self.ctx.mark_removed()
                raise DeviceRemoved("this device was removed from its account") from None
            except ServerUnreachable:
                log.info("client.push.reconnect pause_ms=%d", int(pause * 1000))
                self.ctx.channel = None
                stop.wait(pause)
                pause = min(pause * 2, max_backoff)
            finally:
                self.ctx.channel = None

    # -- one batch -----------------------------------------------------------------------------
    def take(self, envelopes: list[Envelope],
             acknowledge: Acknowledge) -> tuple[list[Message], bool]:
        """Handle one batch and acknowledge it: the new visible messages, and whether one-time
        prekeys were used."""
        store = self.ctx.store
        new: list[Message] = []
        used_prekeys = False
        ids = [e.id for e in envelopes]
        run: list[Envelope] = []
        try:
            for envelope in [*envelopes, None]:
                if envelope is not None and envelope.kind == "message":
                    run.append(envelope)
                    continue
                if run:  # a run of messages: one transaction
                    got, prekey = self._take_run(run)
                    new += got
                    used_prekeys |= prekey
                    run = []
                if envelope is not None and not store.envelope_seen(envelope.id):
                    self.devices.handle_notice(envelope)
        except BaseException:
            self._refused = []
            self.groups.unparked = []
            raise
        new += self.groups.unparked
        self.groups.unparked = []
        if ids:
            refused, self._refused = self._refused, []
            self.ctx.call(acknowledge, ids, refused)
            store.forget_envelopes(ids)
        self.devices.learn_first_contacts()
        if self.delivery_receipts:
            self._send_delivery_receipts(new)
        log.info("client.receive envelopes=%d", len(ids))
        return new, used_prekeys

    def _send_delivery_receipts(self, new: list[Message]) -> None:
        """One delivery receipt per sending account (1:1 conversations; a group's members
        see reads, not deliveries)."""
        by_sender: dict[str, list[bytes]] = {}
        for message in new:
            if not message.outgoing and message.conversation == message.sender:
                by_sender.setdefault(message.sender, []).append(message.message_id)
        for sender, message_ids in sorted(by_sender.items()):
            for i in range(0, len(message_ids), MAX_RECEIPT_IDS):
                receipt = DeliveryReceipt(tuple(message_ids[i:i + MAX_RECEIPT_IDS]))
                try:
                    self.fanout.send_pairwise(sender, Content.new(
                        receipt, sent_at_ms=self.ctx.clock()))
                except (E2EEError, ServerError) as exc:  # a receipt is best effort
                    log.info("client.receipt.not_sent reason=%s", type(exc).__name__)

    def _take_run(self, run: list[Envelope]) -> tuple[list[Message], bool]:
        """A run of messages in one transaction: the fast way first (one write-behind block,
        nothing caught), else, when any envelope of it fails, again one savepoint each."""
        store = self.ctx.store
        if len(run) > 1:
            # What the run may change in memory, to put back if it is rolled back.
            unparked, outbox = len(self.groups.unparked), len(self.ctx.outbox)
            first_contacts = set(self.devices.first_contacts)
            live_sessions = set(self.devices.live_sessions)
            try:
                try:
                    with store.write_behind():
                        return self._open_run(run, fast=True)
                except BaseException:
                    del self.groups.unparked[unparked:]
                    del self.ctx.outbox[outbox:]
                    self.devices.first_contacts = first_contacts
                    self.devices.live_sessions = live_sessions
                    self.groups.reload()  # membership and group state as committed
                    raise
            except (ServerError, DeviceRemoved):
                raise  # not an envelope's fault: the run stays queued for the next receive
            except E2EEError as exc:  # an envelope failed: all undone; one at a time now
                log.debug("client.receive.batch_retry reason=%s", type(exc).__name__)
        with store.atomic():
            return self._open_run(run, fast=False)

    def _open_run(self, run: list[Envelope], *, fast: bool) -> tuple[list[Message], bool]:
        store = self.ctx.store
        new: list[Message] = []
        used_prekeys = False
        for queued in run:
            if not store.envelope_seen(queued.id):
                got, prekey = (self._open_envelope(queued, fast=True) if fast
                               else self._handle_envelope(queued))
                new += got
                used_prekeys |= prekey
        return new, used_prekeys

    def _open_envelope(self, envelope: Envelope, *, fast: bool) -> tuple[list[Message], bool]:
        """Decrypt and store one envelope; its errors escape (the callers decide). On the fast
        way even a changed identity escapes, so that the run is redone one envelope at a time
        and the change is handled (and announced) once."""
        assert envelope.content is not None
        source = (envelope.source, envelope.source_device)
        store = self.ctx.store
        kind, payload = unwrap(envelope.content)
        if store.is_blocked(envelope.source):  # dropped unread, refused
            raise AccountBlocked(envelope.source)
        if kind == PAIRWISE:
            ciphertext = Ciphertext.from_bytes(payload)
            prekey = ciphertext.type == MessageType.PREKEY
            if fast:
                return self._decrypt_pairwise(envelope.id, source, ciphertext), prekey
            try:
                return self._decrypt_pairwise(envelope.id, source, ciphertext), prekey
            except UntrustedIdentity as exc:
                self.devices.identity_changed(source, exc.identity_key)
                return self._decrypt_pairwise(envelope.id, source, ciphertext), True
        assert kind == GROUP
        return self.groups.decrypt(envelope.id, source, payload), False

    def _handle_envelope(self, envelope: Envelope) -> tuple[list[Message], bool]:
        """One envelope in its own savepoint: a failure is undone alone, and refused."""
        store = self.ctx.store
        try:
            with store.savepoint():  # undone alone if this envelope fails
                return self._open_envelope(envelope, fast=False)
        except (DuplicateMessage, DuplicateGroupMessage):
            reason = "duplicate"  # delivered before (or a group copy for our own devices)
        except (ServerError, DeviceRemoved):
            raise  # not this envelope's fault: it stays queued for the next receive
        except E2EEError as exc:  # InvalidMessage, NoSession, ContentError, GroupError, ...
            reason = type(exc).__name__  # a poisoned envelope must not block the queue
            self._refused.append(envelope.id)  # its sender does not become a contact
        log.info("client.envelope.dropped reason=%s", reason)
        store.mark_envelope(envelope.id)
        return [], False

    def _decrypt_pairwise(self, envelope_id: int, source: Address,
                          ciphertext: Ciphertext) -> list[Message]:
        store = self.ctx.store
        with store.savepoint():
            frame = Frame.decode(self.ctx.device.decrypt(source, ciphertext))
            self.devices.note_sender_device(source)
            messages = self._accept(frame, source)
            store.mark_envelope(envelope_id)
        return messages

    def _accept(self, frame: Frame, source: Address) -> list[Message]:
        sender, sender_device = source
        me = self.ctx.username
        if sender == me:
            conversation, outgoing = frame.destination, True  # sync from our other device
        elif frame.destination == me:
            conversation, outgoing = sender, False
        else:
            raise InvalidFrame("message addressed to another account")
        content = frame.content
        if content.group_id is not None:
            self.groups.management(content, sender, sender_device)
            return []
        return self.conversations.store_content(conversation, content, sender, sender_device,
                                                outgoing=outgoing)
