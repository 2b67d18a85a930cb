"""Sender-Key groups as the Messenger runs them: creating and changing groups, sending a group
message (one encryption, one multi-recipient request), and receiving group content.

Membership changes and sender keys travel pairwise (:mod:`.fanout`'s outbox); group messages
travel as one :class:`~e2ee_core.groups.SenderKeyMessage` copied to every member device. A
group message that arrives before this device has the group's membership or the sender's key
(a newly linked device, reordered delivery) is parked and read when they arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from e2ee_core.client import consts
from e2ee_core.client.context import Address, DeviceContext
from e2ee_core.client.conversations import Conversations
from e2ee_core.client.devices import DeviceSets
from e2ee_core.client.errors import UnknownGroup
from e2ee_core.client.fanout import Fanout
from e2ee_core.client.frames import wrap_group
from e2ee_core.client.models import Message, group_conversation, group_id_of
from e2ee_core.content import Content, GroupMembershipChange, SenderKeyDistribution
from e2ee_core.disappearing import server_expiry_hint_ms
from e2ee_core.groups import (
    Group,
    GroupError,
    GroupState,
    NoSenderKeyState,
    Outgoing,
    SenderAddress,
    SenderKeyMessage,
)
from e2ee_core.server.wire import OutgoingEnvelope

log = logging.getLogger("e2ee_core.client")


class GroupChats:
    """The groups of one device (implements :class:`~.devices.DeviceEvents`)."""

    def __init__(self, ctx: DeviceContext, devices: DeviceSets, fanout: Fanout,
                 conversations: Conversations) -> None:
        self.ctx = ctx
        self.devices = devices
        self.fanout = fanout
        self.conversations = conversations
        self.groups: dict[bytes, Group] = {}
        self.reload()
        # Parked group messages that became readable during the current receive.
        self.unparked: list[Message] = []

    def reload(self) -> None:
        """Read every group's state from the store again (after a rolled-back transaction
        that may have changed the objects in memory)."""
        store = self.ctx.store
        groups: dict[bytes, Group] = {}
        for raw in store.group_states():
            state = GroupState.decode(raw)
            groups[state.group_id] = Group(state, store.sender_keys, clock=self.ctx.clock)
        self.groups = groups

    @property
    def local_address(self) -> SenderAddress:
        return SenderAddress(self.ctx.username, self.ctx.device_id)

    def _queue(self, group_id: bytes, out: Iterable[Outgoing]) -> None:
        self.ctx.outbox.extend((group_id, o) for o in out)

    # -- managing ------------------------------------------------------------------------------
    def create(self, members: Iterable[str]) -> str:
        """Create a group with these other accounts; returns its conversation id."""
        others = sorted(set(members) - {self.ctx.username})
        for name in others:
            self.devices.ensure_known(name)
        with self.ctx.store.atomic():
            group, out = Group.create(self.local_address, others, self.ctx.store.sender_keys,
                                      clock=self.ctx.clock)
            self.groups[group.group_id] = group
            self._save(group)
        self._queue(group.group_id, out)
        self.fanout.flush_outbox()
        return group_conversation(group.group_id)

    def members(self, conversation: str) -> tuple[str, ...]:
        return self.group(self.require_group_id(conversation)).members

    def conversations_joined(self) -> list[str]:
        """Conversation ids of the groups this device is a member of."""
        return [group_conversation(g) for g, group in self.groups.items() if group.is_member]

    def add_members(self, conversation: str, names: Iterable[str]) -> None:
        """Add accounts; they get our *current* chain key, so they cannot read earlier
        messages."""
        group = self.group(self.require_group_id(conversation))
        names = sorted(set(names))
        for name in names:
            self.devices.ensure_known(name)
        with self.ctx.store.atomic():
            out = group.add_members(names)
            self._save(group)
        self._queue(group.group_id, out)
        self.fanout.flush_outbox()

    def remove_members(self, conversation: str, names: Iterable[str]) -> None:
        """Remove accounts: every remaining device replaces its sender key, so the removed
        ones cannot read later messages."""
        group = self.group(self.require_group_id(conversation))
        with self.ctx.store.atomic():
            out = group.remove_members(names)
            self._save(group)
        self._queue(group.group_id, out)
        self.fanout.flush_outbox()

    def require_group_id(self, conversation: str) -> bytes:
        group_id = group_id_of(conversation)
        if group_id is None:
            raise UnknownGroup("not a group conversation")
        return group_id

    def group(self, group_id: bytes) -> Group:
        group = self.groups.get(group_id)
        if group is None or not group.is_member:
            raise UnknownGroup("not a member of this group")
        return group

    def _save(self, group: Group) -> None:
        self.ctx.store.save_group(group.group_id, group.state.encode())

    # -- device events (DeviceEvents) ----------------------------------------------------------
    def member_devices_changed(self, user: str) -> None:
        """A member account has a new device: it gets our current sender key (never earlier
        chain keys); a new device of our own account also gets each group's membership, which
        it joins from (Group.join accepts our own account as the inviter)."""
        now = self.ctx.clock()
        for group in self.groups.values():
            if not group.is_member or user not in group.members:
                continue
            if user == self.ctx.username:
                snapshot = GroupMembershipChange(group.epoch, group.members)
                self._queue(group.group_id, [Outgoing(frozenset([user]), Content.new(
                    snapshot, sent_at_ms=now, group_id=group.group_id))])
            skdm = SenderKeyDistribution(group.distribution_message())
            self._queue(group.group_id, [Outgoing(frozenset([user]), Content.new(
                skdm, sent_at_ms=now, group_id=group.group_id))])

    def device_gone(self, user: str, device_id: int) -> None:
        for group in self.groups.values():
            if group.is_member and user in group.members:
                out = group.forget_device(SenderAddress(user, device_id))
                self._save(group)
                self._queue(group.group_id, out)

    # -- sending -------------------------------------------------------------------------------
    def send(self, group_id: bytes, content: Content) -> None:
        """One encryption under our sender key, one request for every member device."""
        group = self.group(group_id)
        wire: bytes | None = None

        def build(targets: list[Address]) -> list[OutgoingEnvelope]:
            nonlocal wire
            if wire is None:
                with self.ctx.store.atomic():
                    wire = wrap_group(group.encrypt(content))
            return [OutgoingEnvelope(u, d, wire) for u, d in targets]

        def reconciled() -> None:
            # A 409 refused the send whole and new devices got the sender key as it is now:
            # the retry carries a fresh encryption they can read (the refused one reached no
            # one; its chain step is skipped).
            nonlocal wire
            wire = None

        others = sorted(m for m in group.members if m != self.ctx.username)
        self.fanout.send_many(others or [self.ctx.username], build,
                              expires_at_ms=server_expiry_hint_ms(content),
                              reconciled=reconciled)

    # -- receiving -----------------------------------------------------------------------------
    def decrypt(self, envelope_id: int, source: Address, payload: bytes) -> list[Message]:
        """A group message: decrypted and stored with the envelope marked, in one
        transaction; parked when its group or sender key has not arrived yet."""
        group_id = SenderKeyMessage.decode(payload).distribution_id
        group = self.groups.get(group_id)
        if group is None or not group.is_member:
            # A new device can get a group message before the group's membership, which its
            # own account's devices or the inviter send pairwise: keep it until they arrive.
            self._park(envelope_id, group_id, source, payload)
            return []
        store = self.ctx.store
        try:
            with store.atomic():
                content = group.decrypt(SenderAddress(*source), payload)
                messages = self.conversations.store_content(
                    group_conversation(group_id), content, source[0], source[1],
                    outgoing=source[0] == self.ctx.username)
                store.mark_envelope(envelope_id)
        except NoSenderKeyState:
            self._park(envelope_id, group_id, source, payload)  # the sender key is on its way
            return []
        return messages

    def _park(self, envelope_id: int, group_id: bytes, source: Address, payload: bytes) -> None:
        store = self.ctx.store
        with store.atomic():
            if not store.park_group_message(group_id, source[0], source[1], payload,
                                            limit=consts.MAX_PENDING_GROUP_CONTENT):
                raise UnknownGroup("too many group messages waiting for their group")
            store.mark_envelope(envelope_id)
        log.info("client.group.message_parked")

    def _read_parked(self, group_id: bytes) -> list[Message]:
        """Group messages kept for ``group_id`` that can be read now (membership or a sender
        key arrived); the others stay parked."""
        group = self.groups.get(group_id)
        if group is None or not group.is_member:
            return []
        store = self.ctx.store
        shown: list[Message] = []
        for parked in store.parked_group_messages(group_id):
            try:
                with store.atomic():
                    content = group.decrypt(SenderAddress(parked.sender, parked.sender_device),
                                            parked.payload)
                    shown += self.conversations.store_content(
                        group_conversation(group_id), content, parked.sender,
                        parked.sender_device, outgoing=parked.sender == self.ctx.username)
                    store.unpark_group_message(parked.id)
            except NoSenderKeyState:
                continue
            except GroupError as exc:  # a duplicate, or garbage: nothing more to wait for
                log.info("client.group.parked_dropped reason=%s", type(exc).__name__)
                store.unpark_group_message(parked.id)
        return shown

    def management(self, content: Content, sender: str, sender_device: int) -> None:
        """Membership changes and sender-key distributions, received over a pairwise session
        (inside the decrypt's transaction)."""
        assert content.group_id is not None
        if not self.ctx.store.insert_message(
                group_conversation(content.group_id), content, sender=sender,
                sender_device=sender_device, outgoing=sender == self.ctx.username,
                visible=False, received_at_ms=self.ctx.clock(), read_at_ms=None,
                expires_at_ms=None):
            return  # a copy we already applied
        self._apply(content, sender, sender_device)

    def _apply(self, content: Content, sender: str, sender_device: int) -> None:
        assert content.group_id is not None
        group_id = content.group_id
        store = self.ctx.store
        group = self.groups.get(group_id)
        address = SenderAddress(sender, sender_device)
        body = content.body
        joins = isinstance(body, GroupMembershipChange) and (
            self.ctx.username in body.added or (sender == self.ctx.username and group is None))
        try:
            if (group is None or not group.is_member) and joins:
                group, out = Group.join(self.local_address, address, content,
                                        store.sender_keys, clock=self.ctx.clock)
                self.groups[group_id] = group
                self._save(group)
                self._queue(group_id, out)
                for pending in store.take_pending(group_id):
                    self._apply(Content.decode(pending.content), pending.sender,
                                pending.sender_device)
                self.unparked += self._read_parked(group_id)
                return
            if group is None:
                # e.g. a member's sender key that overtook our invitation: keep it for later
                if not store.add_pending(group_id, sender, sender_device, content.encode(),
                                         limit=consts.MAX_PENDING_GROUP_CONTENT):
                    log.warning("client.group.pending_full")
                return
            if not group.is_member:
                return
            out = group.handle(address, content)
            self._save(group)
            self._queue(group_id, out)
            if isinstance(body, SenderKeyDistribution):
                self.unparked += self._read_parked(group_id)
        except GroupError as exc:
            log.info("client.group.content_refused reason=%s", type(exc).__name__)
