"""Sans-I/O group state for one device: membership, epochs, sender keys and re-keying rules.

A :class:`Group` never sends anything. Every method that changes the group returns a list of
:class:`Outgoing` items: a :class:`~e2ee_core.content.Content` (membership change or sender-key
distribution) and the *member names* it is for. The Messenger client encrypts each item over the
pairwise Signal sessions to every device of those members (its own other devices included when
the local name is among them, never the sending device itself). Group *messages* are one
:meth:`Group.encrypt` call: a single signed SenderKeyMessage that is sent to every member device.

Re-keying rules (why a removed member cannot read later messages):

* **Removal** (including leaving): the change moves the group to ``epoch + 1``; every remaining
  device deletes the removed members' sender keys, replaces its *own* sender key with a fresh one
  (new chain id, chain key and signing key) and distributes it only to the remaining members.
  The removed member holds only the old chains, which nobody encrypts with any more.
* **Join**: existing devices send their *current* chain key to the new members only; the chain
  ratchet is one-way, so earlier message keys cannot be derived from it. The new member creates
  its own sender key and distributes it to everyone.

Changes are linear: a change must carry exactly ``epoch + 1`` and come from a current member;
two concurrent changes conflict (:class:`~e2ee_core.groups.errors.EpochMismatch`) and the app
must re-issue one on top of the other. There is no admin role or server-side group
authorization here (Signal's zkgroup-based groups v2 is out of scope): any member may change
the membership, and every member sees who did.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from e2ee_core.content import (
    Content,
    ContentError,
    GroupMembershipChange,
    SenderKeyDistribution,
)
from e2ee_core.groups import _proto
from e2ee_core.groups.consts import GROUP_ID_LENGTH, PADDING_BLOCK
from e2ee_core.groups.errors import (
    EpochMismatch,
    GroupDecryptionFailed,
    GroupError,
    InvalidGroupUpdate,
    InvalidSenderKeyMessage,
    InvalidSenderKeyRecord,
    NotAMember,
)
from e2ee_core.groups.group_cipher import (
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
    rotate_sender_key,
)
from e2ee_core.groups.sender_keys import SenderKeyDistributionMessage, SenderKeyMessage
from e2ee_core.groups.store import SenderAddress, SenderKeyStore

__all__ = ["Clock", "Group", "GroupState", "Outgoing", "pad", "unpad"]

Clock = Callable[[], int]
"""Milliseconds since the Unix epoch (injectable for tests)."""


def pad(plaintext: bytes) -> bytes:
    """Signal's padding: 0x80, then zeros up to one byte short of a PADDING_BLOCK multiple
    (as Signal's apps and the 1:1 sessions do), so AES-CBC's PKCS#7 block lands the ciphertext
    on a multiple of 160 bytes."""
    padded_length = -(-(len(plaintext) + 2) // PADDING_BLOCK) * PADDING_BLOCK - 1
    return plaintext + b"\x80" + bytes(padded_length - len(plaintext) - 1)


def unpad(padded: bytes) -> bytes:
    """Inverse of :func:`pad`; raises GroupDecryptionFailed on malformed padding."""
    stripped = padded.rstrip(b"\x00")
    if not stripped or stripped[-1] != 0x80:
        raise GroupDecryptionFailed("group plaintext padding invalid")
    return stripped[:-1]


@dataclass(frozen=True)
class Outgoing:
    """Content for the devices of ``recipients`` (member names), sent over pairwise sessions."""

    recipients: frozenset[str]
    content: Content

    def __repr__(self) -> str:
        return f"Outgoing(<{len(self.recipients)} members>, type={self.content.type_id})"


@dataclass(frozen=True)
class GroupState:
    """Everything a device persists about a group besides the sender keys (which live in the
    :class:`SenderKeyStore`). ``senders`` are the remote devices whose keys are held."""

    group_id: bytes
    local: SenderAddress
    epoch: int
    members: tuple[str, ...]
    senders: tuple[SenderAddress, ...] = ()
    left: bool = False

    def encode(self) -> bytes:
        msg = _proto.new("GroupState")
        msg.group_id = self.group_id
        msg.local.name = self.local.name.encode("utf-8")
        msg.local.device_id = self.local.device_id
        msg.epoch = self.epoch
        msg.members.extend(m.encode("utf-8") for m in self.members)
        for sender in self.senders:
            msg.senders.add(name=sender.name.encode("utf-8"), device_id=sender.device_id)
        msg.left = self.left
        return _proto.serialize(msg)

    @classmethod
    def decode(cls, data: bytes) -> GroupState:
        """Parse a stored group state; raises InvalidSenderKeyRecord on malformed input."""
        err = InvalidSenderKeyRecord
        msg = _proto.parse("GroupState", data, err)
        try:
            def address(a: object) -> SenderAddress:
                return SenderAddress(_proto.require(a, "name", err).decode("utf-8"),
                                     _proto.require(a, "device_id", err))

            group_id = _proto.require(msg, "group_id", err)
            if len(group_id) != GROUP_ID_LENGTH:
                raise err("group id of the wrong length")
            return cls(group_id, address(_proto.require(msg, "local", err)),
                       _proto.require(msg, "epoch", err),
                       tuple(m.decode("utf-8") for m in msg.members),
                       tuple(address(s) for s in msg.senders), bool(msg.left))
        except UnicodeDecodeError:
            raise err("group state holds malformed text") from None
        except GroupError as exc:
            raise err(str(exc)) from None


class Group:
    """One device's view of one group, over a :class:`SenderKeyStore`."""

    def __init__(self, state: GroupState, store: SenderKeyStore, *, clock: Clock) -> None:
        self._state = state
        self._store = store
        self._clock = clock

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def create(cls, local: SenderAddress, others: Iterable[str], store: SenderKeyStore, *,
               clock: Clock, group_id: bytes | None = None) -> tuple[Group, list[Outgoing]]:
        """A new group at epoch 0 with ``local``'s account and ``others``; returns the group and
        the invitation plus our sender key for every member."""
        group_id = group_id if group_id is not None else secrets.token_bytes(GROUP_ID_LENGTH)
        if len(group_id) != GROUP_ID_LENGTH:
            raise GroupError(f"group id must be {GROUP_ID_LENGTH} bytes")
        members = tuple(sorted({local.name, *others}))
        change = _change(0, members, added=tuple(m for m in members if m != local.name))
        group = cls(GroupState(group_id, local, 0, members), store, clock=clock)
        invitation = group._content(change)
        return group, [Outgoing(frozenset(members), invitation),
                       group._distribution(frozenset(members))]

    @classmethod
    def join(cls, local: SenderAddress, sender: SenderAddress, content: Content,
             store: SenderKeyStore, *, clock: Clock) -> tuple[Group, list[Outgoing]]:
        """Join from an invitation (a membership change that adds ``local``'s account, or the
        creation message) received from ``sender``; returns our sender key for every member."""
        change = content.body
        if not isinstance(change, GroupMembershipChange) or content.group_id is None:
            raise InvalidGroupUpdate("not a group membership change")
        if len(content.group_id) != GROUP_ID_LENGTH:
            raise InvalidGroupUpdate("group id of the wrong length")
        if local.name not in change.added and local.name != sender.name:
            # Our own account's other device may bring us in too (group sync between devices).
            raise InvalidGroupUpdate("the invitation does not add this account")
        if sender.name not in change.members or sender.name in change.added:
            raise NotAMember("only an existing member can invite")
        group = cls(GroupState(content.group_id, local, change.epoch, change.members), store,
                    clock=clock)
        # A fresh own key: we may have been a member before, under an older key.
        rotate_sender_key(store, local, group.group_id)
        return group, [group._distribution(frozenset(change.members))]

    # -- accessors ---------------------------------------------------------------------------
    @property
    def state(self) -> GroupState:
        return self._state

    @property
    def group_id(self) -> bytes:
        return self._state.group_id

    @property
    def epoch(self) -> int:
        return self._state.epoch

    @property
    def members(self) -> tuple[str, ...]:
        return self._state.members

    @property
    def is_member(self) -> bool:
        return not self._state.left

    # -- messages ----------------------------------------------------------------------------
    def encrypt(self, content: Content) -> bytes:
        """One signed, padded SenderKeyMessage of ``content`` for every member device."""
        self._require_member()
        if content.group_id != self.group_id:
            raise GroupError("content is not addressed to this group")
        return group_encrypt(self._store, self._state.local, self.group_id,
                             pad(content.encode()))

    def decrypt(self, sender: SenderAddress, data: bytes) -> Content:
        """Verify and decrypt a group message from ``sender`` (a member device)."""
        self._require_member()
        if sender.name not in self.members:
            raise NotAMember("sender is not a member of the group")
        if sender == self._state.local:
            raise InvalidGroupUpdate("a device does not decrypt its own group messages")
        if SenderKeyMessage.decode(data).distribution_id != self.group_id:
            raise InvalidSenderKeyMessage("message is for another group")
        plaintext = unpad(group_decrypt(self._store, sender, data))
        try:
            content = Content.decode(plaintext)
        except ContentError:
            raise GroupDecryptionFailed("group message content malformed") from None
        if content.group_id != self.group_id:
            raise GroupDecryptionFailed("group message names another group")
        return content

    def distribution_message(self) -> bytes:
        """Our current SenderKeyDistributionMessage (to resend to a member device that lost it)."""
        self._require_member()
        return create_sender_key_distribution_message(
            self._store, self._state.local, self.group_id).encode()

    # -- management content received over pairwise sessions ----------------------------------
    def handle(self, sender: SenderAddress, content: Content) -> list[Outgoing]:
        """Apply group-management content (distribution or membership change) from ``sender``."""
        if content.group_id != self.group_id:
            raise InvalidGroupUpdate("content is for another group")
        body = content.body
        if isinstance(body, SenderKeyDistribution):
            self._require_member()
            if sender.name not in self.members:
                raise NotAMember("sender is not a member of the group")
            if sender == self._state.local:
                raise InvalidGroupUpdate("own sender key cannot be replaced by a distribution")
            message = SenderKeyDistributionMessage.decode(body.message)
            if message.distribution_id != self.group_id:
                raise InvalidGroupUpdate("distribution is for another group")
            process_sender_key_distribution_message(self._store, sender, message)
            if sender not in self._state.senders:
                self._state = replace(self._state,
                                      senders=tuple(sorted({*self._state.senders, sender})))
            return []
        if isinstance(body, GroupMembershipChange):
            self._require_member()
            if sender.name not in self.members:
                raise NotAMember("only a member can change the group")
            return self._apply(body)
        raise InvalidGroupUpdate("not group-management content")

    # -- membership changes made on this device ----------------------------------------------
    def add_members(self, names: Iterable[str]) -> list[Outgoing]:
        """Add accounts; returns the change for every member (the new ones take it as their
        invitation) and our current sender key for the new members."""
        self._require_member()
        added = tuple(sorted(set(names)))
        if not added or set(added) & set(self.members):
            raise InvalidGroupUpdate("add needs accounts that are not members yet")
        members = tuple(sorted({*self.members, *added}))
        change = _change(self.epoch + 1, members, added=added)
        announce = Outgoing(frozenset(members), self._content(change))
        return [announce, *self._apply(change)]

    def remove_members(self, names: Iterable[str]) -> list[Outgoing]:
        """Remove accounts (our own name: leave); returns the change for the old members and our
        fresh sender key for the remaining ones."""
        self._require_member()
        removed = tuple(sorted(set(names)))
        if not removed or not set(removed) <= set(self.members):
            raise InvalidGroupUpdate("remove needs current members")
        members = tuple(m for m in self.members if m not in removed)
        if not members:
            raise InvalidGroupUpdate("the last member cannot be removed")
        change = _change(self.epoch + 1, members, removed=removed)
        announce = Outgoing(frozenset(self.members), self._content(change))
        return [announce, *self._apply(change)]

    def forget_device(self, device: SenderAddress) -> list[Outgoing]:
        """A device of a member account was removed (the server's ``device_removed`` notice):
        drop its sender keys and replace our own sender key, distributed to every member, so
        the removed device cannot read later messages. Membership and epoch are unchanged;
        the Messenger sends the distribution to the account's *current* devices only."""
        self._require_member()
        if device == self._state.local:
            raise InvalidGroupUpdate("use leave() or remove_members() for this device")
        with self._store.atomic():
            self._store.delete_sender_key(device, self.group_id)
            rotate_sender_key(self._store, self._state.local, self.group_id)
        self._state = replace(self._state,
                              senders=tuple(s for s in self._state.senders if s != device))
        return [self._distribution(frozenset(self.members))]

    def rotate(self) -> list[Outgoing]:
        """Replace our own sender key and distribute it to every member (e.g. on a schedule:
        a stolen chain key then stops working at the next rotation)."""
        self._require_member()
        rotate_sender_key(self._store, self._state.local, self.group_id)
        return [self._distribution(frozenset(self.members))]

    def leave(self) -> list[Outgoing]:
        """Remove our own account from the group."""
        return self.remove_members([self._state.local.name])

    # -- internals ---------------------------------------------------------------------------
    def _apply(self, change: GroupMembershipChange) -> list[Outgoing]:
        if change.epoch != self.epoch + 1:
            raise EpochMismatch("membership change does not follow the current epoch")
        old = set(self.members)
        if set(change.added) & old or not set(change.removed) <= old:
            raise InvalidGroupUpdate("membership change inconsistent with the members")
        if set(change.members) != (old | set(change.added)) - set(change.removed):
            raise InvalidGroupUpdate("membership change inconsistent with the members")
        local = self._state.local
        if local.name in change.removed:
            with self._store.atomic():
                for sender in (*self._state.senders, local):
                    self._store.delete_sender_key(sender, self.group_id)
            self._state = replace(self._state, epoch=change.epoch, members=change.members,
                                  senders=(), left=True)
            return []
        with self._store.atomic():
            for sender in self._state.senders:
                if sender.name in change.removed:
                    self._store.delete_sender_key(sender, self.group_id)
            if change.removed:
                rotate_sender_key(self._store, local, self.group_id)
        self._state = replace(
            self._state, epoch=change.epoch, members=change.members,
            senders=tuple(s for s in self._state.senders if s.name not in change.removed))
        if change.removed:
            return [self._distribution(frozenset(change.members))]
        if change.added:
            return [self._distribution(frozenset(change.added))]
        return []

    def _distribution(self, recipients: frozenset[str]) -> Outgoing:
        skdm = create_sender_key_distribution_message(self._store, self._state.local,
                                                      self.group_id)
        return Outgoing(recipients, self._content(SenderKeyDistribution(skdm.encode())))

    def _content(self, body: GroupMembershipChange | SenderKeyDistribution) -> Content:
        return Content.new(body, sent_at_ms=self._clock(), group_id=self.group_id)

    def _require_member(self) -> None:
        if self._state.left:
            raise NotAMember("this device is no longer a member of the group")


def _change(epoch: int, members: tuple[str, ...], *, added: tuple[str, ...] = (),
            removed: tuple[str, ...] = ()) -> GroupMembershipChange:
    try:
        return GroupMembershipChange(epoch, members, added, removed)
    except ContentError as exc:
        raise InvalidGroupUpdate(str(exc)) from None
